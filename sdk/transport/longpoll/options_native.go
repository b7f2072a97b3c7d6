//go:build !js

package longpoll

import (
	"net/http"
	"time"

	"github.com/cableway/cableway/sdk/transport/internal/bridgeconn"
)

type options struct {
	timeout time.Duration
	client  *http.Client
}

// WithHTTPClient sets the client for the bridge's requests (proxy, TLS).
// Its Timeout, if set, must exceed the poll timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.client = c }
}

func (o *options) doer() bridgeconn.Doer { return bridgeconn.HTTPDoer{Client: o.client} }
