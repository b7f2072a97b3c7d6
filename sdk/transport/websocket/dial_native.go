//go:build !js

package websocket

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

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

func (t *Transport) dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	c, stream, err := t.dialWS(ctx, req)
	if err != nil {
		return nil, err
	}
	// coder/websocket's limit closes with 1009 on the byte after it; ours
	// reports the error first, so give it one byte of room.
	c.SetReadLimit(t.o.readLimit + 1)
	return &conn{ws: c, stream: stream, limit: t.o.readLimit, binary: isBinary(c.Subprotocol())}, nil
}

func (t *Transport) dialWS(ctx context.Context, req *transport.Request) (*ws.Conn, io.Closer, error) {
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		ck := http.CanonicalHeaderKey(k)
		h[ck] = append(h[ck], v...) // "cookie" and "Cookie" both count
	}
	if c := h["Cookie"]; len(c) > 1 {
		// One Cookie line, as RFC 6265 §5.4 asks of clients.
		h["Cookie"] = []string{strings.Join(c, "; ")}
	}
	if h.Get("Origin") == "" {
		if o := originFor(req.URL); o != "" {
			h.Set("Origin", o)
		}
	}
	client := t.o.httpClient
	if client == nil {
		client = http.DefaultClient
	}
	hooked := *client
	hook := &upgradeHook{base: hooked.Transport, offered: req.Subprotocols}
	if hook.base == nil {
		hook.base = http.DefaultTransport
	}
	hooked.Transport = hook
	c, resp, err := ws.Dial(ctx, req.URL, &ws.DialOptions{
		HTTPClient:           &hooked,
		HTTPHeader:           h,
		Subprotocols:         req.Subprotocols,
		CompressionMode:      t.o.compress,
		CompressionThreshold: t.o.threshold,
	})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
			if serr := checkSubprotocol(req.Subprotocols, resp.Header.Get("Sec-WebSocket-Protocol")); serr != nil {
				return nil, nil, serr
			}
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, nil, &transport.HandshakeError{StatusCode: resp.StatusCode, Err: err}
		}
		return nil, nil, redactURLError(err)
	}
	return c, hook.stream, nil
}

// upgradeHook wraps the HTTP client's RoundTripper for one dial. It refuses
// an unoffered subprotocol as soon as the 101 arrives (coder/websocket
// would first wait up to 3 s for the body of the failed handshake), and it
// keeps the upgraded stream, so that Close can cut a connection whose peer
// never answers the close frame (coder/websocket waits 5 s for it).
type upgradeHook struct {
	base    http.RoundTripper
	offered []string
	stream  io.Closer
}

func (h *upgradeHook) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, err
	}
	if err := checkSubprotocol(h.offered, resp.Header.Get("Sec-WebSocket-Protocol")); err != nil {
		resp.Body.Close()
		return nil, err
	}
	h.stream = resp.Body
	return resp, nil
}

// redactURLError rewrites the *url.Error that net/http puts in dial errors
// (Get "http://host/cable?token=…": connection refused), whose URL
// keeps the query, where tokens travel.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return &url.Error{Op: ue.Op, URL: transport.RedactURL(ue.URL), Err: ue.Err}
}
