package bridgeconn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
)

// Downstream fetches a session's frames: an SSE stream, long-polls, or a
// re-attached WebSocket.
type Downstream interface {
	// Name is the transport name reported for it ("sse", "longpoll", "websocket").
	Name() string
	// Run delivers the session's frames after the cursor, in order, to
	// emit (seq 0 for unsequenced frames: pings), until ctx is done or the
	// stream fails. It calls ready once the stream is established. A
	// returned ErrReset (or a *transport.HandshakeError with a 4xx) is
	// final; other errors are retried from the latest cursor.
	Run(ctx context.Context, s *Session, after uint64, emit func(seq uint64, frame []byte) error, ready func()) error
}

// streamRetry paces reconnections of a dropped downstream; the consumer's
// stale detection bounds how long it keeps trying.
func streamRetry(attempt int) time.Duration {
	return backoff.Policy{Min: 50 * time.Millisecond, Max: 1 * time.Second}.Delay(attempt)
}

// Conn is a transport.Conn over a bridge session.
type Conn struct {
	s      *Session
	frames chan []byte
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // the run loop has exited

	mu        sync.Mutex
	down      Downstream
	cursor    uint64 // seq of the last frame handed to frames
	switchReq chan switchReq
	closeOnce sync.Once
}

type switchReq struct {
	down  Downstream
	reply chan error
}

// Open starts reading the session with down. The first frame a new
// session yields is Rails' welcome.
func Open(s *Session, down Downstream) *Conn {
	c := &Conn{
		s: s, down: down,
		frames:    make(chan []byte, 256),
		done:      make(chan struct{}),
		switchReq: make(chan switchReq),
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	go c.run()
	return c
}

// Session returns the bridge session the connection reads.
func (c *Conn) Session() *Session { return c.s }

// Downstream returns the name of the current downstream.
func (c *Conn) Downstream() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down.Name()
}

func (c *Conn) emit(seq uint64, frame []byte) error {
	if seq != 0 {
		c.mu.Lock()
		cur := c.cursor
		c.mu.Unlock()
		switch {
		case seq <= cur:
			return nil // a duplicate after a resume: already delivered
		case seq != cur+1:
			return fmt.Errorf("%w: frame %d follows %d", ErrReset, seq, cur)
		}
	}
	select {
	case c.frames <- append([]byte(nil), frame...):
	case <-c.ctx.Done():
		return context.Cause(c.ctx)
	}
	if seq != 0 {
		c.mu.Lock()
		c.cursor = seq
		c.mu.Unlock()
	}
	return nil
}

func final(err error) bool {
	var he *transport.HandshakeError
	return errors.Is(err, ErrReset) || errors.As(err, &he) && he.Permanent()
}

// run drives the downstream, resuming it from the cursor after failures
// and switching downstreams on request.
func (c *Conn) run() {
	defer close(c.done)
	attempt := 0
	for {
		c.mu.Lock()
		down, after := c.down, c.cursor
		c.mu.Unlock()

		dctx, dcancel := context.WithCancel(c.ctx)
		result := make(chan error, 1)
		readyCh := make(chan struct{})
		var readyOnce sync.Once
		go func() {
			result <- down.Run(dctx, c.s, after, c.emit, func() { readyOnce.Do(func() { close(readyCh) }) })
		}()
		var err error
		select {
		case err = <-result:
		case req := <-c.switchReq:
			dcancel()
			<-result
			err = c.trySwitch(req)
			dcancel()
			if err != nil {
				attempt = 0
				continue // the old downstream resumes
			}
			attempt = 0
			continue
		case <-c.ctx.Done():
			dcancel()
			<-result
			return
		}
		dcancel()
		if c.ctx.Err() != nil {
			return
		}
		select {
		case <-readyCh:
			attempt = 0
		default:
		}
		if final(err) {
			c.cancel(err)
			return
		}
		attempt++
		t := time.NewTimer(streamRetry(attempt))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		}
	}
}

// trySwitch runs req.down until it is ready; then it becomes the
// downstream. If it fails first, the old one stays. It runs on the run
// goroutine with the old downstream stopped.
func (c *Conn) trySwitch(req switchReq) error {
	c.mu.Lock()
	after := c.cursor
	c.mu.Unlock()
	readyCh := make(chan struct{})
	var once sync.Once
	dctx, dcancel := context.WithCancel(c.ctx)
	result := make(chan error, 1)
	go func() {
		result <- req.down.Run(dctx, c.s, after, c.emit, func() { once.Do(func() { close(readyCh) }) })
	}()
	select {
	case <-readyCh:
		c.mu.Lock()
		c.down = req.down
		c.mu.Unlock()
		req.reply <- nil
		// Keep serving it here until it ends, then let run resume it.
		select {
		case <-result:
		case <-c.ctx.Done():
			dcancel()
			<-result
		}
		dcancel()
		return nil
	case err := <-result:
		dcancel()
		if err == nil {
			err = errors.New("bridge: downstream ended before it was ready")
		}
		req.reply <- err
		return err
	case <-c.ctx.Done():
		dcancel()
		<-result
		req.reply <- context.Cause(c.ctx)
		return context.Cause(c.ctx)
	}
}

// Switch moves the connection to another downstream at the current
// cursor, with no frame lost or repeated. It returns once down is
// established, or with its error, in which case the old downstream goes
// on. Switch may be called from any goroutine.
func (c *Conn) Switch(ctx context.Context, down Downstream) error {
	reply := make(chan error, 1)
	select {
	case c.switchReq <- switchReq{down: down, reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return transport.ErrClosed
	}
	select {
	case err := <-reply:
		return err
	case <-c.done:
		return transport.ErrClosed
	}
}

// Subprotocol returns "actioncable-v1-json": the bridge speaks JSON frames.
func (c *Conn) Subprotocol() string { return protocol.SubprotocolJSON }

// ReadFrame returns the next frame.
func (c *Conn) ReadFrame(ctx context.Context, buf []byte) ([]byte, error) {
	if errors.Is(context.Cause(c.ctx), transport.ErrClosed) {
		return buf[:0], fmt.Errorf("bridge: %w", context.Cause(c.ctx))
	}
	// Frames already received are delivered before a failure (not a
	// Close) is reported.
	select {
	case f := <-c.frames:
		return append(buf[:0], f...), nil
	default:
	}
	select {
	case f := <-c.frames:
		return append(buf[:0], f...), nil
	case <-c.ctx.Done():
		return buf[:0], fmt.Errorf("bridge: %w", context.Cause(c.ctx))
	case <-ctx.Done():
		c.Close()
		return buf[:0], fmt.Errorf("bridge: %w", context.Cause(ctx))
	}
}

// WriteFrame sends a command through the session's send endpoint.
func (c *Conn) WriteFrame(ctx context.Context, frame []byte) error {
	if err := c.ctx.Err(); err != nil {
		return fmt.Errorf("bridge: %w", context.Cause(c.ctx))
	}
	return c.s.Send(ctx, frame)
}

// Close stops the downstream and deletes the session on the bridge,
// waiting at most 2 s for that.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.cancel(transport.ErrClosed)
		<-c.done
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.s.Delete(ctx)
	})
	return nil
}
