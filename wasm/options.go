//go:build js && wasm

package wasm

import (
	"fmt"
	"syscall/js"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
)

// options are the JS options of a socket or consumer (see js/index.d.ts).
type options struct {
	MsgPack   bool   // offer actioncable-v1-msgpack before JSON
	Transport string // "websocket" (default); the seam for fallbacks
	ReadLimit int64  // largest frame accepted, bytes; 0 for the sdk default
	Stale     time.Duration
}

func parseOptions(v js.Value) options {
	var o options
	if v.Type() != js.TypeObject {
		return o
	}
	if b := v.Get("msgpack"); b.Type() == js.TypeBoolean {
		o.MsgPack = b.Bool()
	}
	if t := v.Get("transport"); t.Type() == js.TypeString {
		o.Transport = t.String()
	}
	if n := v.Get("maxFrameBytes"); n.Type() == js.TypeNumber {
		o.ReadLimit = int64(n.Float())
	}
	if n := v.Get("staleTimeoutMs"); n.Type() == js.TypeNumber {
		o.Stale = time.Duration(n.Float() * float64(time.Millisecond))
	}
	return o
}

// transport returns the transport named by the options. Only the WebSocket
// is built in so far; SSE and long-poll plug in here, behind the same
// transport.Transport seam.
func (o options) transport() (transport.Transport, error) {
	switch o.Transport {
	case "", "websocket":
		return &jsTransport{readLimit: o.ReadLimit}, nil
	}
	return nil, fmt.Errorf("cableway: unknown transport %q", o.Transport)
}

// consumerOptions turns the options into sdk/cable options.
func (o options) consumerOptions() ([]cable.Option, error) {
	tr, err := o.transport()
	if err != nil {
		return nil, err
	}
	opts := []cable.Option{cable.WithTransport(tr)}
	if o.MsgPack {
		opts = append(opts, cable.WithCodecs(protocol.MessagePackCodec{}, protocol.JSONCodec{}))
	}
	if o.Stale > 0 {
		opts = append(opts, cable.WithStaleTimeout(o.Stale))
	}
	return opts, nil
}
