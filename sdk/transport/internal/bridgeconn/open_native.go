//go:build !js

package bridgeconn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/r3labs/sse/v2"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/transport"
)

// DialSSE opens a session on the bridge at base for the connection req
// asks for and reads it with down. With the SSE downstream it does so in
// one request, GET /sessions/sse (bridgewire.OpenSSEPath), whose stream
// names the session and goes on with its frames; a bridge that does not
// know that path (404) gets the two requests of CreateFor and Open. Other
// downstreams always take those.
func DialSSE(ctx context.Context, down Downstream, doer Doer, base string, req *transport.Request) (*Conn, error) {
	if d, ok := down.(SSE); ok {
		c, err := d.open(ctx, doer, base, req)
		if !errors.Is(err, errNoOpenPath) {
			return c, err
		}
	}
	s, err := CreateFor(ctx, doer, base, req)
	if err != nil {
		return nil, err
	}
	return Open(s, down), nil
}

// errNoOpenPath means the bridge has no single-request open.
var errNoOpenPath = errors.New("bridge: no single-request open")

// open is the single-request open. ctx bounds it until the session's
// event arrives; the stream then lives on as the connection's first
// downstream.
func (d SSE) open(ctx context.Context, doer Doer, base string, req *transport.Request) (*Conn, error) {
	base = strings.TrimRight(base, "/")
	u := base + bridgewire.OpenSSEPath
	if pu, err := url.Parse(req.URL); err == nil && pu.RawQuery != "" {
		u += "?" + pu.RawQuery // passed on to Rails, as POST /sessions does
	}
	header := make(map[string]string, len(req.Header))
	for k, v := range req.Header {
		k = http.CanonicalHeaderKey(k)
		sep := ", "
		if k == "Cookie" {
			sep = "; " // one Cookie line (RFC 6265 §5.4)
		}
		if old, ok := header[k]; ok {
			v = append([]string{old}, v...)
		}
		header[k] = strings.Join(v, sep)
	}
	h := &handoff{handler: make(chan func(*sse.Event) error, 1), done: make(chan error, 1)}
	sctx, cancel := context.WithCancel(context.Background())
	opened := make(chan *Session, 1)
	failed := make(chan error, 1)
	go func() {
		var s *Session
		err := d.events(sctx, u, header, func(ev *sse.Event) error {
			if s != nil {
				return h.emit(sctx, ev)
			}
			if len(ev.Event) == 0 && len(ev.Data) == 0 {
				return nil // the retry line
			}
			if string(ev.Event) != bridgewire.SessionEvent {
				return fmt.Errorf("bridge: open: the stream did not start with its session but with %q %.100q", ev.Event, ev.Data)
			}
			c, err := bridgewire.ParseSession(ev.Data)
			if err != nil {
				return fmt.Errorf("bridge: open: %w", err)
			}
			s = newSession(base, c, doer)
			opened <- s
			return nil
		})
		if s == nil {
			failed <- err
		}
		h.done <- err
	}()
	select {
	case s := <-opened:
		return Open(s, &firstSSE{SSE: d, h: h, stop: cancel}), nil
	case err := <-failed:
		cancel()
		var he *transport.HandshakeError
		if errors.As(err, &he) && (he.StatusCode == http.StatusNotFound || he.StatusCode == http.StatusMethodNotAllowed) {
			return nil, fmt.Errorf("%w: %w", errNoOpenPath, err)
		}
		return nil, err
	case <-ctx.Done():
		cancel()
		return nil, fmt.Errorf("bridge: open: %w", ctx.Err())
	}
}

// handoff passes the events of the stream that opened a session to the
// connection's first downstream run, once it has started.
type handoff struct {
	claimed atomic.Bool
	handler chan func(*sse.Event) error // the first run's frame handler
	on      func(*sse.Event) error      // the stream goroutine's copy of it
	done    chan error                  // the stream's end
}

// emit hands ev to the first run, waiting for it to start.
func (h *handoff) emit(ctx context.Context, ev *sse.Event) error {
	if h.on == nil {
		select {
		case h.on = <-h.handler:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.on(ev)
}

// firstSSE is the SSE downstream of a connection opened in one request:
// its first run reads the stream that opened the session; every later one
// is an SSE run of its own.
type firstSSE struct {
	SSE
	h    *handoff
	stop context.CancelFunc // ends the opening stream
}

// Run reads the opening stream the first time, then runs as SSE does.
func (f *firstSSE) Run(ctx context.Context, s *Session, after uint64, emit func(uint64, []byte) error) error {
	if !f.h.claimed.CompareAndSwap(false, true) {
		return f.SSE.Run(ctx, s, after, emit)
	}
	if after != 0 {
		// Not the first run after all: the opening stream starts at 0.
		f.stop()
		return f.SSE.Run(ctx, s, after, emit)
	}
	f.h.handler <- frameHandler(s, emit)
	select {
	case err := <-f.h.done:
		return err
	case <-ctx.Done():
		f.stop()
		<-f.h.done
		return ctx.Err()
	}
}

// newSession is the client's view of the session c that the bridge at
// base created.
func newSession(base string, c bridgewire.Created, doer Doer) *Session {
	s := &Session{Base: base, SID: c.SID, Token: c.Token, Epoch: c.Epoch, doer: doer}
	s.pollBytes.Store(maxPollBytes)
	return s
}
