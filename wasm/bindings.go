//go:build js && wasm

// Package wasm is the WebAssembly half of the cableway npm package: thin
// bindings that let JavaScript use the Go sdk. The program is
// wasm/cmd/cableway (built by js/build.mjs into js/dist/cableway.wasm). It has no protocol logic of
// its own: frames are decoded and encoded by sdk/protocol, connections are
// made by an sdk transport, and the consumer is sdk/cable.
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
	"os"
	"runtime"
	"syscall/js"

	"github.com/cableway/cableway/sdk/transport/websocket"
)

// Run exports the bindings to the JS loader and serves them until the
// program ends. It never returns.
func Run() {
	if len(os.Args) < 2 {
		panic("cableway: started without a boot callback (use the cableway JS loader)")
	}
	boot := js.Global().Get(os.Args[1])
	if boot.Type() != js.TypeFunction {
		panic("cableway: boot callback " + os.Args[1] + " is not a function")
	}
	api := js.Global().Get("Object").New()
	export := func(name string, fn func(args []js.Value) any) {
		api.Set(name, js.FuncOf(func(_ js.Value, args []js.Value) any { return fn(args) }))
	}
	export("take", func([]js.Value) any { return out.take() })
	export("socketOpen", socketOpen)
	export("socketSend", socketSend)
	export("socketClose", socketClose)
	export("consumerOpen", consumerOpen)
	export("consumerClose", consumerClose)
	export("subscribe", subscribe)
	export("subscriptionSend", subscriptionSend)
	export("unsubscribe", unsubscribe)
	// crash ends the instance as a Go panic would; the loader's tests use
	// it to check that pages survive a dead instance.
	export("crash", func([]js.Value) any {
		go panic("cableway: crash requested")
		return nil
	})
	export("wireDeliver", wireDeliver)
	// boot returns {notify, wire}: the JS function that schedules a take(),
	// and the WebSocket hook (open/send/close) of sdk/transport/websocket.
	res := boot.Invoke(api)
	out.notify = res.Get("notify")
	websocket.SetJSHook(res.Get("wire"))
	select {}
}

// wireDeliver(batch Uint8Array) hands the socket events the loader's wire
// queued to the sdk's WebSocket transport (websocket.DeliverJS), lets the
// goroutines reading those sockets run, and returns the outbox they filled:
// a burst of frames costs JavaScript one call into Go, which also returns
// what became of them.
func wireDeliver(args []js.Value) any {
	out.mu.Lock()
	out.quiet = true
	out.mu.Unlock()
	websocket.DeliverJS(args[0])
	// The readers woken above run now, each until it waits again; twice, in
	// case the scheduler looks at this goroutine first. Anything they leave
	// for later reaches JavaScript through notify, only a call later.
	runtime.Gosched()
	runtime.Gosched()
	return out.take()
}
