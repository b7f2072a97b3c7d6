//go:build js && wasm

// Package wasm is the WebAssembly half of the cableway npm package: thin
// bindings that let JavaScript use the Go sdk. The program is
// wasm/cmd/cableway (built by js/build.mjs into js/dist/cableway.<hash>.wasm). It has no protocol logic of
// its own: frames are decoded and encoded by sdk/protocol, connections are
// made by an sdk transport, and the consumer is sdk/cable.
//
// All state lives in a [Runtime]: its sockets, consumers, subscriptions
// and outbox. [Run] makes one and hands its functions to the JS loader.
//
// Two rules shape it (see js/loader.js for the other side):
//
//   - No exported function ever blocks: each one records what to do and
//     returns; the work runs in goroutines. A js.FuncOf callback that blocked
//     would deadlock the instance.
//   - Everything Go reports to JavaScript (socket frames and events,
//     consumer events, promise results) goes through one outbox. The first
//     record calls the JS notify function once; JS later takes the whole
//     outbox with take(), so a burst of frames crosses into JS as one
//     string, in one call, however many frames and objects it spans.
package wasm

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall/js"

	"github.com/cableway/cableway/sdk/transport/websocket"
)

// Runtime is one set of bindings: the sockets, consumers and subscriptions
// JavaScript opened through its functions (see API), by the ids JavaScript
// gave them, and the outbox through which Go reports on them. Runtimes
// share nothing but the WebSocket hook of sdk/transport/websocket, which
// is one per program (see Run).
//
// The functions of API are meant to be called by JavaScript, one at a
// time, as JavaScript calls Go functions; none of them blocks. Everything
// else about a socket or consumer runs on goroutines of the Runtime, which
// report through the outbox.
type Runtime struct {
	out outbox

	sockets   sync.Map // id → *socket
	consumers sync.Map // id → *consumer
	subs      sync.Map // id → *sub

	api    js.Value
	funcs  []js.Func
	closed atomic.Bool
}

// New returns a Runtime whose outbox calls notify when it gets a record
// and JavaScript has not been told yet: at most once between two takes.
// notify is called from any goroutine of the Runtime, with no lock held; it
// must not block (JavaScript's notify schedules a take()). It may call
// take itself.
func New(notify func()) *Runtime {
	rt := &Runtime{}
	rt.out.notify = notify
	rt.api = js.Global().Get("Object").New()
	rt.export("take", func([]js.Value) any { return rt.out.take() })
	rt.export("socketOpen", rt.socketOpen)
	rt.export("socketSend", rt.socketSend)
	rt.export("socketClose", rt.socketClose)
	rt.export("consumerOpen", rt.consumerOpen)
	rt.export("consumerClose", rt.consumerClose)
	rt.export("subscribe", rt.subscribe)
	rt.export("subscriptionSend", rt.subscriptionSend)
	rt.export("unsubscribe", rt.unsubscribe)
	// crash ends the program as a Go panic would; the loader's tests use
	// it to check that pages survive a dead instance.
	rt.export("crash", func([]js.Value) any {
		go panic("cableway: crash requested")
		return nil
	})
	rt.export("wireDeliver", rt.wireDeliver)
	return rt
}

// export adds fn to the API as name. A call whose arguments are not what
// fn expects (a JS caller other than the loader) returns why as a string,
// as socketSend and subscribe return their errors, rather than ending the
// program with a panic.
func (rt *Runtime) export(name string, fn func(args []js.Value) any) {
	f := js.FuncOf(func(_ js.Value, args []js.Value) (res any) {
		defer func() {
			if r := recover(); r != nil {
				res = fmt.Sprintf("cableway: bad call to %s: %v", name, r)
			}
		}()
		return fn(args)
	})
	rt.funcs = append(rt.funcs, f)
	rt.api.Set(name, f)
}

// API returns the JavaScript object that holds the Runtime's functions,
// the contract js/loader.js relies on:
//
//   - take() → string: every record collected since the last take (see
//     outbox.go for their format).
//   - socketOpen(id, url, protocols, options), socketSend(id, text) →
//     error text or "", socketClose(id, code, reason): the Go side of a
//     JS CableSocket (socket.go).
//   - consumerOpen(id, url, options), consumerClose(id, promiseID),
//     subscribe(id, consumerID, identifier) → error text or "",
//     subscriptionSend(id, promiseID, action, dataJSON), unsubscribe(id):
//     the consumer API (consumer.go).
//   - wireDeliver(batch) → string: hands the WebSocket hook's events to
//     the sdk and returns the records they produced at once.
//   - crash(): ends the program, for the loader's tests.
func (rt *Runtime) API() js.Value { return rt.api }

// Close ends every socket and consumer still open, as JavaScript closing
// them would (a socket with code 1001; their records still reach the
// outbox), and releases the functions of API: JavaScript must not call
// them afterwards. It does not wait for the sockets and consumers to end.
// Close must not be called from inside a function of API; calls after the
// first do nothing.
func (rt *Runtime) Close() {
	if rt.closed.Swap(true) {
		return
	}
	rt.sockets.Range(func(id, _ any) bool {
		rt.closeSocket(id.(int), 1001, "cableway: runtime closed")
		return true
	})
	rt.consumers.Range(func(id, _ any) bool {
		rt.closeConsumer(id.(int), nil)
		return true
	})
	for _, f := range rt.funcs {
		f.Release()
	}
}

// Run creates a Runtime, hands its API to the JS loader's boot callback
// (named by os.Args[1]), installs the WebSocket hook the loader returns
// (websocket.SetJSHook: one per program) and serves the API until the
// program ends. It never returns.
func Run() {
	if len(os.Args) < 2 {
		panic("cableway: started without a boot callback (use the cableway JS loader)")
	}
	boot := js.Global().Get(os.Args[1])
	if boot.Type() != js.TypeFunction {
		panic("cableway: boot callback " + os.Args[1] + " is not a function")
	}
	// notify is known once boot has returned; JavaScript calls none of the
	// API before, so nothing is reported before either.
	var notify atomic.Pointer[js.Value]
	rt := New(func() { notify.Load().Invoke() })
	// boot returns {notify, wire}: the JS function that schedules a take(),
	// and the WebSocket hook (open/send/close) of sdk/transport/websocket.
	res := boot.Invoke(rt.API())
	n := res.Get("notify")
	notify.Store(&n)
	websocket.SetJSHook(res.Get("wire"))
	select {}
}

// wireDeliver(batch Uint8Array) hands the socket events the loader's wire
// queued to the sdk's WebSocket transport (websocket.DeliverJS), lets the
// goroutines reading those sockets run, and returns the outbox they filled:
// a burst of frames costs JavaScript one call into Go, which also returns
// what became of them. The hook is the program's, so a batch may hold
// events of another Runtime's sockets: their records go to that Runtime's
// outbox, which notifies as usual.
func (rt *Runtime) wireDeliver(args []js.Value) any {
	batch := args[0]
	rt.out.mu.Lock()
	rt.out.quiet = true
	rt.out.mu.Unlock()
	websocket.DeliverJS(batch)
	// The readers woken above run now, each until it waits again; twice, in
	// case the scheduler looks at this goroutine first. Anything they leave
	// for later reaches JavaScript through notify, only a call later.
	runtime.Gosched()
	runtime.Gosched()
	return rt.out.take()
}
