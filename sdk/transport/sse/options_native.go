//go:build !js

package sse

import (
	"net/http"

	"github.com/cableway/cableway/sdk/transport/internal/bridgeconn"
)

type options struct {
	maxFrame int
	client   *http.Client
}

// WithHTTPClient sets the client for the bridge's requests (proxy, TLS).
// Its Timeout must be zero: it would cut the event stream.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.client = c }
}

func (o *options) doer() bridgeconn.Doer { return bridgeconn.HTTPDoer{Client: o.client} }

func (o *options) downstream() bridgeconn.Downstream {
	return bridgeconn.SSE{Client: o.client, MaxFrame: o.maxFrame}
}
