//go:build !js

package websocket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/transport"
)

// closeTimeout bounds the polite close handshake in Conn.Close.
const closeTimeout = 2 * time.Second

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
