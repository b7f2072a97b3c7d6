//go:build js && wasm

// Command standalone is a Go program on the sdk alone, compiled to
// WebAssembly and run by js/test/standalone.test.mjs in Chromium with
// nothing but Go's wasm_exec.js: no cableway loader, no JS hook. It shows
// that anyone compiling the sdk to wasm gets working transports — the
// WebSocket on globalThis.WebSocket, SSE and long-polling on
// EventSource and fetch.
//
// It reads globalThis.standalone = {cable, blocked, bridge, report(json)}
// and reports one JSON object per check to report().
package main

import (
	"context"
	"encoding/json"
	"errors"
	"syscall/js"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/sdk/transport/longpoll"
)

type result struct {
	Name      string         `json:"name"`
	Transport string         `json:"transport,omitempty"`
	Params    map[string]any `json:"params,omitempty"`
	Echo      map[string]any `json:"echo,omitempty"`
	Changes   []string       `json:"changes,omitempty"`
	Err       string         `json:"error,omitempty"`
}

func main() {
	cfg := js.Global().Get("standalone")
	report := func(r result) {
		b, _ := json.Marshal(r)
		cfg.Call("report", string(b))
	}
	str := func(k string) string { return cfg.Get(k).String() }
	bridge := str("bridge")
	checks := []struct {
		name, url string
		opts      []cable.Option
	}{
		{"websocket", str("cable"), nil},
		{"bridge", str("blocked"), []cable.Option{cable.WithTransport(fallback.Bridged(bridge))}},
		{"longpoll", str("blocked"), []cable.Option{cable.WithTransport(longpoll.New(bridge))}},
	}
	for _, c := range checks {
		report(check(c.name, c.url, c.opts))
	}
	report(result{Name: "done"})
}

// check connects, subscribes to EchoChannel and performs echo.
func check(name, url string, opts []cable.Option) (r result) {
	r.Name = name
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	events := make(chan cable.Event, 16)
	opts = append(opts, cable.WithEventHandler(func(e cable.Event) {
		select {
		case events <- e:
		default:
		}
	}))
	c, err := cable.Dial(ctx, url, opts...)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, protocol.MustIdentifier("EchoChannel", "via", name))
	if err != nil {
		r.Err = err.Error()
		return r
	}
	next := func(v *map[string]any) error {
		select {
		case m, ok := <-sub.Messages():
			if !ok {
				return errors.New("subscription ended")
			}
			return m.Decode(v)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var params struct{ Params map[string]any }
	var p map[string]any
	if err := next(&p); err != nil {
		r.Err = err.Error()
		return r
	}
	b, _ := json.Marshal(p)
	json.Unmarshal(b, &params)
	r.Params = params.Params
	if err := sub.Perform(ctx, "echo", map[string]any{"n": 1, "s": "ü"}); err != nil {
		r.Err = err.Error()
		return r
	}
	if err := next(&r.Echo); err != nil {
		r.Err = err.Error()
		return r
	}
	// The events that came so far, up to the connection's (the handler
	// runs on its own goroutine, so it may come after Dial returned).
	for r.Transport == "" {
		select {
		case e := <-events:
			switch e.Kind {
			case cable.EventConnected:
				r.Transport = e.Transport
			case cable.EventTransportChanged:
				r.Changes = append(r.Changes, e.From+"→"+e.Transport)
			}
		case <-ctx.Done():
			r.Err = "no connected event"
			return r
		}
	}
	return r
}
