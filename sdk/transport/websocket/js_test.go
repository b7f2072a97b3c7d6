//go:build js

// Tests of the GOOS=js transport, run by Node (go_js_wasm_exec):
//
//	GOOS=js GOARCH=wasm go test -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" ./sdk/transport/websocket
//
// They drive both ways of opening a socket with fakes made in Go: a hook
// (SetJSHook) whose records the test delivers, and a globalThis.WebSocket
// whose event handlers the test calls. The real thing runs in js/test
// (Chromium and Node, against Rails and the bridge).
package websocket

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"syscall/js"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/transport"
)

// call is one call Go made to the fake hook or WebSocket.
type call struct {
	method string
	args   []js.Value
}

// calls records calls made from Go, safely for any goroutine.
type calls struct {
	mu   sync.Mutex
	list []call
	add  chan struct{}
}

func newCalls() *calls { return &calls{add: make(chan struct{}, 100)} }

func (c *calls) record(method string, args []js.Value) {
	c.mu.Lock()
	c.list = append(c.list, call{method, args})
	c.mu.Unlock()
	c.add <- struct{}{}
}

// next waits for the next call of method.
func (c *calls) next(t *testing.T, method string) call {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		for i, cl := range c.list {
			if cl.method == method {
				c.list = append(c.list[:i], c.list[i+1:]...)
				c.mu.Unlock()
				return cl
			}
		}
		c.mu.Unlock()
		select {
		case <-c.add:
		case <-deadline:
			t.Fatalf("no call of %s", method)
		}
	}
}

// fakeHook installs a hook that records its calls, for the test's life.
func fakeHook(t *testing.T) *calls {
	rec := newCalls()
	h := js.Global().Get("Object").New()
	var funcs []js.Func
	for _, m := range []string{"open", "send", "close"} {
		f := js.FuncOf(func(_ js.Value, args []js.Value) any {
			rec.record(m, args)
			return nil
		})
		funcs = append(funcs, f)
		h.Set(m, f)
	}
	SetJSHook(h)
	t.Cleanup(func() {
		SetJSHook(js.Undefined())
		for _, f := range funcs {
			f.Release()
		}
	})
	return rec
}

// record encodes one hook record.
func record(kind byte, id uint32, payload []byte) []byte {
	b := make([]byte, 9, 9+len(payload))
	b[0] = kind
	binary.LittleEndian.PutUint32(b[1:], id)
	binary.LittleEndian.PutUint32(b[5:], uint32(len(payload)))
	return append(b, payload...)
}

func closeRecord(id uint32, code int, clean bool, reason string) []byte {
	p := []byte{byte(code), byte(code >> 8), 0}
	if clean {
		p[2] = 1
	}
	return record('x', id, append(p, reason...))
}

// dialHooked dials through the fake hook and opens the socket with
// protocol; it returns the connection and its id.
func dialHooked(t *testing.T, rec *calls, tr *Transport, offer []string, protocol string) (transport.Conn, uint32) {
	t.Helper()
	type result struct {
		c   transport.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := tr.Dial(context.Background(), &transport.Request{URL: "ws://example.test/cable?token=t", Subprotocols: offer})
		done <- result{c, err}
	}()
	open := rec.next(t, "open")
	id := uint32(open.Int(0))
	if got := open.args[1].String(); got != "ws://example.test/cable?token=t" {
		t.Fatalf("open url %q", got)
	}
	deliver(record('o', id, []byte(protocol)))
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.c, id
}

func (c call) Int(i int) int { return c.args[i].Int() }

func TestHookOpenReadWriteClose(t *testing.T) {
	rec := fakeHook(t)
	c, id := dialHooked(t, rec, New(), []string{"actioncable-v1-json"}, "actioncable-v1-json")
	if c.Subprotocol() != "actioncable-v1-json" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	// Two frames and another socket's record in one batch, then the end.
	batch := append(record('t', id, []byte(`{"type":"welcome"}`)), record('t', id+1000, []byte("not ours"))...)
	batch = append(batch, record('t', id, []byte(`{"type":"ping","message":1}`))...)
	deliver(batch)
	ctx := context.Background()
	var buf []byte
	var err error
	for _, want := range []string{`{"type":"welcome"}`, `{"type":"ping","message":1}`} {
		if buf, err = c.ReadFrame(ctx, buf); err != nil || string(buf) != want {
			t.Fatalf("ReadFrame = %q, %v; want %q", buf, err, want)
		}
	}
	if err := c.WriteFrame(ctx, []byte(`{"command":"subscribe","identifier":"x"}`)); err != nil {
		t.Fatal(err)
	}
	send := rec.next(t, "send")
	if send.Int(0) != int(id) || send.args[1].Type() != js.TypeString || send.args[1].String() != `{"command":"subscribe","identifier":"x"}` {
		t.Fatalf("send(%v, %v)", send.args[0], send.args[1])
	}
	c.Close()
	cl := rec.next(t, "close")
	if cl.Int(0) != int(id) || cl.Int(1) != 1000 {
		t.Fatalf("close(%v, %v)", cl.args[0], cl.args[1])
	}
	if _, err := c.ReadFrame(ctx, buf); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("ReadFrame after Close: %v", err)
	}
	if err := c.WriteFrame(ctx, []byte("{}")); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("WriteFrame after Close: %v", err)
	}
	deliver(record('t', id, []byte("late"))) // ignored: Go forgot the id
}

func TestHookBinaryFrames(t *testing.T) {
	rec := fakeHook(t)
	c, id := dialHooked(t, rec, New(), []string{"actioncable-v1-msgpack", "actioncable-v1-json"}, "actioncable-v1-msgpack")
	defer c.Close()
	deliver(record('b', id, []byte{0x81, 0xa1, 0x61, 0x01}))
	buf, err := c.ReadFrame(context.Background(), nil)
	if err != nil || string(buf) != "\x81\xa1\x61\x01" {
		t.Fatalf("ReadFrame = %x, %v", buf, err)
	}
	if err := c.WriteFrame(context.Background(), []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	send := rec.next(t, "send")
	data := send.args[1]
	if !data.InstanceOf(js.Global().Get("Uint8Array")) || data.Length() != 3 || data.Index(2).Int() != 3 {
		t.Fatalf("binary frame sent as %v", data)
	}
}

func TestHookPeerCloseAfterFrames(t *testing.T) {
	rec := fakeHook(t)
	c, id := dialHooked(t, rec, New(), nil, "")
	deliver(append(record('t', id, []byte("last")), closeRecord(id, 4001, true, "bye")...))
	ctx := context.Background()
	if buf, err := c.ReadFrame(ctx, nil); err != nil || string(buf) != "last" {
		t.Fatalf("frames before the close come first: %q, %v", buf, err)
	}
	_, err := c.ReadFrame(ctx, nil)
	var ce *transport.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
		t.Fatalf("ReadFrame = %v; want a CloseError 4001 bye", err)
	}
	c.Close()
}

// A socket that opens, sends a frame and closes in one batch (Rails
// refusing a connection) dials, and its frame is read before the close.
func TestHookOpenFrameCloseTogether(t *testing.T) {
	rec := fakeHook(t)
	for range 20 { // Dial's select must not pick the close by chance
		errc := make(chan error, 1)
		conns := make(chan transport.Conn, 1)
		go func() {
			c, err := New().Dial(context.Background(), &transport.Request{URL: "ws://example.test/"})
			conns <- c
			errc <- err
		}()
		id := uint32(rec.next(t, "open").Int(0))
		batch := append(record('o', id, nil), record('t', id, []byte(`{"type":"disconnect","reason":"unauthorized"}`))...)
		deliver(append(batch, closeRecord(id, 1000, true, "")...))
		if err := <-errc; err != nil {
			t.Fatalf("Dial = %v", err)
		}
		c := <-conns
		if buf, err := c.ReadFrame(context.Background(), nil); err != nil || !strings.Contains(string(buf), "unauthorized") {
			t.Fatalf("ReadFrame = %q, %v", buf, err)
		}
		c.Close()
	}
}

func TestHookReadLimit(t *testing.T) {
	rec := fakeHook(t)
	c, id := dialHooked(t, rec, New(WithReadLimit(8)), nil, "")
	deliver(append(record('t', id, []byte("12345678")), record('t', id, []byte("123456789"))...))
	ctx := context.Background()
	if buf, err := c.ReadFrame(ctx, nil); err != nil || string(buf) != "12345678" {
		t.Fatalf("a frame at the limit: %q, %v", buf, err)
	}
	if _, err := c.ReadFrame(ctx, nil); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("ReadFrame = %v; want ErrFrameTooLarge", err)
	}
	if cl := rec.next(t, "close"); cl.Int(1) != 1009 {
		t.Fatalf("closed with %d, want 1009", cl.Int(1))
	}
}

func TestHookDialFailures(t *testing.T) {
	rec := fakeHook(t)
	tr := New()
	ctx := context.Background()

	// The server picks a protocol that was not offered.
	errc := make(chan error, 1)
	go func() {
		_, err := tr.Dial(ctx, &transport.Request{URL: "ws://example.test/", Subprotocols: []string{"actioncable-v1-json"}})
		errc <- err
	}()
	id := uint32(rec.next(t, "open").Int(0))
	deliver(record('o', id, []byte("other")))
	if err := <-errc; !errors.Is(err, transport.ErrUnsupportedSubprotocol) {
		t.Fatalf("Dial = %v; want ErrUnsupportedSubprotocol", err)
	}
	rec.next(t, "close")

	// Refused: the socket closes before it opens.
	go func() {
		_, err := tr.Dial(ctx, &transport.Request{URL: "ws://example.test/"})
		errc <- err
	}()
	id = uint32(rec.next(t, "open").Int(0))
	deliver(closeRecord(id, 1006, false, ""))
	var ce *transport.CloseError
	if err := <-errc; !errors.As(err, &ce) || ce.Code != 1006 || strings.Contains(err.Error(), "token") {
		t.Fatalf("Dial = %v; want a CloseError 1006", err)
	}

	// Cancelled while connecting.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		_, err := tr.Dial(cctx, &transport.Request{URL: "ws://example.test/?token=secret"})
		errc <- err
	}()
	id = uint32(rec.next(t, "open").Int(0))
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Dial = %v; want context.Canceled, without the query", err)
	}
	if cl := rec.next(t, "close"); uint32(cl.Int(0)) != id {
		t.Fatalf("closed %d, want %d", cl.Int(0), id)
	}

	// Headers a browser cannot send.
	_, err := tr.Dial(ctx, &transport.Request{URL: "ws://example.test/", Header: map[string][]string{"Authorization": {"Bearer x"}}})
	if !errors.Is(err, transport.ErrHeaderUnsupported) {
		t.Fatalf("Dial = %v; want ErrHeaderUnsupported", err)
	}
	if _, err := tr.Dial(cctx, &transport.Request{URL: "ws://example.test/", Header: map[string][]string{"Cookie": {"a=b"}, "origin": {"http://x"}}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Cookie and Origin are allowed (the browser sends its own): %v", err)
	}
}

func TestHookThrows(t *testing.T) {
	h := js.Global().Get("Object").New()
	h.Set("open", js.Global().Get("Function").New("throw new SyntaxError('bad URL')"))
	SetJSHook(h)
	defer SetJSHook(js.Undefined())
	_, err := New().Dial(context.Background(), &transport.Request{URL: "nonsense"})
	if err == nil || !strings.Contains(err.Error(), "SyntaxError: bad URL") {
		t.Fatalf("Dial = %v; want the exception", err)
	}
}

func TestReadFrameContext(t *testing.T) {
	rec := fakeHook(t)
	c, _ := dialHooked(t, rec, New(), nil, "")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadFrame(ctx, nil)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadFrame = %v; want context.Canceled", err)
	}
	rec.next(t, "close") // a cancelled read closes the connection
}

// fakeWebSocket installs a globalThis.WebSocket whose instances the test
// drives: it records new sockets and the calls made on them.
func fakeWebSocket(t *testing.T) (sockets chan js.Value, rec *calls) {
	sockets = make(chan js.Value, 10)
	rec = newCalls()
	var funcs []js.Func
	method := func(name string) js.Func {
		f := js.FuncOf(func(this js.Value, args []js.Value) any {
			rec.record(name, append([]js.Value{this}, args...))
			return nil
		})
		funcs = append(funcs, f)
		return f
	}
	proto := js.Global().Get("Object").New()
	proto.Set("send", method("send"))
	proto.Set("close", method("close"))
	ctor := js.FuncOf(func(this js.Value, args []js.Value) any {
		this.Set("url", args[0])
		this.Set("protocols", args[1])
		sockets <- this
		return nil
	})
	funcs = append(funcs, ctor)
	ctor.Set("prototype", proto)
	saved := js.Global().Get("WebSocket")
	js.Global().Set("WebSocket", ctor)
	t.Cleanup(func() {
		js.Global().Set("WebSocket", saved)
		for _, f := range funcs {
			f.Release()
		}
	})
	return sockets, rec
}

func event(fields map[string]any) js.Value { return js.ValueOf(fields) }

// ready returns ws once Dial, which made it, has set its handlers. It
// polls with sleeps: JS returns from the constructor into Dial only when
// every goroutine waits, so spinning here would stall Dial.
func ready(t *testing.T, ws js.Value) js.Value {
	for i := 0; ws.Get("onclose").Type() != js.TypeFunction; i++ {
		if i == 1000 {
			t.Fatal("Dial set no handlers")
		}
		time.Sleep(time.Millisecond)
	}
	return ws
}

func TestGlobalWebSocket(t *testing.T) {
	SetJSHook(js.Undefined())
	sockets, rec := fakeWebSocket(t)
	type result struct {
		c   transport.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := New(WithReadLimit(20)).Dial(context.Background(), &transport.Request{URL: "ws://example.test/cable", Subprotocols: []string{"actioncable-v1-json"}})
		done <- result{c, err}
	}()
	ws := ready(t, <-sockets)
	if ws.Get("binaryType").String() != "arraybuffer" || ws.Get("protocols").Index(0).String() != "actioncable-v1-json" {
		t.Fatalf("socket made with binaryType %v, protocols %v", ws.Get("binaryType"), ws.Get("protocols"))
	}
	ws.Set("protocol", "actioncable-v1-json")
	ws.Call("onopen", event(map[string]any{"type": "open"}))
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	c := r.c
	ws.Call("onmessage", event(map[string]any{"data": `{"type":"welcome"}`}))
	bin := js.Global().Get("Uint8Array").New(2)
	bin.SetIndex(0, 7)
	ws.Call("onmessage", event(map[string]any{"data": bin.Get("buffer")}))
	ws.Call("onmessage", event(map[string]any{"data": strings.Repeat("x", 21)}))
	ctx := context.Background()
	if buf, err := c.ReadFrame(ctx, nil); err != nil || string(buf) != `{"type":"welcome"}` {
		t.Fatalf("ReadFrame = %q, %v", buf, err)
	}
	if buf, err := c.ReadFrame(ctx, nil); err != nil || string(buf) != "\x07\x00" {
		t.Fatalf("ReadFrame = %q, %v", buf, err)
	}
	if err := c.WriteFrame(ctx, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if s := rec.next(t, "send"); s.args[1].String() != "{}" {
		t.Fatalf("sent %v", s.args[1])
	}
	if _, err := c.ReadFrame(ctx, nil); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("ReadFrame = %v; want ErrFrameTooLarge", err)
	}
	if cl := rec.next(t, "close"); cl.args[1].Int() != 1009 {
		t.Fatalf("close(%v)", cl.args[1])
	}
	if !ws.Get("onmessage").IsNull() || !ws.Get("onclose").IsNull() {
		t.Fatal("handlers left on a closed socket")
	}
}

func TestGlobalWebSocketPeerClose(t *testing.T) {
	SetJSHook(js.Undefined())
	sockets, _ := fakeWebSocket(t)
	errc := make(chan error, 1)
	go func() {
		_, err := New().Dial(context.Background(), &transport.Request{URL: "ws://example.test/cable"})
		errc <- err
	}()
	ws := ready(t, <-sockets)
	ws.Call("onclose", event(map[string]any{"code": 1006, "reason": "", "wasClean": false}))
	var ce *transport.CloseError
	if err := <-errc; !errors.As(err, &ce) || ce.Code != 1006 {
		t.Fatalf("Dial = %v; want a CloseError 1006", err)
	}
	if !ws.Get("onmessage").IsNull() || !ws.Get("onclose").IsNull() {
		t.Fatal("handlers left on a closed socket")
	}
}

func TestNoWebSocket(t *testing.T) {
	SetJSHook(js.Undefined())
	saved := js.Global().Get("WebSocket")
	js.Global().Set("WebSocket", js.Undefined())
	defer js.Global().Set("WebSocket", saved)
	if _, err := New().Dial(context.Background(), &transport.Request{URL: "ws://example.test/"}); err == nil || !strings.Contains(err.Error(), "no WebSocket") {
		t.Fatalf("Dial = %v", err)
	}
}

// The hook's open gets no fourth argument's worth unless the dialler tags
// the socket; a tagged one gets {tag, readLimit} (the transport's limit).
func TestHookOpenTag(t *testing.T) {
	rec := fakeHook(t)
	dial := func(ctx context.Context, tr *Transport) (js.Value, func()) {
		done := make(chan transport.Conn, 1)
		go func() {
			c, err := tr.Dial(ctx, &transport.Request{URL: "ws://example.test/cable", Subprotocols: []string{"actioncable-v1-json"}})
			if err != nil {
				t.Error(err)
			}
			done <- c
		}()
		open := rec.next(t, "open")
		if len(open.args) != 4 {
			t.Fatalf("open got %d arguments, want 4", len(open.args))
		}
		deliver(record('o', uint32(open.Int(0)), []byte("actioncable-v1-json")))
		c := <-done
		return open.args[3], func() {
			if c != nil {
				c.Close()
			}
		}
	}
	direct, closeConn := dial(context.Background(), New())
	closeConn()
	if !direct.IsUndefined() {
		t.Fatalf("untagged dial: open's direct = %v, want undefined", direct)
	}
	tag := js.ValueOf(map[string]any{"socket": 7})
	direct, closeConn = dial(WithJSTag(context.Background(), tag), New(WithReadLimit(4096)))
	closeConn()
	if direct.Type() != js.TypeObject || !direct.Get("tag").Equal(tag) || direct.Get("readLimit").Int() != 4096 {
		t.Fatalf("tagged dial: open's direct = %v", js.Global().Get("JSON").Call("stringify", direct))
	}
	direct, closeConn = dial(WithJSTag(context.Background(), tag), New())
	closeConn()
	if got := direct.Get("readLimit").Int(); got != DefaultReadLimit {
		t.Fatalf("tagged dial, default limit: readLimit %d, want %d", got, DefaultReadLimit)
	}
}
