//go:build !js

package bridgeconn

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeBridge serves a session whose frames are {"n":1}…{"n":total}; the
// first SSE response is cut in the middle of frame 3.
type fakeBridge struct {
	mu      sync.Mutex
	streams int
	afters  []string
}

func (f *fakeBridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/sessions":
		w.WriteHeader(201)
		fmt.Fprint(w, `{"sid":"s1","token":"t","epoch":7}`)
	case "/sessions/s1/sse":
		f.mu.Lock()
		f.streams++
		first := f.streams == 1
		f.afters = append(f.afters, r.URL.Query().Get("after")+"|"+r.Header.Get("Last-Event-ID"))
		f.mu.Unlock()
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for n := after + 1; n <= 5; n++ {
			if first && n == 3 {
				fmt.Fprintf(w, "id: 7:3\ndata: {\"n\":")
				w.(http.Flusher).Flush()
				// Cut the connection mid-frame.
				conn, _, _ := http.NewResponseController(w).Hijack()
				conn.Close()
				return
			}
			fmt.Fprintf(w, "id: 7:%d\ndata: {\"n\":%d}\n\n", n, n)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case "/sessions/s1":
		w.WriteHeader(204)
	default:
		http.NotFound(w, r)
	}
}

func TestSSEResumesAfterCutMidFrame(t *testing.T) {
	fb := &fakeBridge{}
	srv := httptest.NewServer(fb)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Create(ctx, HTTPDoer{}, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := Open(s, SSE{})
	defer c.Close()
	var buf []byte
	for want := 1; want <= 5; want++ {
		buf, err = c.ReadFrame(ctx, buf)
		if err != nil {
			t.Fatalf("frame %d: %v", want, err)
		}
		if got := fmt.Sprintf(`{"n":%d}`, want); string(buf) != got {
			t.Fatalf("frame = %s, want %s (a cut frame must not be delivered)", buf, got)
		}
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if fb.streams != 2 || fb.afters[1] != "2|" {
		t.Fatalf("streams %d, resumed with after|Last-Event-ID %q; want 2 streams, the second after 2", fb.streams, fb.afters)
	}
}
