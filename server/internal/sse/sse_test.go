package sse

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// source is a Source over a slice of events that a test appends to.
type source struct {
	mu     sync.Mutex
	events []string
	next   int
	ended  bool
	notify func()
}

func (s *source) Append(buf []byte) ([]byte, int, bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ; s.next < len(s.events); s.next++ {
		buf = append(buf, "data: "+s.events[s.next]+"\n\n"...)
		n++
	}
	return buf, n, false, s.ended
}

func (s *source) Notify(f func()) func() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next < len(s.events) || s.ended {
		go f()
		return func() bool { return false }
	}
	s.notify = f
	return func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		ok := s.notify != nil
		s.notify = nil
		return ok
	}
}

func (s *source) push(ev string, end bool) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.ended = end
	f := s.notify
	s.notify = nil
	s.mu.Unlock()
	if f != nil {
		go f()
	}
}

type served struct {
	srv  *httptest.Server
	src  *source
	done chan struct{}
	st   chan *Streamer
}

func serve(t *testing.T, detach, h2 bool, keepAlive time.Duration) *served {
	return serveWith(t, detach, h2, keepAlive, 5*time.Second)
}

func serveWith(t *testing.T, detach, h2 bool, keepAlive, writeTimeout time.Duration) *served {
	t.Helper()
	s := &served{src: &source{events: []string{"first"}}, done: make(chan struct{}), st: make(chan *Streamer, 64)}
	var once sync.Once
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := NewStreamer(s.src, Config{KeepAlive: keepAlive, WriteTimeout: writeTimeout, Detach: detach,
			Done: func() { once.Do(func() { close(s.done) }) }})
		s.st <- st
		st.Serve(w, r, []byte("retry: 1000\n\n"))
	}))
	if h2 {
		s.srv.EnableHTTP2 = true
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(s.srv.Close)
	return s
}

func readLine(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading for %q: %v", want, err)
		}
		if strings.TrimSpace(line) == want {
			return
		}
	}
}

func waitClosed(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10 s", what)
	}
}

// TestStreamer: head, prelude and the first events in one response; later
// events as they come; keep-alives after silence; the source's end ends
// the response; Done once — over HTTP/1.1 (hijacked) and HTTP/2.
func TestStreamer(t *testing.T) {
	for _, c := range []struct {
		name       string
		detach, h2 bool
	}{{"http1-detached", true, false}, {"http1", false, false}, {"http2", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			s := serve(t, c.detach, c.h2, 100*time.Millisecond)
			resp, err := s.srv.Client().Get(s.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.StatusCode != 200 {
				t.Fatalf("%d %q", resp.StatusCode, ct)
			}
			if c.h2 != (resp.ProtoMajor == 2) {
				t.Fatalf("proto %s", resp.Proto)
			}
			br := bufio.NewReader(resp.Body)
			readLine(t, br, "retry: 1000")
			readLine(t, br, "data: first")
			readLine(t, br, ": keep-alive")
			s.src.push("second", false)
			readLine(t, br, "data: second")
			s.src.push("last", true)
			readLine(t, br, "data: last")
			waitClosed(t, s.done, "Done after the source's end")
			if rest, err := io.ReadAll(br); err != nil || strings.TrimSpace(string(rest)) != "" {
				t.Fatalf("after the end: %q, %v; want the response to end", rest, err)
			}
		})
	}
}

// TestStreamerIdleHoldsNoGoroutine: a detached stream waiting for events
// holds no goroutine; Stop ends it at once and calls Done.
func TestStreamerIdleHoldsNoGoroutine(t *testing.T) {
	const n = 20
	s := serve(t, true, false, time.Hour)
	base := runtime.NumGoroutine()
	var bodies []*bufio.Reader
	for range n {
		resp, err := http.Get(s.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		readLine(t, br, "retry: 1000") // the source's one event goes to the first stream
		bodies = append(bodies, br)
	}
	// The client's own connections cost it goroutines (2 each in
	// net/http's Transport); the streams themselves none.
	deadline := time.Now().Add(10 * time.Second)
	for extra := runtime.NumGoroutine() - base; extra > 2*n+n/4; extra = runtime.NumGoroutine() - base {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines for %d idle streams", extra, n)
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	for range n - 1 {
		<-s.st
	}
	st := <-s.st
	st.Stop()
	st.Stop() // twice is fine
	waitClosed(t, s.done, "Done after Stop")
}

// TestStopInterruptsABlockedWrite: a client that stops reading blocks the
// stream's write; Stop ends it at once, not at the write timeout.
func TestStopInterruptsABlockedWrite(t *testing.T) {
	for _, c := range []struct {
		name       string
		detach, h2 bool
	}{{"http1-detached", true, false}, {"http1", false, false}, {"http2", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			s := serveWith(t, c.detach, c.h2, time.Hour, time.Hour)
			resp, err := s.srv.Client().Get(s.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			st := <-s.st
			big := strings.Repeat("x", 64<<10)
			for range 400 { // 25 MiB: more than loopback buffers hold
				s.src.push(big, false)
			}
			// Nothing is read. Whether the write is blocked yet or not,
			// Stop must end the stream now.
			st.Stop()
			waitClosed(t, s.done, "Done after Stop")
		})
	}
}
