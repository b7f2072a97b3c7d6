package bridgeconn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	// stream fails. A returned ErrReset (or a *transport.HandshakeError
	// with a 4xx) is final; other errors are retried from the latest
	// cursor. A downstream proves that it works only by delivering a frame:
	// response headers prove nothing, since proxies release them and hold
	// the body back.
	Run(ctx context.Context, s *Session, after uint64, emit func(seq uint64, frame []byte) error) error
}

// streamRetry paces reconnections of a dropped downstream; the consumer's
// stale detection bounds how long it keeps trying.
func streamRetry(attempt int) time.Duration {
	return backoff.Policy{Min: 50 * time.Millisecond, Max: 1 * time.Second}.Delay(attempt)
}

// ackInterval is how often a moving cursor is acknowledged on downstreams
// that do not acknowledge by themselves.
const ackInterval = time.Second

// Conn is a transport.Conn over a bridge session.
//
// One downstream is live at a time. Switch starts another beside it; the
// other becomes live only once a frame has arrived through it, so a probe
// of a path that hangs or buffers costs the live one nothing. Frames are
// numbered by the bridge, and each is handed on once, in order, whichever
// downstream brings it first.
type Conn struct {
	s      *Session
	frames chan []byte
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // the run loop and every downstream have exited

	emitting  chan struct{} // a one-slot semaphore: one emit at a time
	lastFrame atomic.Int64  // unix nanoseconds of the latest frame (any)

	mu     sync.Mutex
	down   Downstream
	cursor uint64 // seq of the last frame handed to frames

	switchReq chan switchReq
	closeOnce sync.Once
}

type switchReq struct {
	ctx   context.Context
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
		emitting:  make(chan struct{}, 1),
		switchReq: make(chan switchReq),
	}
	c.lastFrame.Store(time.Now().UnixNano())
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	go c.run()
	return c
}

// Session returns the bridge session the connection reads.
func (c *Conn) Session() *Session { return c.s }

// Downstream returns the name of the live downstream.
func (c *Conn) Downstream() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down.Name()
}

// Idle returns how long ago the latest frame (pings included) arrived, or
// the connection was opened if none has.
func (c *Conn) Idle() time.Duration {
	return time.Since(time.Unix(0, c.lastFrame.Load()))
}

// emit hands one frame to the reader, once: a sequenced frame already
// handed on (by another downstream, or before a resume) is dropped, and
// one that skips a number means frames are lost, which ends the
// connection. It may be called from several downstreams at once; ctx is
// the calling downstream's.
func (c *Conn) emit(ctx context.Context, seq uint64, frame []byte) error {
	select {
	case c.emitting <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-c.emitting }()
	if seq != 0 {
		c.mu.Lock()
		cur := c.cursor
		c.mu.Unlock()
		switch {
		case seq <= cur:
			return nil // already delivered
		case seq != cur+1:
			return fmt.Errorf("%w: frame %d follows %d", ErrReset, seq, cur)
		}
	}
	select {
	case c.frames <- append([]byte(nil), frame...):
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	c.lastFrame.Store(time.Now().UnixNano())
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

// runner is one downstream reading the session from a cursor.
type runner struct {
	down   Downstream
	cancel context.CancelFunc
	result chan error    // Run's error; buffered, sent once
	first  chan struct{} // closed when a frame has arrived through it
	once   sync.Once
}

func (r *runner) delivered() bool {
	select {
	case <-r.first:
		return true
	default:
		return false
	}
}

// start runs down from the current cursor on a goroutine counted by wg.
func (c *Conn) start(wg *sync.WaitGroup, down Downstream) *runner {
	ctx, cancel := context.WithCancel(c.ctx)
	r := &runner{down: down, cancel: cancel, result: make(chan error, 1), first: make(chan struct{})}
	c.mu.Lock()
	after := c.cursor
	c.mu.Unlock()
	emit := func(seq uint64, frame []byte) error {
		r.once.Do(func() { close(r.first) })
		return c.emit(ctx, seq, frame)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.result <- down.Run(ctx, c.s, after, emit)
	}()
	return r
}

// run drives the live downstream, resuming it from the cursor after
// failures, and the one being switched to beside it.
func (c *Conn) run() {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait() // every downstream's ctx derives from c.ctx, now done
		close(c.done)
	}()
	c.mu.Lock()
	first := c.down
	c.mu.Unlock()
	live := c.start(&wg, first)
	var (
		next      *runner // the downstream being switched to
		nextReq   switchReq
		stopNext  func() bool
		retry     *time.Timer
		retryC    <-chan time.Time
		attempt   int
		liveDone  <-chan error
		nextDone  <-chan error
		nextFirst <-chan struct{}
	)
	// Event streams and re-attached WebSockets acknowledge nothing by
	// themselves: the cursor is sent every ackInterval while it moves, so
	// the bridge can free what the client has (one request at a time).
	ackTick := time.NewTicker(ackInterval)
	defer ackTick.Stop()
	var (
		acked   uint64
		acking  bool
		ackDone = make(chan uint64, 1)
	)
	endNext := func(err error) {
		next.cancel()
		stopNext()
		nextReq.reply <- err
		next = nil
	}
	for {
		liveDone, nextDone, nextFirst = nil, nil, nil
		if live != nil {
			liveDone = live.result
		}
		requests := c.switchReq
		if next != nil {
			nextDone, nextFirst, requests = next.result, next.first, nil
		}
		select {
		case <-c.ctx.Done():
			if next != nil {
				endNext(context.Cause(c.ctx))
			}
			if retry != nil {
				retry.Stop()
			}
			return
		case err := <-liveDone:
			live.cancel()
			if c.ctx.Err() != nil {
				continue
			}
			if final(err) {
				c.cancel(err)
				continue
			}
			if live.delivered() {
				attempt = 0
			}
			attempt++
			live = nil
			retry = time.NewTimer(streamRetry(attempt))
			retryC = retry.C
		case <-retryC:
			retry, retryC = nil, nil
			c.mu.Lock()
			down := c.down
			c.mu.Unlock()
			live = c.start(&wg, down)
		case <-ackTick.C:
			c.mu.Lock()
			cur, down := c.cursor, c.down
			c.mu.Unlock()
			if _, polls := down.(Poll); acking || polls || cur <= acked {
				continue
			}
			acking = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(c.ctx, ackInterval*5)
				defer cancel()
				if c.s.ack(ctx, cur) != nil {
					cur = 0 // again next time
				}
				ackDone <- cur
			}()
		case n := <-ackDone:
			acking, acked = false, max(acked, n)
		case req := <-requests:
			next, nextReq = c.start(&wg, req.down), req
			stopNext = context.AfterFunc(req.ctx, next.cancel)
		case <-nextFirst:
			// A frame came through: it works. The old one stops (what it
			// had not delivered, the new one brings from the cursor).
			if live != nil {
				live.cancel()
			}
			if retry != nil {
				retry.Stop()
				retry, retryC = nil, nil
			}
			c.mu.Lock()
			c.down = next.down
			c.mu.Unlock()
			live, attempt = next, 0
			stopNext()
			nextReq.reply <- nil
			next = nil
		case err := <-nextDone:
			switch {
			case nextReq.ctx.Err() != nil:
				err = fmt.Errorf("no frame came through in time: %w", context.Cause(nextReq.ctx))
			case err == nil:
				err = errors.New("it ended before a frame came through")
			}
			endNext(err)
		}
	}
}

// Switch moves the connection to down at the cursor, with no frame lost
// or repeated. down runs beside the live downstream, which goes on
// delivering, and replaces it once a frame has arrived through it. Switch
// returns nil then, or down's error if it fails first, or ctx's error
// when ctx ends first (down is stopped; the live downstream stays). One
// switch runs at a time; Switch may be called from any goroutine.
func (c *Conn) Switch(ctx context.Context, down Downstream) error {
	reply := make(chan error, 1)
	select {
	case c.switchReq <- switchReq{ctx: ctx, down: down, reply: reply}:
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

// ReadFrame returns the next frame. Frames already received are delivered
// before a failure (not a Close) is reported.
func (c *Conn) ReadFrame(ctx context.Context, buf []byte) ([]byte, error) {
	if errors.Is(context.Cause(c.ctx), transport.ErrClosed) {
		return buf[:0], context.Cause(c.ctx)
	}
	select {
	case f := <-c.frames:
		return append(buf[:0], f...), nil
	default:
	}
	select {
	case f := <-c.frames:
		return append(buf[:0], f...), nil
	case <-c.ctx.Done():
		return buf[:0], context.Cause(c.ctx)
	case <-ctx.Done():
		c.Close()
		return buf[:0], context.Cause(ctx)
	}
}

// WriteFrame sends a command through the session's send endpoint. An
// error wrapping transport.ErrNotSent means the bridge did not take it.
func (c *Conn) WriteFrame(ctx context.Context, frame []byte) error {
	if err := c.ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", transport.ErrNotSent, context.Cause(c.ctx))
	}
	return c.s.Send(ctx, frame)
}

// Close stops the downstreams and deletes the session on the bridge,
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
