//go:build js

package websocket

import (
	"context"
	"fmt"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/transport"
)

type options struct {
	readLimit int64
}

func (t *Transport) dial(ctx context.Context, req *transport.Request) (*ws.Conn, error) {
	for k := range req.Header {
		switch k {
		case "Cookie", "Origin", "cookie", "origin":
			// The browser sends its own.
		default:
			return nil, fmt.Errorf("%w: %q (pass tokens in the URL query instead)", transport.ErrHeaderUnsupported, k)
		}
	}
	c, _, err := ws.Dial(ctx, req.URL, &ws.DialOptions{Subprotocols: req.Subprotocols})
	if err != nil {
		return nil, err
	}
	if err := checkSubprotocol(req.Subprotocols, c.Subprotocol()); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}
