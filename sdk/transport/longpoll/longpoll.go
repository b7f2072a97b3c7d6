// Package longpoll is the long-polling transport: it reaches ActionCable
// through a Cableway bridge (server/bridge), fetching frames with
// long-held GET requests that each acknowledge the previous answer, and
// sending commands by POST. It is the last resort behind proxies that
// buffer event streams; a lost response loses nothing, since the next poll
// asks again from the same cursor.
//
// Natively it uses net/http; under GOOS=js the browser's fetch.
package longpoll

import (
	"context"
	"time"

	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/internal/bridgeconn"
)

// Transport dials bridge sessions read by long-polling. It is safe for
// concurrent use.
type Transport struct {
	offer // the downstream, for package fallback
	base  string
	o     options
}

type offer = bridgeconn.Offer

// New returns a transport for the bridge at bridgeURL.
func New(bridgeURL string, opts ...Option) *Transport {
	t := &Transport{base: bridgeURL, o: options{timeout: 25 * time.Second}}
	for _, opt := range opts {
		opt(&t.o)
	}
	t.offer = bridgeconn.NewOffer(bridgeconn.Poll{Timeout: t.o.timeout})
	return t
}

// Name returns "longpoll".
func (*Transport) Name() string { return transport.NameLongPoll }

// Dial creates a bridge session with req's headers and the query of
// req.URL (passed on to Rails), and starts polling it.
func (t *Transport) Dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	s, err := bridgeconn.CreateFor(ctx, t.o.doer(), t.base, req)
	if err != nil {
		return nil, err
	}
	return bridgeconn.Open(s, bridgeconn.Poll{Timeout: t.o.timeout}), nil
}

// Option configures a Transport.
type Option func(*options)

// WithPollTimeout sets how long the bridge may hold one poll (default 25 s,
// at most 60 s). Rails' pings (every 3 s) end polls sooner anyway.
func WithPollTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}
