//go:build js && wasm

package wasm

import (
	"encoding/json"
	"fmt"
	"slices"
	"syscall/js"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// options are the JS options of a socket or consumer (see js/index.d.ts).
type options struct {
	MsgPack    bool     // offer actioncable-v1-msgpack before JSON
	Bridge     string   // the Cableway bridge's base URL, for "sse" and "longpoll"
	Transports []string // in order of preference; default websocket (+ sse, longpoll with a bridge)
	ReadLimit  int64    // largest frame accepted, bytes; 0 for the sdk default
	Stale      time.Duration
	HeadStart  time.Duration // fallback: how long a transport may hang before the next races it
	Probe      time.Duration // fallback: how often to try moving back up; < 0 never
}

func parseOptions(v js.Value) options {
	var o options
	if v.Type() != js.TypeObject {
		return o
	}
	if b := v.Get("msgpack"); b.Type() == js.TypeBoolean {
		o.MsgPack = b.Bool()
	}
	if b := v.Get("bridge"); b.Type() == js.TypeString {
		o.Bridge = b.String()
	}
	if t := v.Get("transports"); t.Type() == js.TypeObject {
		for i := range t.Length() {
			o.Transports = append(o.Transports, t.Index(i).String())
		}
	} else if t := v.Get("transport"); t.Type() == js.TypeString { // the one-name form
		o.Transports = []string{t.String()}
	}
	if n := v.Get("maxFrameBytes"); n.Type() == js.TypeNumber {
		o.ReadLimit = int64(n.Float())
	}
	ms := func(name string) time.Duration {
		if n := v.Get(name); n.Type() == js.TypeNumber {
			return time.Duration(n.Float() * float64(time.Millisecond))
		}
		return 0
	}
	o.Stale, o.HeadStart, o.Probe = ms("staleTimeoutMs"), ms("headStartMs"), ms("probeIntervalMs")
	return o
}

// transport builds the transport the options name: one transport, or a
// fallback over several (sdk/transport/fallback, as fallback.Bridged
// builds it for the default list). onChange is told of every move between
// transports (see change).
func (o options) transport(onChange func(transport.Change)) (transport.Transport, error) {
	names := o.names()
	list := make([]transport.Transport, 0, len(names))
	for _, name := range names {
		switch name {
		case "websocket":
			list = append(list, websocket.New(websocket.WithReadLimit(o.ReadLimit)))
		case "sse", "longpoll":
			if o.Bridge == "" {
				return nil, fmt.Errorf("cableway: transport %q needs the bridge option (the Cableway bridge's URL)", name)
			}
			if name == "sse" {
				list = append(list, sse.New(o.Bridge, sse.WithMaxFrame(int(o.ReadLimit))))
			} else {
				list = append(list, longpoll.New(o.Bridge))
			}
		default:
			return nil, fmt.Errorf("cableway: unknown transport %q (known: websocket, sse, longpoll)", name)
		}
	}
	if len(list) == 1 {
		return list[0], nil
	}
	opts := []fallback.Option{fallback.WithOnChange(onChange), fallback.WithHeadStart(o.HeadStart)}
	switch {
	case !slices.Contains(names, "websocket"):
		// The probe moves a bridged connection to a WebSocket: not asked for.
		opts = append(opts, fallback.WithProbeInterval(-1))
	case o.Probe != 0:
		opts = append(opts, fallback.WithProbeInterval(o.Probe))
	}
	return fallback.New(list, opts...), nil
}

// names returns the transports to use, in order.
func (o options) names() []string {
	switch {
	case len(o.Transports) > 0:
		return o.Transports
	case o.Bridge != "":
		return []string{"websocket", "sse", "longpoll"}
	}
	return []string{"websocket"}
}

// consumerOptions turns the options into sdk/cable options.
func (o options) consumerOptions(onChange func(transport.Change)) ([]cable.Option, error) {
	tr, err := o.transport(onChange)
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

// change describes a move between transports for JS as JSON
// {"from","to","upgrade","reason"}. An upgrade (the background probe moved
// the connection back up) has reason "upgrade". Otherwise the reason is
// transport.Change's (why the better transports failed or hung, or why the
// live one was left); it has none when the better ones were not tried,
// because the connection starts from what worked last time.
func change(ch transport.Change) func([]byte) ([]byte, error) {
	upgrade := ch.Upgrade
	reason := "upgrade"
	switch {
	case ch.Reason != nil:
		reason = ch.Reason.Error()
	case !upgrade:
		reason = ch.From + ": not tried: the connection starts from what worked last time"
	}
	return func(dst []byte) ([]byte, error) {
		dst = append(dst, `{"from":`...)
		dst = appendJSONString(dst, ch.From)
		dst = append(dst, `,"to":`...)
		dst = appendJSONString(dst, ch.To)
		dst = fmt.Appendf(dst, `,"upgrade":%t,"reason":`, upgrade)
		dst = appendJSONString(dst, reason)
		return append(dst, '}'), nil
	}
}

// transportName names the transport carrying conn.
func transportName(tr transport.Transport, conn transport.Conn) string {
	if d, ok := conn.(transport.Describer); ok {
		return d.TransportName()
	}
	return tr.Name()
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}
