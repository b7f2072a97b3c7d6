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

	mu     sync.Mutex // held by Write, and by Close to mark closed
	closed bool
	done   chan struct{} // closed once closed and no write is in progress
	once   sync.Once
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
			return s, s.writeHead(h, prelude)
		}
		if !errors.Is(err, http.ErrNotSupported) {
			return nil, err
		}
	}
	w.WriteHeader(http.StatusOK)
	if err := s.Write(prelude, 10*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

// writeHead writes the response head on a hijacked connection. The body
// ends when the connection closes (Connection: close), as an event stream
// does.
func (s *Stream) writeHead(h http.Header, prelude []byte) error {
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Connection", "close")
	buf := &headBuffer{b: make([]byte, 0, 512)}
	buf.b = append(buf.b, "HTTP/1.1 200 OK\r\n"...)
	h.Write(buf)
	buf.b = append(buf.b, "\r\n"...)
	buf.b = append(buf.b, prelude...)
	if err := s.Write(buf.b, 10*time.Second); err != nil {
		s.Close()
		return err
	}
	return nil
}

type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
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
// is closed, and Done is closed once no write is in progress. It may be
// called more than once.
func (s *Stream) Close() {
	s.once.Do(func() {
		if s.conn != nil {
			s.conn.Close() // a blocked write fails at once
		} else {
			s.rc.SetWriteDeadline(time.Unix(1, 0))
		}
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
	})
}

// Done is closed once the stream is closed and no write is in progress:
// a handler whose stream is not hijacked may then return.
func (s *Stream) Done() <-chan struct{} { return s.done }
