//go:build !js

package websocket

import (
	"context"
	"net/http"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/transport"
)

type options struct {
	readLimit  int64
	httpClient *http.Client
	compress   ws.CompressionMode
	threshold  int
}

// WithHTTPClient dials through client: its Transport's proxy, TLS
// configuration and dialer apply. The client's Timeout must be zero (it
// would cut live connections); a Dial's context bounds the handshake.
// Not available under GOOS=js, where the browser dials.
func WithHTTPClient(client *http.Client) Option {
	return func(o *options) { o.httpClient = client }
}

// WithCompression offers permessage-deflate. ws.CompressionNoContextTakeover
// costs little memory; ws.CompressionContextTakeover compresses small,
// similar frames (typical for ActionCable) much better at ~32 KiB more per
// connection. threshold is the smallest frame compressed, 0 for coder's
// default. Not available under GOOS=js, where the browser decides.
func WithCompression(mode ws.CompressionMode, threshold int) Option {
	return func(o *options) { o.compress, o.threshold = mode, threshold }
}

func (t *Transport) dial(ctx context.Context, req *transport.Request) (*ws.Conn, error) {
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		h[http.CanonicalHeaderKey(k)] = v
	}
	if h.Get("Origin") == "" {
		if o := originFor(req.URL); o != "" {
			h.Set("Origin", o)
		}
	}
	c, resp, err := ws.Dial(ctx, req.URL, &ws.DialOptions{
		HTTPClient:           t.o.httpClient,
		HTTPHeader:           h,
		Subprotocols:         req.Subprotocols,
		CompressionMode:      t.o.compress,
		CompressionThreshold: t.o.threshold,
	})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
			if serr := checkSubprotocol(req.Subprotocols, resp.Header.Get("Sec-WebSocket-Protocol")); serr != nil {
				return nil, serr
			}
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &transport.HandshakeError{StatusCode: resp.StatusCode, Err: err}
		}
		return nil, err
	}
	return c, nil
}
