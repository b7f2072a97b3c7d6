//go:build !js

package bridgeconn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/transport"
)

// openBridge is a fake bridge with the single-request open (unless old):
// its session's frames are {"n":1}…{"n":5}, and the opening stream is cut
// after frame 2.
type openBridge struct {
	old bool

	mu       sync.Mutex
	requests []string // method, path, query and credentials of each request
}

func (f *openBridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, fmt.Sprintf("%s %s ?%s auth=%s cookie=%s last=%s", r.Method, r.URL.Path, r.URL.RawQuery,
		r.Header.Get("Authorization"), strings.Join(r.Header.Values("Cookie"), "|"), r.Header.Get("Last-Event-ID")))
	f.mu.Unlock()
	stream := func(from int, first bool) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "retry: 1000\n\n")
		if first {
			w.Write(bridgewire.AppendSession(nil, bridgewire.Created{SID: "s1", Token: "t", Epoch: 7, TTL: 30}))
		}
		for n := from; n <= 5; n++ {
			if first && n == 3 {
				w.(http.Flusher).Flush()
				return // cut: the client resumes at the session's URL
			}
			fmt.Fprintf(w, "id: 7:%d\ndata: {\"n\":%d}\n\n", n, n)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/b"+bridgewire.OpenSSEPath && !f.old:
		stream(1, true)
	case r.Method == "POST" && r.URL.Path == "/b/sessions":
		w.WriteHeader(201)
		fmt.Fprint(w, `{"sid":"s1","token":"t","epoch":7}`)
	case r.Method == "GET" && r.URL.Path == "/b/sessions/s1/sse":
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		stream(after+1, false)
	case r.Method == "DELETE" && r.URL.Path == "/b/sessions/s1":
		w.WriteHeader(204)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		fmt.Fprint(w, `{"error":"not_found"}`)
	}
}

func (f *openBridge) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// DialSSE opens a session and its stream in one request, with the
// credentials and the ActionCable URL's query; the stream resumes at the
// session's own URL from the last frame read. An older bridge without the
// single-request open gets POST /sessions and then the stream.
func TestDialSSEInOneRequest(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("old=%v", old), func(t *testing.T) {
			fb := &openBridge{old: old}
			srv := httptest.NewServer(fb)
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := &transport.Request{URL: "wss://app.example/cable?token=secret", Header: map[string][]string{
				"Authorization": {"Bearer b"}, "Cookie": {"a=1", "b=2"},
			}}
			c, err := DialSSE(ctx, SSE{}, HTTPDoer{}, srv.URL+"/b/", req)
			if err != nil {
				t.Fatal(err)
			}
			if s := c.Session(); s.SID != "s1" || s.Token != "t" || s.Epoch != 7 {
				t.Errorf("session %+v", s)
			}
			var buf []byte
			for want := 1; want <= 5; want++ {
				if buf, err = c.ReadFrame(ctx, buf); err != nil {
					t.Fatalf("frame %d: %v", want, err)
				}
				if got := fmt.Sprintf(`{"n":%d}`, want); string(buf) != got {
					t.Fatalf("frame = %s, want %s", buf, got)
				}
			}
			c.Close()
			log := fb.log()
			want := []string{
				"GET /b/sessions/sse ?token=secret auth=Bearer b cookie=a=1; b=2 last=",
				"GET /b/sessions/s1/sse ?after=2&token=t auth= cookie= last=",
				"DELETE /b/sessions/s1 ?token=t auth= cookie= last=",
			}
			if old { // the open is refused (404): create, then stream
				want = []string{want[0],
					"POST /b/sessions ?token=secret auth=Bearer b cookie=a=1|b=2 last=",
					"GET /b/sessions/s1/sse ?after=0&token=t auth= cookie= last=",
					want[2]}
			}
			if strings.Join(log, "\n") != strings.Join(want, "\n") {
				t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// A refused open is the bridge's refusal (no second try over POST
// /sessions), and an open that yields no session in time fails with its
// context.
func TestDialSSERefused(t *testing.T) {
	var posts atomic.Int32
	hold := make(chan struct{})
	defer close(hold)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST":
			posts.Add(1)
			w.WriteHeader(500)
		case r.URL.Query().Get("token") == "slow":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":"unauthorized","detail":"Rails refused the connection"}`)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := DialSSE(ctx, SSE{}, HTTPDoer{}, srv.URL, &transport.Request{URL: "ws://x/cable"})
	var he *transport.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != 401 || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("refused open: %v, want the 401 with the bridge's reason", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := DialSSE(short, SSE{}, HTTPDoer{}, srv.URL, &transport.Request{URL: "ws://x/cable?token=slow"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("open without a session event: %v, want the context's deadline", err)
	}
	if n := posts.Load(); n != 0 {
		t.Errorf("%d POST /sessions after refused opens, want none", n)
	}
}
