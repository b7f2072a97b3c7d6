// Package websocket is the WebSocket transport: it dials an ActionCable
// endpoint and moves whole frames.
//
// Natively it dials with github.com/coder/websocket: it sends the handshake
// headers it is given (Cookie, Authorization, …) and an Origin derived from
// the URL when none is given, as Rails' allowed_request_origins expects; it
// can use a custom *http.Client (proxies, TLS) and permessage-deflate.
//
// Under GOOS=js it drives the JavaScript WebSocket through syscall/js and
// links neither coder/websocket nor net/http: globalThis.WebSocket by
// default, or a batching JS hook installed with SetJSHook (see there for
// its contract). The JavaScript WebSocket sets Cookie and Origin itself and
// allows no other headers.
package websocket

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	"github.com/cableway/cableway/sdk/transport"
)

// DefaultReadLimit is the largest frame a connection accepts unless
// WithReadLimit says otherwise.
const DefaultReadLimit = 1 << 20

// Transport dials WebSocket connections. Create it with New; it is safe for
// concurrent use.
type Transport struct {
	o options
}

// New returns a WebSocket transport configured by opts.
func New(opts ...Option) *Transport {
	t := &Transport{o: options{readLimit: DefaultReadLimit}}
	for _, opt := range opts {
		opt(&t.o)
	}
	return t
}

// Name returns "websocket".
func (*Transport) Name() string { return transport.NameWebSocket }

// Dial opens a WebSocket to req.URL offering req.Subprotocols. It fails
// with transport.ErrUnsupportedSubprotocol when the server picks one that
// was not offered, and with a *transport.HandshakeError when the server
// answers with an HTTP status (natively: a JavaScript WebSocket does not
// tell why a handshake failed, so under GOOS=js a refused or failed dial is
// a *transport.CloseError with status 1006).
func (t *Transport) Dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	c, err := t.dial(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("websocket: dial %s: %w", transport.RedactURL(req.URL), err)
	}
	return c, nil
}

func isBinary(subprotocol string) bool { return subprotocol == "actioncable-v1-msgpack" }

// originFor derives the Origin Rails expects from the cable URL:
// ws://host → http://host, wss://host → https://host.
func originFor(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	scheme := "http"
	if u.Scheme == "wss" || u.Scheme == "https" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

func checkSubprotocol(offered []string, chosen string) error {
	if chosen == "" || slices.Contains(offered, chosen) {
		return nil
	}
	return fmt.Errorf("%w: %q (offered %q)", transport.ErrUnsupportedSubprotocol, chosen, offered)
}
