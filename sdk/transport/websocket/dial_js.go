//go:build js

package websocket

import (
	"context"
	"fmt"
	"io"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/transport"
)

type options struct {
	readLimit int64
}

func (t *Transport) dial(ctx context.Context, req *transport.Request) (*ws.Conn, io.Closer, error) {
	for k := range req.Header {
		switch k {
		case "Cookie", "Origin", "cookie", "origin":
			// The browser sends its own.
		default:
			return nil, nil, fmt.Errorf("%w: %q (pass tokens in the URL query instead)", transport.ErrHeaderUnsupported, k)
		}
	}
	c, _, err := ws.Dial(ctx, req.URL, &ws.DialOptions{Subprotocols: req.Subprotocols})
	if err != nil {
		return nil, nil, err
	}
	if err := checkSubprotocol(req.Subprotocols, c.Subprotocol()); err != nil {
		c.CloseNow()
		return nil, nil, err
	}
	// The browser closes the socket; there is no stream to cut.
	return c, nil, nil
}
