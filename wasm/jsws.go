//go:build js && wasm

package wasm

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"syscall/js"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
)

// jsTransport is a transport.Transport over the JavaScript WebSocket that
// js/loader.js drives (the page's WebSocket, or the one handed to load()).
//
// It stands in for sdk/transport/websocket in this binary for two reasons
// measured here: coder/websocket's js build imports net/http (+~0.8 MB
// brotli), and it enters Go once per frame (a js.FuncOf per message event),
// which halves the receive rate in Chromium. The JS half queues the
// events of every socket and hands them to Go as one byte batch per task
// (wireDeliver below).
type jsTransport struct {
	readLimit int64
}

// JS half: open(id, url, protocols), send(id, data), close(id, code, reason).
var wireOpen, wireSend, wireClose js.Value

func (*jsTransport) Name() string { return "websocket" }

const defaultReadLimit = 1 << 20

var (
	wireConns  sync.Map // id → *jsConn
	wireNextID = 0
	wireIDMu   sync.Mutex
)

func (t *jsTransport) Dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	for k := range req.Header {
		switch k {
		case "Cookie", "Origin", "cookie", "origin": // the browser sends its own
		default:
			return nil, fmt.Errorf("websocket: %w: %q (pass tokens in the URL query instead)", transport.ErrHeaderUnsupported, k)
		}
	}
	wireIDMu.Lock()
	wireNextID++
	id := wireNextID
	wireIDMu.Unlock()
	c := &jsConn{id: id, limit: t.readLimit, signal: make(chan struct{}, 1), opened: make(chan struct{}), closed: make(chan struct{})}
	if c.limit <= 0 {
		c.limit = defaultReadLimit
	}
	wireConns.Store(id, c)
	protocols := make([]any, len(req.Subprotocols))
	for i, p := range req.Subprotocols {
		protocols[i] = p
	}
	if err := callJS(wireOpen, id, req.URL, protocols); err != nil {
		wireConns.Delete(id)
		return nil, fmt.Errorf("websocket: dial %s: %w", redact(req.URL), err)
	}
	select {
	case <-c.opened:
		if p := c.protocol; p != "" && !slices.Contains(req.Subprotocols, p) {
			c.Close()
			return nil, fmt.Errorf("websocket: dial %s: %w: %q", redact(req.URL), transport.ErrUnsupportedSubprotocol, p)
		}
		return c, nil
	case <-c.closed:
		return nil, fmt.Errorf("websocket: dial %s: %w", redact(req.URL), c.err)
	case <-ctx.Done():
		go c.Close()
		return nil, fmt.Errorf("websocket: dial %s: %w", redact(req.URL), ctx.Err())
	}
}

// callJS calls fn, turning a JS exception into an error.
func callJS(fn js.Value, args ...any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	fn.Invoke(args...)
	return nil
}

// redact drops the query (tokens travel there) from a URL for errors.
func redact(url string) string {
	for i := range len(url) {
		if url[i] == '?' || url[i] == '#' {
			return url[:i]
		}
	}
	return url
}

// jsConn is one JS WebSocket as a transport.Conn.
type jsConn struct {
	id       int
	limit    int64
	protocol string
	binary   bool
	signal   chan struct{} // a frame was queued or the socket closed
	opened   chan struct{}
	closed   chan struct{}

	mu        sync.Mutex
	queue     [][]byte     // frames not read yet (slices of a delivery batch)
	sink      func([]byte) // if set, takes frames instead of ReadFrame
	err       error        // why the socket closed, once closed is
	closing   bool
	closeOnce sync.Once
}

func (c *jsConn) Subprotocol() string { return c.protocol }

func (c *jsConn) ReadFrame(ctx context.Context, buf []byte) ([]byte, error) {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			f := c.queue[0]
			c.queue[0] = nil
			c.queue = c.queue[1:]
			c.mu.Unlock()
			if int64(len(f)) > c.limit {
				go c.closeWith(1009, "frame exceeds the read limit")
				return buf[:0], fmt.Errorf("websocket: %w (%d bytes)", transport.ErrFrameTooLarge, c.limit)
			}
			return append(buf[:0], f...), nil
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return buf[:0], err
		}
		select {
		case <-c.signal:
		case <-ctx.Done():
			go c.Close()
			return buf[:0], fmt.Errorf("websocket: %w", context.Cause(ctx))
		}
	}
}

func (c *jsConn) WriteFrame(ctx context.Context, frame []byte) error {
	c.mu.Lock()
	err, closing := c.err, c.closing
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if closing {
		return fmt.Errorf("websocket: %w", transport.ErrClosed)
	}
	var data any
	if c.binary {
		a := js.Global().Get("Uint8Array").New(len(frame))
		js.CopyBytesToJS(a, frame)
		data = a
	} else {
		data = string(frame)
	}
	if err := callJS(wireSend, c.id, data); err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	return nil
}

// Close closes the socket and waits (up to 2 s) for its close event.
func (c *jsConn) Close() error {
	c.closeWith(1000, "")
	return nil
}

func (c *jsConn) closeWith(code int, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		callJS(wireClose, c.id, code, reason)
		t := time.NewTimer(2 * time.Second)
		defer t.Stop()
		select {
		case <-c.closed:
		case <-t.C:
			c.ended(&transport.CloseError{Code: 1006})
		}
	})
}

// ended records why the socket closed and wakes its reader and dialler.
func (c *jsConn) ended(ce *transport.CloseError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	wireConns.Delete(c.id)
	if c.closing {
		c.err = fmt.Errorf("websocket: %w", transport.ErrClosed)
	} else {
		c.err = fmt.Errorf("websocket: %w", ce)
	}
	close(c.closed)
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// setSink makes c hand every frame to sink, synchronously as it arrives,
// instead of queueing it for ReadFrame (which then only reports the end).
// Frames already queued go first. sink must not block.
func (c *jsConn) setSink(sink func([]byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.queue {
		sink(f)
	}
	c.queue, c.sink = nil, sink
}

// wireDeliver(bytes Uint8Array) takes a batch of socket events from the JS
// half. Each record: kind byte, id uint32 LE, length uint32 LE, payload.
// Kinds: 'o' open (payload: protocol), 't' text and 'b' binary frame,
// 'x' closed (payload: code uint16 LE, clean byte, reason).
//
// It returns the outbox (see take): frames that went to a sink are in it
// already, so the common path costs JS one call into Go per batch.
func wireDeliver(args []js.Value) any {
	out.mu.Lock()
	out.quiet = true
	out.mu.Unlock()
	b := make([]byte, args[0].Length())
	js.CopyBytesToGo(b, args[0])
	var last *jsConn
	for len(b) >= 9 {
		kind, id, n := b[0], int(binary.LittleEndian.Uint32(b[1:])), int(binary.LittleEndian.Uint32(b[5:]))
		if len(b) < 9+n {
			break
		}
		p := b[9 : 9+n : 9+n]
		b = b[9+n:]
		v, ok := wireConns.Load(id)
		if !ok {
			continue
		}
		c := v.(*jsConn)
		switch kind {
		case 't', 'b':
			c.mu.Lock()
			if c.sink != nil && int64(len(p)) <= c.limit { // ReadFrame reports a frame too large
				c.sink(p)
				c.mu.Unlock()
				continue
			}
			c.queue = append(c.queue, p)
			c.mu.Unlock()
			if last != nil && last != c {
				last.wake()
			}
			last = c
		case 'o':
			c.protocol = string(p)
			c.binary = c.protocol == protocol.SubprotocolMessagePack // frames we send are binary
			close(c.opened)
		case 'x':
			ce := &transport.CloseError{Code: 1006}
			if len(p) >= 3 {
				ce.Code, ce.Reason = int(binary.LittleEndian.Uint16(p)), string(p[3:])
			}
			c.ended(ce)
		}
	}
	if last != nil {
		last.wake()
	}
	return out.take()
}

func (c *jsConn) wake() {
	select {
	case c.signal <- struct{}{}:
	default:
	}
}
