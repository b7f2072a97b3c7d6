// Package sse is the Server-Sent Events transport: it reaches ActionCable
// through a Cableway bridge (server/bridge), reading frames from an event
// stream and sending commands by POST. Use it where WebSockets are blocked
// or broken, usually behind the fallback transport.
//
// A dropped stream is resumed from the last event id, invisibly to the
// consumer; only a session the bridge no longer has ends the connection.
// Natively it uses github.com/r3labs/sse/v2 (with its own reconnection
// off); under GOOS=js the browser's EventSource and fetch.
package sse

import (
	"context"

	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/internal/bridgeconn"
)

// Transport dials bridge sessions read over SSE. It is safe for
// concurrent use.
type Transport struct {
	offer // the downstream, for package fallback
	base  string
	o     options
}

type offer = bridgeconn.Offer

// New returns a transport for the bridge at bridgeURL (its base, e.g.
// "https://example.com/cable-bridge"). Of the consumer's URL only the
// query is used (passed on to Rails, see Dial): the bridge knows its Rails
// upstream.
func New(bridgeURL string, opts ...Option) *Transport {
	t := &Transport{base: bridgeURL, o: options{maxFrame: 1 << 20}}
	for _, opt := range opts {
		opt(&t.o)
	}
	t.offer = bridgeconn.NewOffer(t.o.downstream())
	return t
}

// Name returns "sse".
func (*Transport) Name() string { return transport.NameSSE }

// Dial creates a bridge session with req's headers (Cookie,
// Authorization) and the query of req.URL (where browsers put tokens),
// which the bridge passes on to Rails, and starts its event stream:
// natively in one request where the bridge offers it (GET /sessions/sse),
// else with POST /sessions and then the session's stream. The session exists once Rails
// has welcomed it; the welcome is the first frame read.
func (t *Transport) Dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	c, err := bridgeconn.DialSSE(ctx, t.o.downstream(), t.o.doer(), t.base, req)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Option configures a Transport.
type Option func(*options)

// WithMaxFrame sets the largest frame accepted (default 1 MiB).
func WithMaxFrame(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxFrame = n
		}
	}
}
