package fallback_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// TestAPIShowsNoInternalType: the transports' exported methods and
// fields name no type of an internal package, which users could not name
// (the fallback learns a bridge transport's downstream another way).
func TestAPIShowsNoInternalType(t *testing.T) {
	for _, v := range []any{sse.New("http://127.0.0.1:1"), longpoll.New("http://127.0.0.1:1"), websocket.New(), fallback.Bridged("http://127.0.0.1:1")} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumMethod() {
			m := typ.Method(i)
			for _, p := range append(ins(m.Type), outs(m.Type)...) {
				if isInternal(p) {
					t.Errorf("%v.%s uses %v, from an internal package", typ, m.Name, p)
				}
			}
		}
		for i := range typ.Elem().NumField() {
			if f := typ.Elem().Field(i); f.IsExported() {
				t.Errorf("%v has the exported field %s (%v)", typ, f.Name, f.Type)
			}
		}
	}
}

func ins(f reflect.Type) []reflect.Type {
	var l []reflect.Type
	for i := range f.NumIn() {
		l = append(l, f.In(i))
	}
	return l
}

func outs(f reflect.Type) []reflect.Type {
	var l []reflect.Type
	for i := range f.NumOut() {
		l = append(l, f.Out(i))
	}
	return l
}

func isInternal(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return strings.Contains(t.PkgPath(), "/internal/")
}
