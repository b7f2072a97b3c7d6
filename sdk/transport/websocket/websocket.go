// Package websocket is the WebSocket transport: it dials an ActionCable
// endpoint with github.com/coder/websocket and moves whole frames.
//
// Natively it sends the handshake headers it is given (Cookie,
// Authorization, …) and an Origin derived from the URL when none is given,
// as Rails' allowed_request_origins expects; it can use a custom
// *http.Client (proxies, TLS) and permessage-deflate. Under GOOS=js it uses
// the browser's WebSocket, which sets Cookie and Origin itself and allows no
// other headers.
package websocket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/transport"
)

// DefaultReadLimit is the largest frame a connection accepts unless
// WithReadLimit says otherwise.
const DefaultReadLimit = 1 << 20

// closeTimeout bounds the polite close handshake in Conn.Close.
const closeTimeout = 2 * time.Second

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
func (*Transport) Name() string { return "websocket" }

// Dial opens a WebSocket to req.URL offering req.Subprotocols. It fails
// with transport.ErrUnsupportedSubprotocol when the server picks one that
// was not offered, and with a *transport.HandshakeError when the server
// answers with an HTTP status.
func (t *Transport) Dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	c, stream, err := t.dial(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("websocket: dial %s: %w", redact(req.URL), err)
	}
	// coder/websocket's limit closes with 1009 on the byte after it; ours
	// reports the error first, so give it one byte of room.
	c.SetReadLimit(t.o.readLimit + 1)
	return &conn{ws: c, stream: stream, limit: t.o.readLimit, binary: isBinary(c.Subprotocol())}, nil
}

func isBinary(subprotocol string) bool { return subprotocol == "actioncable-v1-msgpack" }

// redact drops the query and user info from a URL for error messages:
// tokens often travel there.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

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

// conn adapts a coder/websocket connection to transport.Conn.
type conn struct {
	ws     *ws.Conn
	stream io.Closer // the upgraded HTTP stream under ws; nil under GOOS=js
	limit  int64
	binary bool

	closeOnce sync.Once

	// The context of the last ReadFrame, and the stop function of the
	// AfterFunc that closes the connection when it ends. Only the reading
	// goroutine touches these. Reading itself uses a context without a
	// Done channel: coder/websocket arms two timers per frame for a
	// cancellable one, which costs more than the read.
	readCtx  context.Context
	stopRead func() bool
}

func (c *conn) Subprotocol() string { return c.ws.Subprotocol() }

func (c *conn) ReadFrame(ctx context.Context, buf []byte) ([]byte, error) {
	if ctx != c.readCtx {
		if c.stopRead != nil {
			c.stopRead()
		}
		c.readCtx, c.stopRead = ctx, nil
		if ctx.Done() != nil {
			c.stopRead = context.AfterFunc(ctx, func() { c.ws.CloseNow() })
		}
	}
	if err := ctx.Err(); err != nil {
		return buf[:0], fmt.Errorf("websocket: %w", context.Cause(ctx))
	}
	_, r, err := c.ws.Reader(context.Background())
	if err != nil {
		return buf[:0], c.mapErr(ctx, err)
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(512, cap(buf)))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > c.limit {
			c.close(ws.StatusMessageTooBig, "frame exceeds the read limit")
			return buf[:0], fmt.Errorf("websocket: %w (%d bytes)", transport.ErrFrameTooLarge, c.limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf[:0], c.mapErr(ctx, err)
		}
	}
}

func (c *conn) WriteFrame(ctx context.Context, frame []byte) error {
	typ := ws.MessageText
	if c.binary {
		typ = ws.MessageBinary
	}
	if err := c.ws.Write(ctx, typ, frame); err != nil {
		return c.mapErr(ctx, err)
	}
	return nil
}

// Close sends a normal close frame and waits up to 2 s for the peer's
// answer before dropping the connection.
func (c *conn) Close() error {
	c.close(ws.StatusNormalClosure, "")
	return nil
}

// close closes the connection once, with a close frame carrying code and
// reason, waiting at most closeTimeout for the peer's answer.
func (c *conn) close(code ws.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.ws.Close(code, reason)
		}()
		t := time.NewTimer(closeTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			// ws.Close waits 5 s for the peer's close frame, and CloseNow
			// only waits for it to finish: cut the stream under it.
			if c.stream != nil {
				c.stream.Close()
			}
			c.ws.CloseNow()
			<-done
		}
	})
}

// mapErr turns coder/websocket errors into the transport's.
func (c *conn) mapErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("websocket: %w", context.Cause(ctx))
	}
	var ce ws.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("websocket: %w", &transport.CloseError{Code: int(ce.Code), Reason: ce.Reason})
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("websocket: %w: %w", &transport.CloseError{Code: int(ws.StatusAbnormalClosure)}, err)
	}
	return fmt.Errorf("websocket: %w", err)
}
