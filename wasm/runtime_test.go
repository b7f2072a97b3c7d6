//go:build js && wasm

// Tests of the bindings, run by Node (go_js_wasm_exec):
//
//	GOOS=js GOARCH=wasm go test -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" ./wasm/
//
// They call a Runtime through its JS API, as js/loader.js does, and play
// both JavaScript's WebSocket and the ActionCable server through a fake
// hook of sdk/transport/websocket (its open/send/close calls are recorded;
// its events are delivered with wireDeliver). The transport, codecs and
// consumer are the real sdk. The JS side against Rails runs in js/test.
package wasm

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall/js"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

const waitFor = 10 * time.Second // a deadline, not a pace: events come much sooner

// record is one outbox record.
type record struct {
	kind    byte
	id      int
	payload string
}

func (r record) String() string { return fmt.Sprintf("%c%d %q", r.kind, r.id, r.payload) }

// harness drives one Runtime through its JS API and collects its records.
type harness struct {
	t      *testing.T
	rt     *Runtime
	api    js.Value
	woken  chan struct{} // notify was called
	closed bool          // rt.Close ran: the API is released
	recs   []record      // taken, not yet expected
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, woken: make(chan struct{}, 1)}
	h.rt = New(func() {
		select {
		case h.woken <- struct{}{}:
		default:
		}
	})
	h.api = h.rt.API()
	t.Cleanup(h.rt.Close)
	return h
}

func (h *harness) call(name string, args ...any) js.Value { return h.api.Call(name, args...) }

// parse adds the records of a batch (take's or wireDeliver's result).
func (h *harness) parse(batch js.Value) {
	h.t.Helper()
	if batch.Type() != js.TypeString {
		h.t.Fatalf("batch is %s, want a string", batch.Type())
	}
	s := batch.String()
	if s == "" {
		return
	}
	for _, r := range strings.Split(s, "\x1e") {
		sep := strings.IndexByte(r, '\x1f')
		if sep < 2 {
			h.t.Fatalf("malformed record %q in %q", r, s)
		}
		id, err := strconv.Atoi(r[1:sep])
		if err != nil {
			h.t.Fatalf("record %q: id: %v", r, err)
		}
		h.recs = append(h.recs, record{r[0], id, r[sep+1:]})
	}
}

func (h *harness) take() {
	h.t.Helper()
	if h.closed {
		h.parse(js.ValueOf(h.rt.out.take())) // a js.Value, or "" when empty
		return
	}
	h.parse(h.call("take"))
}

// next returns the next record for id (the records of one id keep their
// order), waiting for it.
func (h *harness) next(id int) record {
	h.t.Helper()
	deadline := time.After(waitFor)
	for {
		h.take()
		for i, r := range h.recs {
			if r.id == id {
				h.recs = append(h.recs[:i], h.recs[i+1:]...)
				return r
			}
		}
		select {
		case <-h.woken:
		case <-deadline:
			h.t.Fatalf("no record for id %d (pending: %v)", id, h.recs)
		}
	}
}

// expect fails unless the next record for id is kind with payload.
func (h *harness) expect(id int, kind byte, payload string) {
	h.t.Helper()
	if r := h.next(id); r.kind != kind || r.payload != payload {
		h.t.Fatalf("record %v; want %c%d %q", r, kind, id, payload)
	}
}

// expectPrefix fails unless the next record for id is kind with a payload
// that starts with prefix, and returns the payload.
func (h *harness) expectPrefix(id int, kind byte, prefix string) string {
	h.t.Helper()
	r := h.next(id)
	if r.kind != kind || !strings.HasPrefix(r.payload, prefix) {
		h.t.Fatalf("record %v; want %c%d %q…", r, kind, id, prefix)
	}
	return r.payload
}

// deliver hands JS WebSocket events (hook records) to the Runtime, as the
// loader's wire does, and keeps the records it returns.
func (h *harness) deliver(records ...[]byte) {
	h.t.Helper()
	var b []byte
	for _, r := range records {
		b = append(b, r...)
	}
	u := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u, b)
	h.parse(h.call("wireDeliver", u))
}

// hookRecord encodes one event of the WebSocket hook (see
// websocket.SetJSHook).
func hookRecord(kind byte, id int, payload []byte) []byte {
	b := make([]byte, 9, 9+len(payload))
	b[0] = kind
	binary.LittleEndian.PutUint32(b[1:], uint32(id))
	binary.LittleEndian.PutUint32(b[5:], uint32(len(payload)))
	return append(b, payload...)
}

func opened(id int, protocol string) []byte { return hookRecord('o', id, []byte(protocol)) }
func text(id int, frame string) []byte      { return hookRecord('t', id, []byte(frame)) }

func closed(id, code int, clean bool, reason string) []byte {
	p := []byte{byte(code), byte(code >> 8), 0}
	if clean {
		p[2] = 1
	}
	return hookRecord('x', id, append(p, reason...))
}

// call is one call Go made to the fake hook.
type call struct {
	method string
	args   []js.Value
}

// wire is a fake WebSocket hook that records the calls Go makes.
type wire struct {
	t     *testing.T
	mu    sync.Mutex
	calls []call
	added chan struct{}
}

// fakeWire installs a fake hook for the test's life.
func fakeWire(t *testing.T) *wire {
	w := &wire{t: t, added: make(chan struct{}, 1)}
	hook := js.Global().Get("Object").New()
	for _, m := range []string{"open", "send", "close"} {
		// Not released: a connection ending after the test (Close does
		// not wait) may still call it.
		f := js.FuncOf(func(_ js.Value, args []js.Value) any {
			w.mu.Lock()
			w.calls = append(w.calls, call{m, args})
			w.mu.Unlock()
			select {
			case w.added <- struct{}{}:
			default:
			}
			return nil
		})
		hook.Set(m, f)
	}
	websocket.SetJSHook(hook)
	t.Cleanup(func() { websocket.SetJSHook(js.Undefined()) })
	return w
}

// next waits for the next call of method that match accepts.
func (w *wire) next(method string, match func(call) bool) call {
	w.t.Helper()
	deadline := time.After(waitFor)
	for {
		w.mu.Lock()
		for i, c := range w.calls {
			if c.method == method && match(c) {
				w.calls = append(w.calls[:i], w.calls[i+1:]...)
				w.mu.Unlock()
				return c
			}
		}
		w.mu.Unlock()
		select {
		case <-w.added:
		case <-deadline:
			w.t.Fatalf("no %s call", method)
		}
	}
}

// open waits for the socket to url to be opened and returns its hook id
// and the protocols offered.
func (w *wire) open(url string) (int, []string) {
	w.t.Helper()
	c := w.next("open", func(c call) bool { return c.args[1].String() == url })
	var protocols []string
	for i := range c.args[2].Length() {
		protocols = append(protocols, c.args[2].Index(i).String())
	}
	return c.args[0].Int(), protocols
}

// sent waits for a frame sent on hook socket id and returns it.
func (w *wire) sent(id int) js.Value {
	w.t.Helper()
	return w.next("send", func(c call) bool { return c.args[0].Int() == id }).args[1]
}

// closedBy waits for Go to close hook socket id and returns the code.
func (w *wire) closedBy(id int) int {
	w.t.Helper()
	return w.next("close", func(c call) bool { return c.args[0].Int() == id }).args[1].Int()
}

func protocols(p ...string) js.Value {
	a := make([]any, len(p))
	for i, s := range p {
		a[i] = s
	}
	return js.ValueOf(a)
}

func TestSocketOpenFramesClose(t *testing.T) {
	h, w := newHarness(t), fakeWire(t)
	const url = "ws://example.test/open?token=t"
	h.call("socketOpen", 1, url, protocols(protocol.SubprotocolJSON, "actioncable-unsupported"), js.Undefined())
	wid, offer := w.open(url)
	if strings.Join(offer, " ") != "actioncable-v1-json actioncable-unsupported" {
		t.Fatalf("offered %q", offer)
	}
	// The JSON frames pass byte for byte, fields the sdk does not model too.
	welcome := `{"type":"welcome","sid":"s-1"}`
	h.deliver(opened(wid, protocol.SubprotocolJSON), text(wid, welcome), text(wid, `{"type":"ping","message":1}`))
	h.expect(1, 'n', "websocket")
	h.expect(1, 'o', protocol.SubprotocolJSON)
	h.expect(1, 'm', welcome)
	h.expect(1, 'm', `{"type":"ping","message":1}`)

	cmd := `{"command":"subscribe","identifier":"{\"channel\":\"C\"}"}`
	if r := h.call("socketSend", 1, cmd).String(); r != "" {
		t.Fatalf("socketSend = %q", r)
	}
	if f := w.sent(wid); f.Type() != js.TypeString || f.String() != cmd {
		t.Fatalf("sent %v, want %s", f, cmd)
	}
	if r := h.call("socketSend", 1, "not a command").String(); r == "" {
		t.Fatal("socketSend took text that is not JSON")
	}

	h.call("socketClose", 1, 4000, "done")
	if code := w.closedBy(wid); code != 1000 {
		t.Fatalf("closed with %d", code)
	}
	h.expect(1, 'x', "4000,1,done")
	if r := h.call("socketSend", 1, cmd).String(); r != "" {
		t.Fatalf("socketSend on a closed socket = %q; want it dropped", r)
	}
}

func TestSocketPeerClose(t *testing.T) {
	h, w := newHarness(t), fakeWire(t)
	const url = "ws://example.test/peer"
	h.call("socketOpen", 2, url, protocols(), js.Undefined())
	wid, _ := w.open(url)
	h.deliver(opened(wid, ""), text(wid, "last"), closed(wid, 4001, true, "bye"))
	h.expect(2, 'n', "websocket")
	h.expect(2, 'o', protocol.SubprotocolJSON) // none chosen: ActionCable's JSON
	h.expect(2, 'm', "last")
	h.expect(2, 'x', "4001,1,bye")
}

// A MessagePack wire is shown to JavaScript as JSON, both ways.
func TestSocketMessagePack(t *testing.T) {
	h, w := newHarness(t), fakeWire(t)
	const url = "ws://example.test/msgpack"
	h.call("socketOpen", 3, url, protocols(protocol.SubprotocolJSON), js.ValueOf(map[string]any{"msgpack": true}))
	wid, offer := w.open(url)
	if strings.Join(offer, " ") != "actioncable-v1-msgpack actioncable-v1-json" {
		t.Fatalf("offered %q", offer)
	}
	mp := protocol.MessagePackCodec{}
	welcome, err := mp.AppendMessage(nil, &protocol.Message{Type: protocol.TypeWelcome})
	if err != nil {
		t.Fatal(err)
	}
	h.deliver(opened(wid, protocol.SubprotocolMessagePack), hookRecord('b', wid, welcome), hookRecord('b', wid, []byte{0xc1}))
	h.expect(3, 'n', "websocket")
	h.expect(3, 'o', protocol.SubprotocolJSON)
	h.expect(3, 'm', `{"type":"welcome"}`)
	h.expectPrefix(3, 'e', "cableway: skipped a frame that cannot be shown as JSON")

	if r := h.call("socketSend", 3, `{"command":"subscribe","identifier":"x"}`).String(); r != "" {
		t.Fatalf("socketSend = %q", r)
	}
	f := w.sent(wid)
	if !f.InstanceOf(js.Global().Get("Uint8Array")) {
		t.Fatalf("sent %v, want binary", f)
	}
	b := make([]byte, f.Length())
	js.CopyBytesToGo(b, f)
	var cmd protocol.Command
	if err := mp.DecodeCommand(b, &cmd); err != nil || cmd.Command != "subscribe" || cmd.Identifier != "x" {
		t.Fatalf("sent %+v, %v", cmd, err)
	}
	h.call("socketClose", 3, js.Null(), "")
	h.expect(3, 'x', "1005,1,")
}

func TestSocketDialFails(t *testing.T) {
	h, w := newHarness(t), fakeWire(t)

	// Refused: the socket closes before it opens. JS says no more than
	// 1006; the close reason says what that means.
	const url = "ws://example.test/refused"
	h.call("socketOpen", 4, url, protocols(), js.Undefined())
	wid, _ := w.open(url)
	h.deliver(closed(wid, 1006, false, ""))
	msg := h.expectPrefix(4, 'e', "")
	if !strings.Contains(msg, "1006") || !strings.Contains(msg, "refused") {
		t.Fatalf("error %q does not say why", msg)
	}
	h.expect(4, 'x', "1006,0,"+msg)

	// Options no transport can serve.
	h.call("socketOpen", 5, "ws://example.test/x", protocols(), js.ValueOf(map[string]any{"transport": "pigeon"}))
	msg = h.expectPrefix(5, 'e', `cableway: unknown transport "pigeon"`)
	h.expect(5, 'x', "1006,0,"+msg)
	h.call("socketOpen", 6, "ws://example.test/x", protocols(), js.ValueOf(map[string]any{"transport": "sse"}))
	msg = h.expectPrefix(6, 'e', `cableway: transport "sse" needs the bridge option`)
	h.expect(6, 'x', "1006,0,"+msg)

	// Closed while connecting: closed once the dial settles.
	const early = "ws://example.test/early"
	h.call("socketOpen", 7, early, protocols(), js.Undefined())
	wid, _ = w.open(early)
	h.call("socketClose", 7, 4002, "changed my mind")
	h.deliver(opened(wid, ""))
	w.closedBy(wid)
	h.expect(7, 'x', "4002,1,changed my mind")

	// The server's frame is not JSON text (a control character).
	const bad = "ws://example.test/bad"
	h.call("socketOpen", 8, bad, protocols(), js.Undefined())
	wid, _ = w.open(bad)
	h.deliver(opened(wid, ""), text(wid, "a\x1eb"), text(wid, "ok"))
	h.expect(8, 'n', "websocket")
	h.expect(8, 'o', protocol.SubprotocolJSON)
	h.expectPrefix(8, 'e', "cableway: skipped a frame: cableway: frame holds a control character")
	h.expect(8, 'm', "ok")
}

// A call the loader would never make gets an error, not a dead program.
func TestBadCall(t *testing.T) {
	h := newHarness(t)
	for _, name := range []string{"socketOpen", "socketSend", "consumerOpen", "subscribe", "wireDeliver"} {
		if r := h.call(name); r.Type() != js.TypeString || !strings.HasPrefix(r.String(), "cableway: bad call to "+name) {
			t.Errorf("%s() = %v", name, r)
		}
	}
	if r := h.call("socketSend", 99, "{}").String(); r != "" {
		t.Errorf("socketSend to no socket = %q", r)
	}
	if r := h.call("subscribe", 1, 99, "{}").String(); r != "cableway: consumer is closed" {
		t.Errorf("subscribe on no consumer = %q", r)
	}
}

func TestConsumer(t *testing.T) {
	h, w := newHarness(t), fakeWire(t)
	const url = "ws://example.test/consumer"
	opts := js.ValueOf(map[string]any{"staleTimeoutMs": 60000}) // no pings here
	h.call("consumerOpen", 10, url, opts)
	wid, offer := w.open(url)
	if strings.Join(offer, " ") != protocol.SubprotocolJSON {
		t.Fatalf("offered %q", offer)
	}
	h.deliver(opened(wid, protocol.SubprotocolJSON), text(wid, `{"type":"welcome"}`))
	h.expect(10, 'C', "0websocket")

	ident := `{"channel":"ChatChannel","room":"1"}`
	if r := h.call("subscribe", 11, 10, ident).String(); r != "" {
		t.Fatalf("subscribe = %q", r)
	}
	sentCommand := func() (cmd struct{ Command, Identifier, Data string }) {
		t.Helper()
		f := w.sent(wid)
		if err := json.Unmarshal([]byte(f.String()), &cmd); err != nil {
			t.Fatalf("sent %v: %v", f, err)
		}
		return cmd
	}
	if cmd := sentCommand(); cmd.Command != "subscribe" || cmd.Identifier != ident {
		t.Fatalf("sent %+v", cmd)
	}
	quoted, _ := json.Marshal(ident)
	h.deliver(text(wid, `{"identifier":`+string(quoted)+`,"type":"confirm_subscription"}`),
		text(wid, `{"identifier":`+string(quoted)+`,"message":{"text":"hi"}}`))
	h.expect(11, 'c', "0")
	h.expect(11, 'r', `{"text":"hi"}`)

	h.call("subscriptionSend", 11, 12, "speak", `{"text":"yo"}`)
	cmd := sentCommand()
	var data map[string]string
	if err := json.Unmarshal([]byte(cmd.Data), &data); err != nil || cmd.Command != "message" || cmd.Identifier != ident ||
		data["action"] != "speak" || data["text"] != "yo" {
		t.Fatalf("sent %+v (%v)", cmd, err)
	}
	h.expect(12, 'p', "")

	h.call("unsubscribe", 11)
	if cmd := sentCommand(); cmd.Command != "unsubscribe" || cmd.Identifier != ident {
		t.Fatalf("sent %+v", cmd)
	}
	h.call("subscriptionSend", 11, 13, "speak", `{}`)
	h.expect(13, 'p', cable.ErrNotConnected.Error())

	h.call("consumerClose", 10, 14)
	w.closedBy(wid)
	h.expect(10, 'D', "0cable: consumer closed") // will not reconnect
	h.expect(10, 'S', "")
	h.expect(14, 'p', "")
	if r := h.call("subscribe", 15, 10, ident).String(); r != "cableway: consumer is closed" {
		t.Fatalf("subscribe after close = %q", r)
	}
	h.call("consumerClose", 10, 16) // again: settles at once
	h.expect(16, 'p', "")
}

// A consumer the server refuses stops, saying why; a rejected
// subscription is reported.
func TestConsumerRefused(t *testing.T) {
	h, w := newHarness(t), fakeWire(t)
	const url = "ws://example.test/refuse"
	h.call("consumerOpen", 20, url, js.Undefined())
	wid, _ := w.open(url)
	h.deliver(opened(wid, protocol.SubprotocolJSON), text(wid, `{"type":"welcome"}`))
	h.expect(20, 'C', "0websocket")
	h.call("subscribe", 21, 20, `{"channel":"Secret"}`)
	w.sent(wid)
	h.deliver(text(wid, `{"identifier":"{\"channel\":\"Secret\"}","type":"reject_subscription"}`))
	h.expect(21, 'j', "")

	h.deliver(text(wid, `{"type":"disconnect","reason":"unauthorized","reconnect":false}`))
	r := h.next(20)
	for r.kind == 'D' { // a drop may come first
		r = h.next(20)
	}
	var stop struct{ Message, Reason string }
	if err := json.Unmarshal([]byte(r.payload), &stop); r.kind != 'S' || err != nil || stop.Reason != "unauthorized" || stop.Message == "" {
		t.Fatalf("record %v (%v); want S with the reason", r, err)
	}

	// Options no transport can serve stop it at once.
	h.call("consumerOpen", 22, url, js.ValueOf(map[string]any{"transports": []any{"websocket", "pigeon"}}))
	h.expectPrefix(22, 'S', `{"message":"cableway: unknown transport \"pigeon\"`)
}

// Two Runtimes have their own sockets, consumers and outboxes: the same
// JS ids in both name different objects, and each hears only of its own.
func TestRuntimesShareNothing(t *testing.T) {
	a, b, w := newHarness(t), newHarness(t), fakeWire(t)
	a.call("socketOpen", 1, "ws://example.test/a", protocols(), js.Undefined())
	b.call("socketOpen", 1, "ws://example.test/b", protocols(), js.Undefined())
	wa, _ := w.open("ws://example.test/a")
	wb, _ := w.open("ws://example.test/b")
	// Both sockets' events in one delivery through a: b's records go to
	// b's outbox, none to a's.
	a.deliver(opened(wa, ""), opened(wb, ""), text(wa, "for a"), text(wb, "for b"))
	for _, h := range []*harness{a, b} {
		h.expect(1, 'n', "websocket")
		h.expect(1, 'o', protocol.SubprotocolJSON)
	}
	a.expect(1, 'm', "for a")
	b.expect(1, 'm', "for b")

	// Closing a's socket 1 leaves b's open.
	a.call("socketClose", 1, 1000, "")
	w.closedBy(wa)
	a.expect(1, 'x', "1000,1,")
	const cmd = `{"command":"subscribe","identifier":"b"}`
	if r := b.call("socketSend", 1, cmd).String(); r != "" {
		t.Fatalf("b: socketSend = %q", r)
	}
	if f := w.sent(wb); f.String() != cmd {
		t.Fatalf("b sent %v", f)
	}
	b.deliver(text(wb, "still b"))
	b.expect(1, 'm', "still b")
	for _, h := range []*harness{a, b} {
		h.take()
		if len(h.recs) != 0 {
			t.Fatalf("left over: %v", h.recs)
		}
	}

	// Close ends b's socket alone, and its API.
	b.rt.Close()
	b.closed = true
	w.closedBy(wb)
	b.expect(1, 'x', "1001,1,cableway: runtime closed")
	a.take()
	if len(a.recs) != 0 {
		t.Fatalf("a heard of b: %v", a.recs)
	}
}

// A socket on one WebSocket is dialled with a tag naming it and the
// subprotocols Go must convert, so that the loader's wire may hand its
// frames to the JS socket directly; one through the fallback is not (the
// fallback reads its frames).
func TestSocketDirectTag(t *testing.T) {
	h, w := newHarness(t), fakeWire(t)
	tagOf := func(url string) js.Value {
		t.Helper()
		c := w.next("open", func(c call) bool { return c.args[1].String() == url })
		if len(c.args) < 4 {
			t.Fatalf("open got %d arguments", len(c.args))
		}
		return c.args[3]
	}
	const plain = "ws://example.test/direct"
	h.call("socketOpen", 1, plain, protocols(protocol.SubprotocolJSON), js.Undefined())
	d := tagOf(plain)
	if d.Type() != js.TypeObject || d.Get("tag").Get("socket").Int() != 1 ||
		d.Get("tag").Get("convert").Index(0).String() != protocol.SubprotocolMessagePack || d.Get("readLimit").Int() != websocket.DefaultReadLimit {
		t.Fatalf("open's direct = %v", js.Global().Get("JSON").Call("stringify", d))
	}
	h.call("socketClose", 1, 1000, "")

	const bridged = "ws://example.test/bridged"
	opts := js.ValueOf(map[string]any{"bridge": "http://127.0.0.1:1/bridge", "headStartMs": 60000})
	h.call("socketOpen", 2, bridged, protocols(protocol.SubprotocolJSON), opts)
	if d := tagOf(bridged); !d.IsUndefined() {
		t.Fatalf("a fallback's WebSocket is tagged: %v", js.Global().Get("JSON").Call("stringify", d))
	}
	h.call("socketClose", 2, 1000, "")
}
