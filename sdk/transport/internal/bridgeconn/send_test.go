//go:build !js

package bridgeconn

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cableway/cableway/sdk/transport"
)

// sendBridge applies commands by cseq as the bridge does, and misbehaves
// on demand: a proxy in front answers 503 first, the bridge refuses
// (its upstream is gone), or it applies and then drops the response.
type sendBridge struct {
	mu       sync.Mutex
	acked    uint64
	applied  []string
	fail503  int    // a proxy answers this many requests with 503 first
	refuse   string // the bridge answers with this JSON error
	dropNext bool   // apply the next batch, then cut the connection
	requests int
}

func (f *sendBridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/sessions" {
		w.WriteHeader(201)
		io.WriteString(w, `{"sid":"s","token":"t","epoch":1}`)
		return
	}
	if r.URL.Path != "/sessions/s/send" {
		w.WriteHeader(204)
		return
	}
	var batch []struct {
		CSeq  uint64          `json:"cseq"`
		Frame json.RawMessage `json:"frame"`
	}
	body, _ := io.ReadAll(r.Body)
	json.Unmarshal(body, &batch)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if f.fail503 > 0 {
		f.fail503--
		w.WriteHeader(503)
		io.WriteString(w, "<html><body>503 Service Temporarily Unavailable</body></html>")
		return
	}
	if f.refuse != "" {
		w.WriteHeader(map[string]int{"upstream_unavailable": 503, "session_ended": 410}[f.refuse])
		io.WriteString(w, `{"error":"`+f.refuse+`","acked":0}`)
		return
	}
	for _, c := range batch {
		if c.CSeq == f.acked+1 {
			f.acked = c.CSeq
			f.applied = append(f.applied, string(c.Frame))
		}
	}
	if f.dropNext {
		f.dropNext = false
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
		return
	}
	w.WriteHeader(200)
}

func TestSendRetriesIdempotently(t *testing.T) {
	defer goleak.VerifyNone(t)
	fb := &sendBridge{fail503: 2}
	srv := httptest.NewServer(fb)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Create(ctx, HTTPDoer{Client: client}, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two 503s from a proxy in front of the bridge, then applied.
	if err := s.Send(ctx, []byte(`{"command":"message","n":1}`)); err != nil {
		t.Fatal(err)
	}
	// Applied, but the answer is lost: the retry must not apply it again.
	fb.mu.Lock()
	fb.dropNext = true
	fb.mu.Unlock()
	if err := s.Send(ctx, []byte(`{"command":"message","n":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, []byte(`{"command":"message","n":3}`)); err != nil {
		t.Fatal(err)
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	want := []string{`{"command":"message","n":1}`, `{"command":"message","n":2}`, `{"command":"message","n":3}`}
	if len(fb.applied) != 3 || fb.applied[0] != want[0] || fb.applied[1] != want[1] || fb.applied[2] != want[2] {
		t.Fatalf("applied %q, want each once in order %q", fb.applied, want)
	}
	if fb.requests != 6 {
		t.Fatalf("%d requests, want 6 (2 refused, 1, 2 lost + retried, 3)", fb.requests)
	}
}

func TestSendGivesUpWhenContextEnds(t *testing.T) {
	defer goleak.VerifyNone(t)
	fb := &sendBridge{fail503: 1 << 30}
	srv := httptest.NewServer(fb)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s, err := Create(context.Background(), HTTPDoer{Client: client}, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(ctx, []byte(`{"command":"message"}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	// Nothing was applied, and the next command reuses the sequence number.
	if s.cseq != 0 {
		t.Fatalf("cseq advanced to %d after a failed send", s.cseq)
	}
}

// TestSendRefusedFailsAtOnce: when the bridge itself refuses a command
// (its upstream connection is gone, the session ended), the command was
// not applied and a retry cannot help: Send says so at once, with
// transport.ErrNotSent, instead of retrying until its context ends and
// leaving the caller to guess.
func TestSendRefusedFailsAtOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, refusal := range []string{"upstream_unavailable", "session_ended"} {
		fb := &sendBridge{refuse: refusal}
		srv := httptest.NewServer(fb)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		s, err := Create(context.Background(), HTTPDoer{Client: client}, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = s.Send(ctx, []byte(`{"command":"message"}`))
		cancel()
		if !errors.Is(err, transport.ErrNotSent) || !strings.Contains(err.Error(), refusal) {
			t.Errorf("%s: err = %v, want transport.ErrNotSent naming the refusal", refusal, err)
		}
		fb.mu.Lock()
		if fb.requests != 1 || s.cseq != 0 {
			t.Errorf("%s: %d requests, cseq %d; want 1 request and cseq unchanged", refusal, fb.requests, s.cseq)
		}
		fb.mu.Unlock()
		srv.Close()
	}
}

func TestCloseStopsStreamPromptly(t *testing.T) {
	defer goleak.VerifyNone(t)
	fb := &fakeBridge{}
	srv := httptest.NewServer(fb)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Create(ctx, HTTPDoer{Client: client}, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := Open(s, SSE{Client: client})
	if _, err := c.ReadFrame(ctx, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if _, err := c.ReadFrame(ctx, nil); err == nil {
		t.Fatal("ReadFrame after Close succeeded")
	}
}
