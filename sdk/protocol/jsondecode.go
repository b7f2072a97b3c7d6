//go:build !js

package protocol

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"

	gojson "github.com/goccy/go-json"
)

// unmarshalJSON decodes JSON text into v with encoding/json's semantics.
//
// Natively it uses goccy/go-json. On our payloads (a ~170 B channel message
// into struct{Seq, Ts int64}; the README's {User, Text} with lower-case
// keys) it decodes 6–11× faster than encoding/json (0.11 µs and no
// allocation for the former; BenchmarkPayloadDecode), where
// segmentio/encoding/json and json-iterator were 2–4× slower than it
// (json-iterator also disagrees with encoding/json on Unicode case folding
// and on numbers beyond float64). Under differential fuzzing against
// encoding/json (FuzzDecodeJSON) it differs only on ",string" fields, which
// it parses more leniently, and on float32s, which it rounds twice (through
// float64): types that may hold either go to encoding/json. It is not linked
// into GOOS=js builds, where it would add ~0.7 MB brotli to the wasm, past
// the 1.3 MB budget (see jsondecode_js.go).
func unmarshalJSON(b []byte, v any) error {
	if fastJSONType(reflect.TypeOf(v)) && gojson.Unmarshal(b, v) == nil {
		return nil
	}
	// Failures are reported by encoding/json itself, so callers get its
	// error types (*json.UnmarshalTypeError, *json.SyntaxError, ...) and
	// messages. It costs a second decode, only for input that fails.
	return json.Unmarshal(b, v)
}

// fastJSONTypes caches, per type, whether goccy/go-json decodes it as
// encoding/json does.
var fastJSONTypes sync.Map

func fastJSONType(t reflect.Type) bool {
	if t == nil {
		return true
	}
	if ok, found := fastJSONTypes.Load(t); found {
		return ok.(bool)
	}
	ok, _ := fastJSONTypes.LoadOrStore(t, !needsEncodingJSON(t, map[reflect.Type]bool{}))
	return ok.(bool)
}

// needsEncodingJSON reports whether a value of type t may hold a float32 or
// a struct with a field tagged ",string".
func needsEncodingJSON(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Float32:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return needsEncodingJSON(t.Elem(), seen)
	case reflect.Map:
		return needsEncodingJSON(t.Key(), seen) || needsEncodingJSON(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			sf := t.Field(i)
			if _, opts, _ := strings.Cut(sf.Tag.Get("json"), ","); opts != "" {
				for o := range strings.SplitSeq(opts, ",") {
					if o == "string" {
						return true
					}
				}
			}
			if needsEncodingJSON(sf.Type, seen) {
				return true
			}
		}
	}
	return false
}
