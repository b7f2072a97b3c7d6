//go:build js

package websocket

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"syscall/js"

	"github.com/cableway/cableway/sdk/transport"
)

// conn is one JavaScript WebSocket as a transport.Conn: a socket of the
// hook (SetJSHook), or a globalThis.WebSocket of its own.
//
// Frames are queued as JS hands them over and taken by ReadFrame; the
// queue is not bounded (a JavaScript WebSocket cannot be paused), as it is
// not in the browser either.
type conn struct {
	id     uint32
	limit  int64
	signal chan struct{} // a frame was queued or the socket ended
	opened chan struct{} // closed on the open event
	ended  chan struct{} // closed on the close event, or by Close

	// Exactly one of these is set.
	hook js.Value // the hook that opened the socket
	ws   js.Value // our own globalThis.WebSocket

	funcs []js.Func // ws's event handlers, until released (guarded by mu)

	// Set once, before opened is closed.
	protocol string
	binary   bool

	mu        sync.Mutex
	queue     [][]byte // frames not read yet
	err       error    // why the connection ended, once ended is closed
	cause     error    // err without the package's prefix, for Dial
	isOpen    bool
	gone      bool // the socket's close event came: nothing to close
	closing   bool // Close was called: err is ErrClosed
	closeOnce sync.Once
}

// The sockets of the hook, by id, until they end.
var (
	hooked   = map[uint32]*conn{}
	hookedMu sync.Mutex
)

func (c *conn) openHooked(h js.Value, url string, protocols []any, direct js.Value) error {
	c.hook = h
	hookedMu.Lock()
	hooked[c.id] = c
	hookedMu.Unlock()
	if _, err := callJS(func() js.Value { return h.Call("open", c.id, url, protocols, direct) }); err != nil {
		c.forget()
		return err
	}
	return nil
}

func (c *conn) forget() {
	if c.hook.IsUndefined() {
		return
	}
	hookedMu.Lock()
	delete(hooked, c.id)
	hookedMu.Unlock()
}

func (c *conn) openGlobal(url string, protocols []any) error {
	ctor := js.Global().Get("WebSocket")
	if ctor.Type() != js.TypeFunction {
		return fmt.Errorf("no WebSocket in this JavaScript environment (globalThis.WebSocket is %s)", ctor.Type())
	}
	ws, err := callJS(func() js.Value { return ctor.New(url, protocols) })
	if err != nil {
		return err
	}
	c.ws = ws
	ws.Set("binaryType", "arraybuffer")
	uint8Array := js.Global().Get("Uint8Array")
	handle := func(event string, f func(e js.Value)) {
		fn := js.FuncOf(func(_ js.Value, args []js.Value) any {
			f(args[0])
			return nil
		})
		c.mu.Lock()
		c.funcs = append(c.funcs, fn)
		c.mu.Unlock()
		ws.Set("on"+event, fn)
	}
	handle("open", func(js.Value) { c.onOpen(ws.Get("protocol").String()) })
	handle("message", func(e js.Value) {
		data := e.Get("data")
		if data.Type() == js.TypeString {
			c.onFrame([]byte(data.String()))
			return
		}
		a := uint8Array.New(data) // an ArrayBuffer, as binaryType asks
		b := make([]byte, a.Length())
		js.CopyBytesToGo(b, a)
		c.onFrame(b)
	})
	handle("close", func(e js.Value) {
		c.onClose(&transport.CloseError{Code: e.Get("code").Int(), Reason: e.Get("reason").String()})
		c.release()
	})
	return nil
}

// release detaches and releases the handlers of our own WebSocket. No
// handler runs after that: JS runs only while Go waits, and by then they
// are gone.
func (c *conn) release() {
	c.mu.Lock()
	funcs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	if funcs == nil {
		return
	}
	for _, ev := range []string{"onopen", "onmessage", "onclose"} {
		c.ws.Set(ev, js.Null())
	}
	for _, f := range funcs {
		f.Release()
	}
}

func (c *conn) onOpen(protocol string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isOpen || c.err != nil {
		return
	}
	c.isOpen = true
	c.protocol = protocol
	c.binary = isBinary(protocol) // frames we send are binary
	close(c.opened)
}

func (c *conn) onFrame(f []byte) {
	c.mu.Lock()
	if c.err != nil || !c.isOpen {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, f)
	c.mu.Unlock()
	c.wake()
}

func (c *conn) onClose(ce *transport.CloseError) {
	c.forget()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone = true
	c.endLocked(ce)
}

// end records why the connection ended, once, and wakes its reader and
// dialler.
func (c *conn) end(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(cause)
}

func (c *conn) endLocked(cause error) {
	if c.err != nil {
		return
	}
	c.err, c.cause = fmt.Errorf("websocket: %w", lost(cause)), cause
	close(c.ended)
	c.wake()
}

// lost names an abnormal closure (1006: the connection dropped without a
// close frame) as what it is rather than a close by the peer; other
// causes are returned as they are.
func lost(cause error) error {
	if ce, ok := cause.(*transport.CloseError); ok && ce.Code == 1006 {
		return &lostError{ce}
	}
	return cause
}

// lostError is a connection that dropped without a close frame. It
// unwraps to its *transport.CloseError.
type lostError struct{ ce *transport.CloseError }

func (e *lostError) Error() string {
	if e.ce.Reason != "" {
		return "connection lost (status 1006): " + e.ce.Reason
	}
	return "connection lost without a close frame (status 1006)"
}

func (e *lostError) Unwrap() error { return e.ce }

func (c *conn) wake() {
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

func (c *conn) Subprotocol() string { return c.protocol }

// ReadFrame returns the next frame. Frames that arrived before the peer
// closed are returned before its close; none after Close.
func (c *conn) ReadFrame(ctx context.Context, buf []byte) ([]byte, error) {
	for {
		c.mu.Lock()
		if c.closing {
			err := c.err
			c.mu.Unlock()
			return buf[:0], err
		}
		if len(c.queue) > 0 {
			f := c.queue[0]
			c.queue[0] = nil
			c.queue = c.queue[1:]
			c.mu.Unlock()
			if int64(len(f)) > c.limit {
				c.closeWith(1009, "frame exceeds the read limit")
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
			c.Close()
			return buf[:0], fmt.Errorf("websocket: %w", context.Cause(ctx))
		}
	}
}

// WriteFrame hands frame to the JavaScript WebSocket, which queues it: it
// does not block.
func (c *conn) WriteFrame(ctx context.Context, frame []byte) error {
	if ctx.Err() != nil {
		c.Close()
		return fmt.Errorf("websocket: %w", context.Cause(ctx))
	}
	var data any
	if c.binary {
		a := js.Global().Get("Uint8Array").New(len(frame))
		js.CopyBytesToJS(a, frame)
		data = a
	} else {
		data = string(frame)
	}
	// Held across the call, so that no send follows a close (JS does not
	// call back into Go from send).
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.err
	if err != nil {
		return err
	}
	if c.ws.IsUndefined() {
		_, err = callJS(func() js.Value { return c.hook.Call("send", c.id, data) })
	} else {
		_, err = callJS(func() js.Value { return c.ws.Call("send", data) })
	}
	if err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	return nil
}

// Close starts the closing handshake (status 1000) and returns at once:
// the JavaScript WebSocket completes it by itself. ReadFrame and
// WriteFrame then fail with transport.ErrClosed.
func (c *conn) Close() error {
	c.closeWith(1000, "")
	return nil
}

func (c *conn) closeWith(code int, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.endLocked(transport.ErrClosed)
		c.err = fmt.Errorf("websocket: %w", transport.ErrClosed) // also when the peer closed first
		c.queue = nil
		gone := c.gone
		c.mu.Unlock()
		if c.ws.IsUndefined() {
			c.forget()
			if !gone {
				callJS(func() js.Value { return c.hook.Call("close", c.id, code, reason) })
			}
			return
		}
		c.release()
		if !gone {
			if _, err := callJS(func() js.Value { return c.ws.Call("close", code, reason) }); err != nil {
				callJS(func() js.Value { return c.ws.Call("close") }) // browsers allow 1000 and 3000–4999 only
			}
		}
	})
}

// DeliverJS hands Go a batch of socket events from the hook installed with
// SetJSHook: a Uint8Array of records as described there. It only queues
// frames and wakes the goroutines that read them, which run once the
// calling JS function has returned into Go's scheduler (for a function
// exported with js.FuncOf: before Go returns to JavaScript).
func DeliverJS(batch js.Value) {
	b := make([]byte, batch.Length())
	js.CopyBytesToGo(b, batch)
	deliver(b)
}

// deliver takes a batch of records (see SetJSHook). Frames are slices of
// b, which is not reused.
func deliver(b []byte) {
	for len(b) >= 9 {
		kind, id, n := b[0], binary.LittleEndian.Uint32(b[1:]), binary.LittleEndian.Uint32(b[5:])
		if uint64(len(b)-9) < uint64(n) {
			return
		}
		p := b[9 : 9+n : 9+n]
		b = b[9+n:]
		hookedMu.Lock()
		c := hooked[id]
		hookedMu.Unlock()
		if c == nil {
			continue
		}
		switch kind {
		case 't', 'b':
			c.onFrame(p)
		case 'o':
			c.onOpen(string(p))
		case 'x':
			ce := &transport.CloseError{Code: 1006}
			if len(p) >= 3 {
				ce.Code, ce.Reason = int(binary.LittleEndian.Uint16(p)), string(p[3:])
			}
			c.onClose(ce)
		}
	}
}
