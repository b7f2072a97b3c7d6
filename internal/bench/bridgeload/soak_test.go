//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// The soak's checks, end to end, short: 200 sessions (a quarter
// long-polling) through the cableway binary for 20 s under a broadcast
// every 500 ms. Every frame must arrive once, the bridge's RSS must stay
// flat and, once every session is closed, the bridge must be back at its
// baseline (goroutines, descriptors, no upstream socket, no session).
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cableway binary for 20 s")
	}
	const k = 200
	if err := raiseNoFile(k); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, err := buildBridge(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := options{ks: []int{k}, soak: 20 * time.Second, soakEvery: 500 * time.Millisecond, interval: 5 * time.Second,
		longpoll: 0.25, settle: time.Minute, stall: 30 * time.Second, pad: 64, conc: 16, perIP: 100,
		ack: time.Second, ackWorkers: 4, bridgeBin: bin, coalesce: true}
	var out, errs bytes.Buffer
	r, err := soak(ctx, o, &out, &errs)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, errs.String(), out.String())
	}
	t.Logf("\n%s", out.String())
	if !r.ok() {
		t.Errorf("the soak failed its checks:\n%s", out.String())
	}
	// What the verdict rests on, independently.
	if r.polling != 50 || r.to < r.from+20 || r.expected != k*(r.to-r.from+1) || r.got != r.expected {
		t.Errorf("%d long-polling, broadcasts %d…%d, %d of %d frames delivered", r.polling, r.from, r.to, r.got, r.expected)
	}
	if r.base.goroutines <= 0 || r.base.fds <= 0 || r.rssN < 15 || r.lines < 3 {
		t.Errorf("baseline %v, %d RSS samples, %d lines", r.base, r.rssN, r.lines)
	}
	if !strings.Contains(out.String(), "verdict: PASS") {
		t.Errorf("no verdict printed:\n%s", out.String())
	}
}

// The flatness rule: the first third is warm-up; the last third's mean
// within ±10 % of the second third's.
func TestRSSFlat(t *testing.T) {
	for _, c := range []struct {
		samples []int64
		ok      bool
	}{
		{[]int64{10e3, 50e3, 100e3, 100e3, 100e3, 105e3, 109e3, 109e3}, true},           // warm-up ignored; +9 %
		{[]int64{100e3, 100e3, 100e3, 100e3, 100e3, 100e3, 111e3, 111e3, 111e3}, false}, // +11 %
		{[]int64{100e3, 100e3, 100e3, 100e3, 100e3, 100e3, 89e3, 89e3, 89e3}, false},    // −11 %
		{[]int64{30e3, 30e3, 30e3, 30e3, 30e3, 30e3, 33.5e3, 33.5e3, 33.5e3}, true},     // +12 %, but < 4 MiB
		{[]int64{30e3, 30e3, 30e3, 30e3, 30e3, 30e3, 34.5e3, 34.5e3, 34.5e3}, false},    // +15 %, > 4 MiB
		{[]int64{100, 100}, false}, // too few
		{[]int64{0, 0, 0}, false},
	} {
		if a, b, ok := rssFlat(c.samples, 0.10); ok != c.ok {
			t.Errorf("%v: %.1f → %.1f ok=%v, want %v", c.samples, a, b, ok, c.ok)
		}
	}
	r := soakResult{rssA: 100e3, rssB: 111e3, rssN: 30}
	if r.rssOK() {
		t.Error("+11 % passed")
	}
}

func TestAtBaseline(t *testing.T) {
	base := procSample{goroutines: 12, fds: 11}
	for _, c := range []struct {
		now procSample
		ok  bool
	}{
		{procSample{goroutines: 12, fds: 11}, true},
		{procSample{goroutines: 10, fds: 9}, true},
		{procSample{goroutines: 13, fds: 11}, false},
		{procSample{goroutines: 12, fds: 12}, false},
		{procSample{goroutines: 12, fds: 11, upstream: 1}, false},
		{procSample{goroutines: 12, fds: 11, sessions: 1}, false},
		{procSample{goroutines: -1, fds: 11}, false}, // no metrics: unknown
	} {
		if atBaseline(base, c.now) != c.ok {
			t.Errorf("%v: want %v", c.now, c.ok)
		}
	}
}

func TestCountSockets(t *testing.T) {
	want, err := procNetAddr("127.0.0.1:8080")
	if err != nil || want != "0100007F:1F90" {
		t.Fatalf("procNetAddr: %q, %v", want, err)
	}
	for _, bad := range []string{"127.0.0.1", "::1:80", "127.0.0.256:80", "127.0.0.1:99999", "a.b.c.d:1"} {
		if _, err := procNetAddr(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 20 4 30 10 -1
   1: 0100007F:9C41 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:9C42 0100007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:9C43 0100007F:1F90 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
`
	n, err := countSockets(strings.NewReader(table), want, map[string]bool{"1001": true, "1003": true, "9": true})
	if err != nil || n != 1 {
		t.Errorf("countSockets: %d, %v; want 1 (inode 1001 to :8080; 1002 is not the process's, 1003 goes elsewhere)", n, err)
	}
}

func TestLatHist(t *testing.T) {
	var h latHist
	for i := range 1000 {
		h.add(int64(i+1) * int64(time.Millisecond)) // 1 … 1000 ms
	}
	h.add(-5) // a clock step back: counted as 0, not a panic
	now := h.snapshot()
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := quantile(now, nil, c.q)
		if got < c.want || got > c.want+c.want/8 {
			t.Errorf("q%.2f = %v, want %v (+12.5 %%)", c.q, got, c.want)
		}
	}
	before := now
	h.add(int64(3 * time.Second))
	if got := quantile(h.snapshot(), before, 0.99); got < 3*time.Second || got > 3*time.Second*9/8 {
		t.Errorf("the interval's q99 = %v, want 3 s", got)
	}
	if got := quantile(before, before, 0.99); got != 0 {
		t.Errorf("no samples: %v", got)
	}
	for i := range len(h.b) {
		if i > 0 && latUpper(i) <= latUpper(i-1) {
			t.Fatalf("bucket %d ends at %v, before bucket %d's %v", i, latUpper(i), i-1, latUpper(i-1))
		}
		if v := int64(latUpper(i)); latBucket(v) != i {
			t.Fatalf("latBucket(latUpper(%d) = %d) = %d", i, v, latBucket(v))
		}
	}
}

// In a soak the phase has no end while it runs: frames skipped are counted
// as they show, the tail once the end is known.
func TestSoakPhase(t *testing.T) {
	c := &client{t0: time.Now(), perIP: 100, hist: &latHist{}}
	s := c.newSession(0)
	s.last = 2 // before the phase
	s.startPhase(3, soakOpen, false)
	stream := broadcastEvent(1, 3) + broadcastEvent(2, 5) + broadcastEvent(3, 6) + broadcastEvent(4, 6) + broadcastEvent(5, 9)
	br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(chunk(stream, 7))), 16)
	s.readBody(br, true)
	got, dup, gaps, dead := s.running()
	if got != 4 || dup != 1 || gaps != 3 || dead != "" { // 4, 7 and 8 skipped so far
		t.Errorf("running: got %d dup %d gaps %d dead %q; want 4, 1, 3", got, dup, gaps, dead)
	}
	if s.settled() {
		t.Error("settled before the phase's end is known")
	}
	s.endPhase(10)
	if s.settled() {
		t.Error("settled without broadcast 10")
	}
	if r := s.result(); r.lost != 4 { // 4, 7, 8 and 10
		t.Errorf("lost %d, want 4", r.lost)
	}
	if n := quantile(c.hist.snapshot(), nil, 1); n == 0 {
		t.Error("no latency recorded")
	}
	s.endPhase(9)
	if !s.settled() {
		t.Error("not settled with the last broadcast in")
	}
}

// A long-poll answer's frames go through the same checks as SSE data.
func TestPollFrames(t *testing.T) {
	c := &client{t0: time.Now(), perIP: 100}
	s := c.newSession(0)
	s.startPhase(1, 2, false)
	for _, f := range []string{`{"type":"welcome"}`, `{"identifier":"{\"channel\":\"BenchChannel\"}","type":"confirm_subscription"}`,
		`{"identifier":"x","message":{"seq":1,"ts":1,"pad":""}}`, `{"type":"ping","message":1}`, `{"identifier":"x","message":{"seq":2,"ts":1,"pad":""}}`} {
		if err := s.data([]byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-s.confirmed:
	default:
		t.Error("the confirmation was not noticed")
	}
	if r := s.result(); r.got != 2 || r.lost != 0 || !s.settled() {
		t.Errorf("got %d lost %d", r.got, r.lost)
	}
	if err := s.data([]byte(`{"message":{"seq":x}}`)); err == nil {
		t.Error("a broadcast without a number was accepted")
	}
}

func TestSoakFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-soak", "1m"}, // the default -k has three counts
		{"-soak", "1m", "-k", "10", "-longpoll", "1.5"},
		{"-soak", "1m", "-k", "10", "-soak-every", "0s"},
		{"-soak", "-1m", "-k", "10"},
		{"-soak", "1m", "-k", "10", "-interval", "0s"},
		{"-soak", "1m", "-k", "10", "-profile", "/tmp/x"},
	} {
		var stderr bytes.Buffer
		if _, err := parseFlags(args, &stderr); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
	o, err := parseFlags([]string{"-soak", "1m", "-k", "10", "-longpoll", "0.5"}, &bytes.Buffer{})
	if err != nil || o.soak != time.Minute || o.ks[0] != 10 || o.longpoll != 0.5 {
		t.Errorf("%+v, %v", o, err)
	}
}
