package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

// rawSSE is an SSE stream read by hand on a plain connection, with no
// goroutine on the client side either.
type rawSSE struct {
	c  net.Conn
	br *bufio.Reader
}

func openRawSSE(ctx context.Context, t *testing.T, base string, s sessionInfo) *rawSSE {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	t.Cleanup(func() { c.Close() }) // before the bridge's own cleanup
	fmt.Fprintf(c, "GET /sessions/%s/sse?token=%s HTTP/1.1\r\nHost: bridge\r\nAccept: text/event-stream\r\n\r\n", s.SID, s.Token)
	return &rawSSE{c: c, br: bufio.NewReaderSize(c, 1024)}
}

// readUntil reads lines until one contains want.
func (r *rawSSE) readUntil(want string) error {
	var seen []string
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("%w after %q", err, seen)
		}
		if strings.Contains(line, want) {
			return nil
		}
		seen = append(seen, line)
	}
}

// TestSSEStreamsHoldNoGoroutine: an idle SSE stream costs the bridge no
// goroutine (the session's only one is its upstream reader); frames still
// reach it, and a client that goes is noticed at the next write, so that
// its session expires.
func TestSSEStreamsHoldNoGoroutine(t *testing.T) {
	const n = 20
	e := newEnv(t, bridge.WithSessionTTL(time.Second), bridge.WithKeepAlive(300*time.Millisecond))
	ctx := testCtx(t, 30*time.Second)
	sessions := make([]sessionInfo, n)
	for i := range sessions {
		sessions[i] = e.create(ctx, "alice")
	}
	base := runtime.NumGoroutine()
	streams := make([]*rawSSE, n)
	for i, s := range sessions {
		streams[i] = openRawSSE(ctx, t, e.srv.URL, s)
		if err := streams[i].readUntil(`"type":"welcome"`); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	// The streams are idle now but for keep-alives, which run briefly.
	var extra int
	if err := waitFor(ctx, "idle streams to hold no goroutine", func() bool {
		extra = runtime.NumGoroutine() - base
		return extra <= n/4
	}); err != nil {
		t.Fatalf("%d goroutines more with %d idle SSE streams: %v", extra, n, err)
	}
	// Keep-alives still come, with no goroutine waiting for them.
	for i, st := range streams {
		if err := st.readUntil(": keep-alive"); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	for _, st := range streams {
		st.c.Close()
	}
	// Nothing reads the connections: the next keep-alive write fails,
	// the streams detach, and the sessions expire after their TTL.
	if err := waitFor(ctx, "sessions of gone clients to expire", func() bool { return e.bridge.Stats().Sessions == 0 }); err != nil {
		t.Fatalf("%d sessions left: %v", e.bridge.Stats().Sessions, err)
	}
}

// TestSSEOverHTTP2: where the connection cannot be taken over (HTTP/2),
// the stream is written through the ResponseWriter by the same code, and
// the handler returns once the stream ends.
func TestSSEOverHTTP2(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 20*time.Second)
	srv := httptest.NewUnstartedServer(e.bridge)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	h2 := &env{t: t, rails: e.rails, bridge: e.bridge, srv: srv, client: srv.Client()}

	s := h2.create(ctx, "alice")
	st, _, err := h2.openSSE(ctx, s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", st.Resp.Proto)
	}
	if f, err := st.nextData(ctx); err != nil || f.kind() != "welcome" {
		t.Fatalf("first frame %v, %v; want the welcome", f, err)
	}
	// A newer stream replaces this one: the old one ends.
	st2, _, err := h2.openSSE(ctx, s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for {
		if _, err := st.next(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the replaced HTTP/2 stream did not end")
			}
			break
		}
	}
	// The session's end is the newer stream's end: it is told so.
	if resp, _ := h2.do(ctx, http.MethodDelete, "/sessions/"+s.SID+"?token="+s.Token, nil, ""); resp.StatusCode >= 300 {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	for {
		ev, err := st2.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("the HTTP/2 stream did not end with its session")
			}
			return
		}
		_ = ev
	}
}
