// Package sse opens and writes Server-Sent Event streams for the Cableway
// server. Event data is formatted by internal/bridgewire (AppendData), the
// one definition of the bridge's wire format.
//
// A stream over HTTP/1.x takes its connection over from net/http
// (http.Hijacker): it then costs a socket and a few hundred bytes while
// it waits, with no goroutine, no bufio buffers and no net/http state.
// Where that is not possible (HTTP/2, a ResponseWriter that cannot be
// hijacked) the stream writes through the ResponseWriter, and the handler
// must stay until the stream is done.
package sse

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// ErrClosed is what Write returns once the stream is closed.
var ErrClosed = errors.New("sse: stream closed")

// Stream is one event stream. Write may be called from any goroutine, one
// call at a time; Close from any goroutine at any time.
type Stream struct {
	conn net.Conn // hijacked; nil when writing through w
	w    http.ResponseWriter
	rc   *http.ResponseController

	mu      sync.Mutex // held by Write, and by Close to mark closed
	closed  bool
	head    []byte        // not written yet: goes with the first Write
	headDue bool          // the ResponseWriter's head is not flushed yet
	done    chan struct{} // closed once closed and no write is in progress
	once    sync.Once
}

// Open answers r with 200 and the headers of an event stream (those already
// in w.Header(), such as CORS headers, included) that proxies must pass
// through unbuffered and untransformed, followed by prelude (e.g. a retry
// field), and returns the stream. The handler must not return before Done
// is closed; the request's context ends when the client goes. On error the
// client has been answered or is gone.
func Open(w http.ResponseWriter, r *http.Request, prelude []byte) (*Stream, error) {
	return open(w, r, prelude, false)
}

// OpenDetached is Open, except that on an HTTP/1.x connection the stream
// owns the connection from then on (Hijacked reports true): the handler
// may return at once, and Close closes the connection. Nothing reads a
// hijacked connection, so a client that goes is noticed only when a write
// fails: write something (a keep-alive comment) at least every so often.
func OpenDetached(w http.ResponseWriter, r *http.Request, prelude []byte) (*Stream, error) {
	return open(w, r, prelude, true)
}

func open(w http.ResponseWriter, r *http.Request, prelude []byte, detach bool) (*Stream, error) {
	s, err := start(w, r, prelude, detach)
	if err != nil {
		return nil, err
	}
	if err := s.Write(nil, 10*time.Second); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// start is open without writing: the response head and prelude go out
// with the first Write, in one write with its data.
func start(w http.ResponseWriter, r *http.Request, prelude []byte, detach bool) (*Stream, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	s := &Stream{w: w, rc: http.NewResponseController(w), done: make(chan struct{})}
	if detach && r.ProtoMajor == 1 {
		conn, _, err := s.rc.Hijack()
		if err == nil {
			// Nothing of net/http's is kept: its buffers and request go.
			s.conn, s.w, s.rc = conn, nil, nil
			s.head = appendHead(make([]byte, 0, 512+len(prelude)), h)
			s.head = append(s.head, prelude...)
			return s, nil
		}
		if !errors.Is(err, http.ErrNotSupported) {
			return nil, err
		}
	}
	w.WriteHeader(http.StatusOK)
	s.head = append([]byte{}, prelude...)
	s.headDue = true
	return s, nil
}

// appendHead appends the response head of a hijacked connection. The
// body ends when the connection closes (Connection: close), as an event
// stream does.
func appendHead(dst []byte, h http.Header) []byte {
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Connection", "close")
	buf := &headBuffer{b: append(dst, "HTTP/1.1 200 OK\r\n"...)}
	h.Write(buf)
	return append(buf.b, "\r\n"...)
}

type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}

// Pending reports whether the response head is still to be written (by
// the next Write, even an empty one).
func (s *Stream) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head != nil || s.headDue
}

// Hijacked reports whether the stream owns its connection (the handler
// may return).
func (s *Stream) Hijacked() bool { return s.conn != nil }

// Write writes buf and flushes it within timeout: a client that cannot
// take it in time is cut off (an EventSource resumes from its
// Last-Event-ID). After Close it returns ErrClosed; a Close during a write
// makes it fail.
func (s *Stream) Write(buf []byte, timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.head != nil || s.headDue {
		buf = append(s.head, buf...)
		s.head, s.headDue = nil, false
		if len(buf) == 0 { // flush the head alone
			s.rc.SetWriteDeadline(time.Now().Add(timeout))
			return s.rc.Flush()
		}
	}
	if len(buf) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	if s.conn != nil {
		s.conn.SetWriteDeadline(deadline)
		_, err := s.conn.Write(buf)
		return err
	}
	s.rc.SetWriteDeadline(deadline)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	return s.rc.Flush()
}

// Close ends the stream: a write in progress fails, a hijacked connection
// is closed, and Done is closed once no write is in progress (a handler
// that returns then ends the response cleanly). It may be called more than
// once.
func (s *Stream) Close() {
	s.once.Do(func() {
		if s.conn != nil {
			s.conn.Close() // a blocked write fails at once
		}
		if !s.mu.TryLock() { // a write is in progress: make it fail
			if s.conn == nil {
				s.rc.SetWriteDeadline(time.Unix(1, 0))
			}
			s.mu.Lock()
		}
		s.closed = true
		s.mu.Unlock()
		close(s.done)
	})
}

// Done is closed once the stream is closed and no write is in progress:
// a handler whose stream is not hijacked may then return.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Source is what a Streamer writes: the events of one session.
type Source interface {
	// Append appends to buf the events there are to write now (a batch:
	// it may leave some for the next call) and returns buf with the batch's
	// event count; more reports that another batch is ready at once, end
	// that the stream must end once buf is written (the last event, or a
	// reset, is in it). Append is called by one goroutine at a time.
	Append(buf []byte) (out []byte, events int, more, end bool)
	// Notify arranges for f to be called once, on a goroutine of its own,
	// as soon as Append has something to write (at once if it has
	// already); stop cancels that.
	Notify(f func()) (stop func() bool)
}

// Config configures a Streamer.
type Config struct {
	KeepAlive    time.Duration // a comment is written after this much silence
	WriteTimeout time.Duration // a client that cannot take a write in time is cut off
	// Detach takes the connection over from net/http where possible (see
	// OpenDetached): the handler returns at once and no goroutine waits.
	Detach bool
	// Buffers lends write buffers (*[]byte), borrowed per wake-up: an idle
	// stream holds none. Nil allocates.
	Buffers *sync.Pool
	// Sent is told of the events of each successful write (may be nil).
	Sent func(events int)
	// Done is called once, when the stream has ended (may be nil).
	Done func()
}

// A Streamer writes a Source to one event stream. It holds no goroutine
// while it waits: the source notifies it and a keep-alive timer wakes it,
// and each wake-up writes what there is on a goroutine that ends once the
// stream is caught up. Stop may be called from any goroutine, before or
// after Serve.
type Streamer struct {
	src   Source
	cfg   Config
	out   *Stream
	timer *time.Timer
	done  chan struct{}

	stopNotify func() bool // owned by run

	mu      sync.Mutex // guards the fields below
	running bool       // run is running (or finished: it never runs again)
	again   bool       // woken while running: look again before sleeping
	keepDue bool       // the keep-alive timer fired
	stopped bool
}

// NewStreamer returns a streamer of src; Serve starts it.
func NewStreamer(src Source, cfg Config) *Streamer {
	return &Streamer{src: src, cfg: cfg, done: make(chan struct{}), running: true}
}

// Serve opens the event stream answering r (Open, or OpenDetached with
// cfg.Detach), writes the response head, prelude and what src has — in
// one write —, and returns — at once if
// the connection was taken over, otherwise once the stream has ended (the
// request's context ending stops it). Call it once, from the handler.
func (st *Streamer) Serve(w http.ResponseWriter, r *http.Request, prelude []byte) {
	out, err := start(w, r, prelude, st.cfg.Detach)
	if err != nil {
		st.finish()
		return
	}
	st.mu.Lock()
	st.out = out
	st.mu.Unlock()
	st.timer = time.AfterFunc(st.cfg.KeepAlive, st.keepAlive)
	if !out.Hijacked() {
		defer context.AfterFunc(r.Context(), st.Stop)()
	}
	st.run()
	if !out.Hijacked() {
		<-st.done
	}
}

// Stop ends the stream: a write in progress fails at once.
func (st *Streamer) Stop() {
	st.mu.Lock()
	st.stopped = true
	out := st.out
	st.mu.Unlock()
	if out != nil {
		out.Close()
	}
	st.wake()
}

// wake runs the stream unless it is running already. It is called on a
// goroutine of its own (a notification, the timer, Stop).
func (st *Streamer) wake() {
	st.mu.Lock()
	if st.running {
		st.again = true
		st.mu.Unlock()
		return
	}
	st.running = true
	st.mu.Unlock()
	st.run()
}

func (st *Streamer) keepAlive() {
	st.mu.Lock()
	st.keepDue = true
	st.mu.Unlock()
	st.wake()
}

// run writes everything there is, then arms the source's notification and
// returns; or ends the stream.
func (st *Streamer) run() {
	for {
		st.mu.Lock()
		st.again = false
		keep, stopped := st.keepDue, st.stopped
		st.keepDue = false
		st.mu.Unlock()
		if stopped || st.flush(keep) {
			st.finish()
			return
		}
		if st.stopNotify != nil {
			st.stopNotify()
		}
		st.stopNotify = st.src.Notify(st.wake)
		st.mu.Lock()
		if st.again {
			st.mu.Unlock()
			continue
		}
		st.running = false
		st.mu.Unlock()
		return
	}
}

// flush writes what the source has, batch by batch, or a keep-alive
// comment if keep and nothing else is written. It reports whether the
// stream is over: ended, or the client cannot take it.
func (st *Streamer) flush(keep bool) (over bool) {
	buf := st.borrow()
	defer func() { st.giveBack(buf) }()
	wrote := false
	for {
		var (
			n         int
			more, end bool
		)
		buf, n, more, end = st.src.Append(buf)
		if len(buf) == 0 && keep && !wrote && !end {
			buf = append(buf, ": keep-alive\n\n"...)
		}
		if len(buf) > 0 || st.out.Pending() {
			if st.out.Write(buf, st.cfg.WriteTimeout) != nil {
				return true
			}
			wrote = true
			if st.cfg.Sent != nil && n > 0 {
				st.cfg.Sent(n)
			}
			buf = buf[:0]
		}
		if end {
			return true
		}
		if !more {
			if wrote {
				st.timer.Reset(st.cfg.KeepAlive)
			}
			return false
		}
	}
}

// finish ends the stream for good: run never runs again.
func (st *Streamer) finish() {
	if st.stopNotify != nil {
		st.stopNotify()
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	if st.out != nil {
		st.out.Close()
	}
	close(st.done)
	if st.cfg.Done != nil {
		st.cfg.Done()
	}
}

// maxPooledBuffer bounds the buffers given back to the pool: an unusually
// large batch's goes.
const maxPooledBuffer = 64 << 10

func (st *Streamer) borrow() []byte {
	if st.cfg.Buffers != nil {
		if p, ok := st.cfg.Buffers.Get().(*[]byte); ok {
			return (*p)[:0]
		}
	}
	return make([]byte, 0, 4<<10)
}

func (st *Streamer) giveBack(buf []byte) {
	if st.cfg.Buffers == nil || cap(buf) > maxPooledBuffer {
		return
	}
	buf = buf[:0]
	st.cfg.Buffers.Put(&buf)
}
