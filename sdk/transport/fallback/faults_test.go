//go:build unix

package fallback_test

// Fault tests of issue #12: the SDK's consumers through a real bridge in
// front of real Rails, with TCP connections cut (internal/tcpcut) between
// consumer and bridge and between bridge and Rails, and Rails killed and
// restarted under many consumers. Every stream is numbered and counted end
// to end.

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/internal/tcpcut"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
	"github.com/cableway/cableway/server/bridge"
)

// faultStack is Rails (ordered delivery) with an in-process bridge in
// front; the bridge reaches Rails through up when it is set.
type faultStack struct {
	rails  *railstest.Server
	bridge *bridge.Bridge
	url    string        // the bridge's base URL
	up     *tcpcut.Proxy // between bridge and Rails, or nil
	down   *tcpcut.Proxy // between consumers and bridge, or nil
	srv    *httptest.Server
}

func newFaultStack(t *testing.T, cutUp, cutDown bool, opts ...bridge.Option) *faultStack {
	t.Helper()
	s := &faultStack{rails: railstest.Start(t, railstest.WithOrderedDelivery())}
	upstream := s.rails.CableURL()
	if cutUp {
		p, err := tcpcut.New(fmt.Sprintf("127.0.0.1:%d", s.rails.Port()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		s.up = p
		upstream = "ws://" + p.Addr() + "/cable"
	}
	s.bridge = bridge.New(upstream, opts...)
	s.srv = httptest.NewServer(s.bridge)
	s.url = s.srv.URL
	if cutDown {
		p, err := tcpcut.New(strings.TrimPrefix(s.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		s.down = p
		s.url = "http://" + p.Addr()
	}
	t.Cleanup(func() {
		s.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.bridge.Close(ctx)
	})
	return s
}

// bridgedTransport returns the SDK transport named name (sse or longpoll)
// to the bridge at url.
func bridgedTransport(name, url string) transport.Transport {
	if name == transport.NameLongPoll {
		return longpoll.New(url)
	}
	return sse.New(url)
}

// tapeItem is one thing a subscription's handler saw, in its order.
type tapeItem struct {
	n            int  // a message's number, or -1
	disconnected bool // the connection was lost
	connected    bool // the subscription was (re)confirmed
	at           time.Time
}

// tape records a numbered subscription through cable.WithHandler, whose
// callbacks run in order on one goroutine: a message after a Disconnected
// callback came over a later connection.
type tape struct {
	mu      sync.Mutex
	items   []tapeItem
	max     int // the highest number seen
	confirm int // confirmations seen (the first one included)
	changed chan struct{}
}

func newTape() *tape { return &tape{max: -1, changed: make(chan struct{}, 1)} }

func (tp *tape) add(it tapeItem) {
	it.at = time.Now()
	tp.mu.Lock()
	tp.items = append(tp.items, it)
	if it.n > tp.max {
		tp.max = it.n
	}
	if it.connected {
		tp.confirm++
	}
	tp.mu.Unlock()
	select {
	case tp.changed <- struct{}{}:
	default:
	}
}

func (tp *tape) handler(t *testing.T) cable.Handler {
	return cable.Handler{
		Received: func(p protocol.Payload) {
			var v struct{ N *int }
			if err := p.Decode(&v); err != nil || v.N == nil {
				t.Errorf("message %v: %v", p, err)
				return
			}
			tp.add(tapeItem{n: *v.N})
		},
		Connected:    func(bool) { tp.add(tapeItem{n: -1, connected: true}) },
		Disconnected: func(bool) { tp.add(tapeItem{n: -1, disconnected: true}) },
	}
}

// wait waits until cond holds of the tape (called with its lock held).
func (tp *tape) wait(ctx context.Context, what string, cond func(*tape) bool) error {
	for {
		tp.mu.Lock()
		ok := cond(tp)
		tp.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-tp.changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// tally is what a tape holds: messages, numbers missing in gaps that a
// lost connection explains, and the defects: a gap with no disconnect in
// between (a frame silently skipped), a number seen again or out of order.
type tally struct {
	received, disconnects, lost int
	skipped, repeated           []string
}

func (tp *tape) tally() tally {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var r tally
	last, down := -1, false
	for _, it := range tp.items {
		switch {
		case it.disconnected:
			r.disconnects++
			down = true
		case it.n >= 0:
			r.received++
			switch {
			case it.n <= last:
				r.repeated = append(r.repeated, fmt.Sprintf("%d after %d", it.n, last))
				continue
			case it.n != last+1 && !down:
				r.skipped = append(r.skipped, fmt.Sprintf("%d..%d", last+1, it.n-1))
			case it.n != last+1:
				r.lost += it.n - last - 1
			}
			last, down = it.n, false
		}
	}
	return r
}

// numberSource broadcasts numbered messages to numbers:<stream> in
// batches, from 0 on.
type numberSource struct {
	rails  *railstest.Server
	stream string
	next   int
}

func (ns *numberSource) send(ctx context.Context, count int) error {
	batch := make([]any, 0, count)
	for range count {
		batch = append(batch, map[string]int{"n": ns.next})
		ns.next++
	}
	return ns.rails.BroadcastMany(ctx, "numbers:"+ns.stream, batch)
}

// run broadcasts batches of 10 every 20 ms until stop is closed, then
// returns how many were sent, or the first error.
func (ns *numberSource) run(ctx context.Context, stop <-chan struct{}) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := ns.send(ctx, 10); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// dialNumbered dials a consumer over tr and subscribes it to the numbered
// stream, recording on a tape; events go to events when it is not nil.
func dialNumbered(t *testing.T, ctx context.Context, tr transport.Transport, stream string, events func(cable.Event)) (*cable.Consumer, *tape) {
	t.Helper()
	opts := []cable.Option{cable.WithTransport(tr), cable.WithHeader("Authorization", "Bearer secret-alice")}
	if events != nil {
		opts = append(opts, cable.WithEventHandler(events))
	}
	c, err := cable.Dial(ctx, "ws://unused.invalid/cable", opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	tp := newTape()
	if _, err := c.Subscribe(ctx, protocol.MustIdentifier("NumbersChannel", "stream", stream),
		cable.WithHandler(tp.handler(t)), cable.WithBuffer(1<<16)); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return c, tp
}

// TestFaultCutsBetweenConsumerAndBridge streams numbered messages to an
// SSE and a long-poll consumer while their TCP connections to the bridge
// are reset four times and stalled once: the SDK resumes its bridge session
// at its cursor, so every message arrives once, in order, and the consumer
// never sees the connection drop.
func TestFaultCutsBetweenConsumerAndBridge(t *testing.T) {
	for _, name := range []string{transport.NameSSE, transport.NameLongPoll} {
		t.Run(name, func(t *testing.T) {
			s := newFaultStack(t, false, true)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stream := "cut-down-" + name
			c, tp := dialNumbered(t, ctx, bridgedTransport(name, s.url), stream, nil)
			src := &numberSource{rails: s.rails, stream: stream}

			stop := make(chan struct{})
			streamed := make(chan error, 1)
			go func() { streamed <- src.run(ctx, stop) }()
			// Cut only once messages flow, and each time after more came.
			cuts := 0
			for i := range 5 {
				seen := 0
				tp.mu.Lock()
				seen = tp.max
				tp.mu.Unlock()
				if err := tp.wait(ctx, "messages to flow", func(tp *tape) bool { return tp.max >= seen+20 }); err != nil {
					t.Fatal(err)
				}
				if i == 2 {
					// A silent path for a while (shorter than the stale
					// timeouts), then it carries on.
					s.down.Stall()
					time.Sleep(time.Second) // the length of the fault, not a synchronisation
					s.down.Resume()
					continue
				}
				// A long-poll client may have no connection open at
				// the instant of a cut: cut again once more came.
				for n := s.down.Cut(); n == 0; n = s.down.Cut() {
					tp.mu.Lock()
					seen := tp.max
					tp.mu.Unlock()
					if err := tp.wait(ctx, "messages to flow", func(tp *tape) bool { return tp.max >= seen+5 }); err != nil {
						t.Fatal(err)
					}
				}
				cuts++
			}
			close(stop)
			if err := <-streamed; err != nil {
				t.Fatal(err)
			}
			last := src.next - 1
			if err := tp.wait(ctx, fmt.Sprintf("message %d", last), func(tp *tape) bool { return tp.max >= last }); err != nil {
				t.Fatalf("%v; %+v", err, tp.tally())
			}
			r := tp.tally()
			t.Logf("%s: %d messages, %d cuts that reset a connection, 1 stall; %+v", name, src.next, cuts, r)
			if r.received != src.next || r.lost != 0 || r.disconnects != 0 || len(r.skipped) != 0 || len(r.repeated) != 0 {
				t.Errorf("received %d of %d: lost %d, skipped %v, repeated %v, disconnects %d; want each once and no disconnect",
					r.received, src.next, r.lost, r.skipped, r.repeated, r.disconnects)
			}
			if n := c.Stats().Reconnects; n != 0 {
				t.Errorf("%d reconnects, want 0: the bridge session resumes", n)
			}
		})
	}
}

// TestFaultCutsBetweenBridgeAndRails streams numbered messages to an SSE
// and a long-poll consumer while the bridge's upstream socket to Rails is
// reset twice. What Rails broadcast while no socket was subscribed is
// lost (ActionCable keeps no history), and the consumer must be told: it
// sees an upstream_lost disconnect, reconnects and resubscribes; every gap
// in the numbers lies across such a disconnect, no number comes twice or
// out of order, and after the last reconnect nothing more is lost.
func TestFaultCutsBetweenBridgeAndRails(t *testing.T) {
	for _, name := range []string{transport.NameSSE, transport.NameLongPoll} {
		t.Run(name, func(t *testing.T) {
			s := newFaultStack(t, true, false)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stream := "cut-up-" + name
			var mu sync.Mutex
			var drops []error
			c, tp := dialNumbered(t, ctx, bridgedTransport(name, s.url), stream, func(e cable.Event) {
				if e.Kind == cable.EventDisconnected {
					mu.Lock()
					drops = append(drops, e.Err)
					mu.Unlock()
				}
			})
			src := &numberSource{rails: s.rails, stream: stream}

			stop := make(chan struct{})
			streamed := make(chan error, 1)
			go func() { streamed <- src.run(ctx, stop) }()
			const cuts = 2
			for i := range cuts {
				var seen int
				tp.mu.Lock()
				seen = tp.max
				tp.mu.Unlock()
				if err := tp.wait(ctx, "messages to flow", func(tp *tape) bool { return tp.max >= seen+20 }); err != nil {
					t.Fatal(err)
				}
				if n := s.up.Cut(); n != 1 {
					t.Fatalf("cut %d upstream connections, want 1", n)
				}
				if err := tp.wait(ctx, "the resubscription", func(tp *tape) bool { return tp.confirm >= i+2 }); err != nil {
					t.Fatalf("%v; %+v", err, tp.tally())
				}
			}
			close(stop)
			if err := <-streamed; err != nil {
				t.Fatal(err)
			}
			// Subscribed again: what is broadcast now arrives whole.
			from := src.next
			if err := src.send(ctx, 50); err != nil {
				t.Fatal(err)
			}
			last := src.next - 1
			if err := tp.wait(ctx, fmt.Sprintf("message %d", last), func(tp *tape) bool { return tp.max >= last }); err != nil {
				t.Fatalf("%v; %+v", err, tp.tally())
			}
			r := tp.tally()
			t.Logf("%s: %d messages broadcast, 2 upstream cuts; %+v", name, src.next, r)
			if len(r.skipped) != 0 || len(r.repeated) != 0 {
				t.Errorf("skipped silently %v, repeated %v", r.skipped, r.repeated)
			}
			if r.disconnects != cuts || r.received+r.lost != src.next {
				t.Errorf("%d disconnects (want %d), %d received + %d lost across them, of %d", r.disconnects, cuts, r.received, r.lost, src.next)
			}
			tp.mu.Lock()
			tail := 0
			for _, it := range tp.items {
				if it.n >= from {
					tail++
				}
			}
			tp.mu.Unlock()
			if tail != last-from+1 {
				t.Errorf("%d of the %d messages broadcast after the last resubscription arrived", tail, last-from+1)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(drops) != cuts {
				t.Fatalf("disconnect events %v, want %d", drops, cuts)
			}
			for _, err := range drops {
				var de *cable.DisconnectError
				if !errors.As(err, &de) || de.Reason != "upstream_lost" || !de.Reconnect {
					t.Errorf("disconnect cause %v, want upstream_lost with reconnect", err)
				}
			}
			if n := c.Stats().Reconnects; n != cuts {
				t.Errorf("%d reconnects, want %d", n, cuts)
			}
		})
	}
}

// faultConsumers is how many consumers TestFaultRailsKilledUnderConsumers
// runs: 50, or CABLEWAY_FAULT_CONSUMERS (1000 for the figure in
// RELIABILITY.md).
func faultConsumers(t *testing.T) int {
	if v := os.Getenv("CABLEWAY_FAULT_CONSUMERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			t.Fatalf("CABLEWAY_FAULT_CONSUMERS=%q: want 1…5000", v)
		}
		return n
	}
	return 50
}

// restartRecord is one consumer's view of the restart.
type restartRecord struct {
	mu       sync.Mutex
	attempts []time.Time // when each reconnect attempt was due (event time + delay)
	delays   []time.Duration
	lostErr  error
	back     time.Time // connected again
}

// TestFaultRailsKilledUnderConsumers kills Rails (SIGKILL) under many SSE
// consumers of the bridge and starts it again. Every consumer is told
// (upstream_lost), retries with sdk/backoff's jittered delays while Rails
// is down, and comes back: the successful attempts are spread as the
// jitter promises (attempt n waits a uniform time in [d/2, d], so no
// 100 ms window may hold more than half of them: a storm would put them
// all in one) and the delays of each attempt number are spread over
// their jitter window, every subscription is confirmed again, and every consumer
// receives a broadcast made after the restart. It prints the histogram of
// reconnect times.
func TestFaultRailsKilledUnderConsumers(t *testing.T) {
	n := faultConsumers(t)
	s := newFaultStack(t, false, false, bridge.WithSessionLimits(2*n+10, 2*n+10), bridge.WithSessionRate(1e6, 1e6),
		bridge.WithSessionTTL(5*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(120+n/10)*time.Second)
	defer cancel()

	records := make([]*restartRecord, n)
	tapes := make([]*tape, n)
	consumers := make([]*cable.Consumer, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		rec := &restartRecord{}
		records[i] = rec
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := cable.Dial(ctx, "ws://unused.invalid/cable", cable.WithTransport(sse.New(s.url)),
				cable.WithHeader("Authorization", "Bearer secret-alice"),
				cable.WithEventHandler(func(e cable.Event) {
					rec.mu.Lock()
					defer rec.mu.Unlock()
					switch e.Kind {
					case cable.EventDisconnected:
						rec.lostErr = e.Err
					case cable.EventReconnecting:
						rec.attempts = append(rec.attempts, time.Now().Add(e.Delay))
						rec.delays = append(rec.delays, e.Delay)
					case cable.EventConnected:
						if e.Reconnected {
							rec.back = time.Now()
						}
					}
				}))
			if err != nil {
				errs <- err
				return
			}
			consumers[i] = c
			tp := newTape()
			if _, err := c.Subscribe(ctx, protocol.MustIdentifier("NumbersChannel", "stream", "restart"),
				cable.WithHandler(tp.handler(t))); err != nil {
				errs <- err
				return
			}
			tapes[i] = tp
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range consumers {
			if c != nil {
				c.Close()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatalf("consumer: %v", err)
	}
	src := &numberSource{rails: s.rails, stream: "restart"}
	if err := src.send(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for i, tp := range tapes {
		if err := tp.wait(ctx, "the first broadcast", func(tp *tape) bool { return tp.max >= 0 }); err != nil {
			t.Fatalf("consumer %d: %v", i, err)
		}
	}

	killed := time.Now()
	s.rails.Kill()
	s.rails.Restart(t)
	healthy := time.Now()
	for i, tp := range tapes {
		if err := tp.wait(ctx, "the resubscription", func(tp *tape) bool { return tp.confirm >= 2 }); err != nil {
			t.Fatalf("consumer %d: %v", i, err)
		}
	}
	resubscribed := time.Now()
	if err := src.send(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for i, tp := range tapes {
		if err := tp.wait(ctx, "the broadcast after the restart", func(tp *tape) bool { return tp.max >= 1 }); err != nil {
			t.Fatalf("consumer %d was not resubscribed: %v", i, err)
		}
	}

	// The attempt that succeeded is the last one due before the consumer
	// was back.
	var starts, backs []time.Duration
	var firstDelays []time.Duration
	for i, rec := range records {
		rec.mu.Lock()
		var de *cable.DisconnectError
		if !errors.As(rec.lostErr, &de) || de.Reason != "upstream_lost" || !de.Reconnect {
			t.Errorf("consumer %d: disconnect cause %v, want upstream_lost with reconnect", i, rec.lostErr)
		}
		if len(rec.attempts) == 0 || rec.back.IsZero() {
			t.Fatalf("consumer %d: attempts %v, back %v", i, rec.attempts, rec.back)
		}
		start := rec.attempts[len(rec.attempts)-1]
		starts = append(starts, start.Sub(killed))
		backs = append(backs, rec.back.Sub(killed))
		firstDelays = append(firstDelays, rec.delays[0])
		rec.mu.Unlock()
	}
	t.Logf("%d consumers; Rails killed, healthy again after %v; all resubscribed after %v",
		n, healthy.Sub(killed).Round(time.Millisecond), resubscribed.Sub(killed).Round(time.Millisecond))
	slices.Sort(firstDelays)
	t.Logf("first retry delays: min %v, median %v, max %v (backoff: uniform in [250ms, 500ms])",
		firstDelays[0], firstDelays[len(firstDelays)/2], firstDelays[len(firstDelays)-1])
	t.Logf("successful attempts, ms after the kill, 100 ms buckets:\n%s", histogram(starts, 100*time.Millisecond))
	t.Logf("connected again, ms after the kill, 100 ms buckets:\n%s", histogram(backs, 100*time.Millisecond))
	if top := topBucket(starts, 100*time.Millisecond); n >= 10 && top > n/2 {
		t.Errorf("%d of %d successful attempts in one 100 ms window: a reconnect storm", top, n)
	}
	// The jitter itself: the delays of each attempt number k are uniform
	// in [c/2, c], c = backoff.Policy{}.Ceiling(k) (the consumer's
	// default). Over 10 or more consumers their range is at least a fifth
	// of that window but with a probability below 1e-5; without jitter it
	// is 0.
	byAttempt := map[int][]time.Duration{}
	for _, rec := range records {
		for k, d := range rec.delays {
			byAttempt[k+1] = append(byAttempt[k+1], d)
		}
	}
	for k, ds := range byAttempt {
		c := backoff.Policy{}.Ceiling(k)
		lo, hi := slices.Min(ds), slices.Max(ds)
		if lo < c/2 || hi > c {
			t.Errorf("attempt %d: delays %v…%v, outside [%v, %v]", k, lo, hi, c/2, c)
		}
		if len(ds) >= 10 && hi-lo < c/10 {
			t.Errorf("attempt %d: %d delays all within %v…%v: no jitter (want them spread over [%v, %v])", k, len(ds), lo, hi, c/2, c)
		}
	}
	// A session whose creator gave up waiting for it (its request timed
	// out on the consumer's side as the bridge finished it) has no client
	// and expires after the TTL; then one session per consumer is left.
	for s.bridge.Stats().Sessions != n {
		select {
		case <-ctx.Done():
			t.Fatalf("%d bridge sessions, want %d", s.bridge.Stats().Sessions, n)
		case <-time.After(50 * time.Millisecond): // polling a counter
		}
	}
}

// histogram draws ds in buckets of width w, one line per non-empty bucket.
func histogram(ds []time.Duration, w time.Duration) string {
	counts := map[int]int{}
	var keys []int
	for _, d := range ds {
		k := int(d / w)
		if counts[k] == 0 {
			keys = append(keys, k)
		}
		counts[k]++
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		bar := strings.Repeat("#", min(counts[k], 100))
		fmt.Fprintf(&b, "%6d-%-6d %4d %s\n", k*int(w/time.Millisecond), (k+1)*int(w/time.Millisecond), counts[k], bar)
	}
	return b.String()
}

// topBucket is the count of the fullest bucket of width w over ds.
func topBucket(ds []time.Duration, w time.Duration) int {
	counts := map[int]int{}
	top := 0
	for _, d := range ds {
		k := int(d / w)
		counts[k]++
		top = max(top, counts[k])
	}
	return top
}

// TestFaultSilentUpstream: the path between bridge and Rails goes silent
// (no reset: bytes stop in both directions) for longer than the
// consumer's stale timeout, then carries on. Pings stop reaching the
// consumer, so it is told (a stale disconnect), retries while new upstream
// dials hang, and once the path carries again it resubscribes; every gap
// in the numbers lies across that disconnect, none is repeated, and what
// is broadcast after the resubscription arrives whole.
func TestFaultSilentUpstream(t *testing.T) {
	s := newFaultStack(t, true, false, bridge.WithCreateTimeout(2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var mu sync.Mutex
	var drops []error
	c, tp := dialNumbered(t, ctx, sse.New(s.url), "silent", func(e cable.Event) {
		if e.Kind == cable.EventDisconnected {
			mu.Lock()
			drops = append(drops, e.Err)
			mu.Unlock()
		}
	})
	src := &numberSource{rails: s.rails, stream: "silent"}
	stop := make(chan struct{})
	streamed := make(chan error, 1)
	go func() { streamed <- src.run(ctx, stop) }()
	if err := tp.wait(ctx, "messages to flow", func(tp *tape) bool { return tp.max >= 20 }); err != nil {
		t.Fatal(err)
	}
	s.up.Stall()
	if err := tp.wait(ctx, "the consumer to be told", func(tp *tape) bool {
		return slices.ContainsFunc(tp.items, func(it tapeItem) bool { return it.disconnected })
	}); err != nil {
		t.Fatal(err)
	}
	s.up.Resume()
	if err := tp.wait(ctx, "the resubscription", func(tp *tape) bool { return tp.confirm >= 2 }); err != nil {
		t.Fatalf("%v; %+v", err, tp.tally())
	}
	close(stop)
	if err := <-streamed; err != nil {
		t.Fatal(err)
	}
	from := src.next
	if err := src.send(ctx, 50); err != nil {
		t.Fatal(err)
	}
	last := src.next - 1
	if err := tp.wait(ctx, fmt.Sprintf("message %d", last), func(tp *tape) bool { return tp.max >= last }); err != nil {
		t.Fatalf("%v; %+v", err, tp.tally())
	}
	r := tp.tally()
	t.Logf("%d messages broadcast, the upstream path silent for a while; %+v", src.next, r)
	if len(r.skipped) != 0 || len(r.repeated) != 0 || r.received+r.lost != src.next {
		t.Errorf("skipped silently %v, repeated %v; %d received + %d lost of %d", r.skipped, r.repeated, r.received, r.lost, src.next)
	}
	tp.mu.Lock()
	tail := 0
	for _, it := range tp.items {
		if it.n >= from {
			tail++
		}
	}
	tp.mu.Unlock()
	if tail != last-from+1 {
		t.Errorf("%d of the %d messages broadcast after the resubscription arrived", tail, last-from+1)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(drops) == 0 || !errors.Is(drops[0], cable.ErrStale) {
		t.Errorf("disconnects %v, want the first one stale", drops)
	}
	if c.Stats().Reconnects < 1 {
		t.Errorf("no reconnect")
	}
}

// TestFaultCutsDuringPerform performs numbered echo actions over SSE and
// long-poll while the consumer's connections to the bridge are reset
// again and again. Commands go by POST with a sequence number, so a retried
// batch is applied once: every Perform that returned nil is echoed by
// Rails exactly once, and none is echoed twice.
func TestFaultCutsDuringPerform(t *testing.T) {
	for _, name := range []string{transport.NameSSE, transport.NameLongPoll} {
		t.Run(name, func(t *testing.T) {
			s := newFaultStack(t, false, true)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := cable.Dial(ctx, "ws://unused.invalid/cable", cable.WithTransport(bridgedTransport(name, s.url)),
				cable.WithHeader("Authorization", "Bearer secret-alice"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echoes := newTape()
			sub, err := c.Subscribe(ctx, protocol.MustIdentifier("EchoChannel", "k", name), cable.WithHandler(cable.Handler{Received: func(p protocol.Payload) {
				var v struct{ N *int }
				if p.Decode(&v) == nil && v.N != nil { // the first message echoes the params
					echoes.add(tapeItem{n: *v.N})
				}
			}}), cable.WithBuffer(1<<16))
			if err != nil {
				t.Fatal(err)
			}
			const total = 300
			var ok []int
			cuts := 0
			for i := range total {
				if i%40 == 20 {
					cuts += s.down.Cut()
				}
				if err := sub.Perform(ctx, "echo", map[string]int{"n": i}); err == nil {
					ok = append(ok, i)
				} else if ctx.Err() != nil {
					t.Fatal(err)
				}
			}
			// A marker after everything: once it is back, every echo is.
			if err := sub.Perform(ctx, "echo", map[string]int{"n": total}); err != nil {
				t.Fatalf("the last Perform: %v", err)
			}
			if err := echoes.wait(ctx, "the last echo", func(tp *tape) bool { return tp.max >= total }); err != nil {
				t.Fatal(err)
			}
			echoes.mu.Lock()
			count := map[int]int{}
			for _, it := range echoes.items {
				if it.n >= 0 {
					count[it.n]++
				}
			}
			echoes.mu.Unlock()
			for n, k := range count {
				if k > 1 {
					t.Errorf("action %d applied %d times", n, k)
				}
			}
			for _, n := range ok {
				if count[n] != 1 {
					t.Errorf("action %d: Perform returned nil, echoed %d times", n, count[n])
				}
			}
			t.Logf("%s: %d of %d Performs returned nil through %d connection resets; %d echoed; %d reconnects",
				name, len(ok), total, cuts, len(count)-1, c.Stats().Reconnects)
		})
	}
}
