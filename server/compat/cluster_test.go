//go:build unix

package compat_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/server/bridge"
	"github.com/cableway/cableway/server/session/redisstore"
)

// ceCluster is Rails, one redis-server and three bridges sharing it, each
// on its own HTTP server: a test picks the node of each request, as a
// round-robin load balancer without stickiness would.
type ceCluster struct {
	rails  *railstest.Server
	redis  *redistest.Server
	stores []*redisstore.Store
	nodes  []*ceEnv
}

func newCECluster(t *testing.T, lease time.Duration) *ceCluster {
	t.Helper()
	cc := &ceCluster{rails: railstest.Start(t), redis: redistest.Start(t)}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := redisstore.New(ctx, cc.redis.URL(0), redisstore.WithNode(fmt.Sprintf("n%d", i)), redisstore.WithLease(lease))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		b := bridge.New(cc.rails.CableURL(), bridge.WithSharedStore(st), bridge.WithClientIP(ceClientIP),
			bridge.WithUpstreamBackoff(backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}))
		srv := httptest.NewServer(b)
		cc.stores = append(cc.stores, st)
		cc.nodes = append(cc.nodes, &ceEnv{t: t, rails: cc.rails, bridge: b, srv: srv, client: client})
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for i, n := range cc.nodes {
			n.srv.Close()
			if err := n.bridge.Close(ctx); err != nil {
				t.Errorf("bridge %d Close: %v", i, err)
			}
			cc.stores[i].Close()
		}
	})
	return cc
}

// on is the client's requests sent to node i.
func (c *ceClient) on(cc *ceCluster, i int) *ceClient {
	return &ceClient{e: cc.nodes[i], id: c.id, header: c.header}
}

// ceTally counts a client's events across polls: numbers received (and
// duplicates), msg_ids in order, and the other events.
type ceTally struct {
	t      *testing.T
	seen   map[int]int
	dups   []int
	last   uint64
	events []string
}

func (tl *ceTally) add(ev ceEvent) {
	tl.t.Helper()
	if id := ev.msgID(); id != tl.last+1 {
		tl.t.Fatalf("msg_id %d after %d: a gap or a repeat in the log (events %v)", id, tl.last, tl.events)
	}
	tl.last = ev.msgID()
	if n := ev.number(); n >= 0 {
		if tl.seen[n]++; tl.seen[n] > 1 {
			tl.dups = append(tl.dups, n)
		}
		return
	}
	what := ev.Type
	if ev.Type == "disconnected" {
		what += ":" + string(ev.Message)
	}
	tl.events = append(tl.events, what)
}

// pollUntil long-polls node after node (round robin from start) at the
// tally's cursor until cond holds.
func (tl *ceTally) pollUntil(ctx context.Context, cc *ceCluster, c *ceClient, start int, cond func() bool) int {
	tl.t.Helper()
	i := start
	for !cond() {
		if ctx.Err() != nil {
			tl.t.Fatalf("deadline: seen %v, events %v", tl.seen, tl.events)
		}
		p := c.on(cc, i%3).poll(ctx, fmt.Sprintf("after=%d&timeout=2", tl.last))
		if p.Dropped != 0 {
			tl.t.Fatalf("node %d: %d events dropped", i%3, p.Dropped)
		}
		for _, ev := range p.events {
			tl.add(ev)
		}
		i++
	}
	return i
}

// TestCompatClusterForwardAndBinding: a compat session opened on one node
// is checked, written and read on the others: a POST landing on a node
// that does not own it is performed by the owner (one upstream connection
// only), a request with other credentials is refused on a non-owner as on
// one node, and the events are read in order by long-poll from every node
// and by SSE from another.
func TestCompatClusterForwardAndBinding(t *testing.T) {
	cc := newCECluster(t, time.Second)
	ctx := ceCtx(t, 90*time.Second)
	c := cc.nodes[0].newClient("alice")
	c.on(cc, 0).open(ctx)

	// Other credentials, or another client IP, on a non-owner: refused.
	for i, other := range []http.Header{
		{"Cookie": {"user=mallory"}},
		{"Cookie": {"user=alice"}, "X-Test-IP": {"192.0.2.7"}},
	} {
		m := c.as(other).on(cc, 1+i)
		for _, method := range []string{"GET", "POST"} {
			resp, body := m.request(ctx, method, "timeout=0", http.Header{"Accept": {"application/json"}},
				`[{"identifier":`+ceNumbers+`,"subscribe":true}]`)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not_session_owner") {
				t.Fatalf("%s with %v on node %d: %d %s, want 403 not_session_owner", method, other, 1+i, resp.StatusCode, body)
			}
		}
	}

	// Subscribe through node 1: forwarded to node 0.
	res := c.on(cc, 1).subscribe(ctx, ceNumbers)
	tl := &ceTally{t: t, seen: map[int]int{}}
	p := c.on(cc, 2).poll(ctx, "after=0&timeout=5")
	if res.str("session_id") != p.SessionID || p.SessionID == "" {
		t.Fatalf("session_id %q from the POST, %q from the poll: one session", res.str("session_id"), p.SessionID)
	}
	for _, ev := range p.events {
		tl.add(ev)
	}
	i := tl.pollUntil(ctx, cc, c, 2, func() bool { return len(tl.events) > 0 })
	if tl.events[0] != "connected" {
		t.Fatalf("first event %v, want connected", tl.events)
	}
	if st, err := cc.rails.Stats(ctx); err != nil || st.Connections != 1 {
		t.Fatalf("Rails connections %+v (%v), want 1: the POST was performed by the owner", st, err)
	}

	const total = 40
	msgs := make([]any, total)
	for n := range msgs {
		msgs[n] = map[string]int{"n": n}
	}
	if err := cc.rails.BroadcastMany(ctx, "numbers:s1", msgs); err != nil {
		t.Fatal(err)
	}
	tl.pollUntil(ctx, cc, c, i, func() bool { return len(tl.seen) >= total/2 })
	// The rest by SSE on node 1, from the long-poll's cursor.
	st := c.on(cc, 1).openSSE(ctx, http.Header{"Last-Event-ID": {fmt.Sprint(tl.last)}})
	if j := st.next(ctx); j.Type != "joined" {
		t.Fatalf("SSE first event %s, want joined", j.raw)
	}
	for len(tl.seen) < total {
		tl.add(st.next(ctx))
	}
	if len(tl.dups) > 0 {
		t.Fatalf("duplicated: %v", tl.dups)
	}
}

// TestCompatClusterTakeover: the owner's process loses Redis (as if it
// died: its lease lapses, its writes are refused); a node serving the
// session takes it over: it redials Rails with the stored credentials,
// tells the client of the lost connection as one node does (disconnected,
// connection_lost, reconnect true), subscribes the stored channel again
// (connected, with no POST from the client), and the broadcasts that
// follow arrive in the same log: msg_ids go on, nothing is lost or
// repeated.
func TestCompatClusterTakeover(t *testing.T) {
	cc := newCECluster(t, 600*time.Millisecond)
	ctx := ceCtx(t, 90*time.Second)
	c := cc.nodes[0].newClient("bob")
	c.on(cc, 0).open(ctx)
	c.on(cc, 1).subscribe(ctx, ceNumbers)
	tl := &ceTally{t: t, seen: map[int]int{}}
	i := tl.pollUntil(ctx, cc, c, 1, func() bool { return len(tl.events) > 0 })
	if err := cc.rails.BroadcastMany(ctx, "numbers:s1", []any{map[string]int{"n": 0}, map[string]int{"n": 1}, map[string]int{"n": 2}}); err != nil {
		t.Fatal(err)
	}
	i = tl.pollUntil(ctx, cc, c, i, func() bool { return len(tl.seen) == 3 })
	cc.stores[0].Close() // the owner is gone for the store

	i = tl.pollUntil(ctx, cc, c, i, func() bool { return len(tl.events) >= 3 })
	want := []string{"connected", `disconnected:{"reason":"connection_lost","reconnect":true}`, "connected"}
	if fmt.Sprint(tl.events[:3]) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", tl.events, want)
	}
	if err := cc.rails.Broadcast(ctx, "numbers:s1", map[string]int{"n": 3}); err != nil {
		t.Fatal(err)
	}
	tl.pollUntil(ctx, cc, c, i, func() bool { return tl.seen[3] > 0 })
	for n := range 4 {
		if tl.seen[n] != 1 {
			t.Fatalf("number %d seen %d times (%v)", n, tl.seen[n], tl.seen)
		}
	}
	// A POST lands on the new owner or is forwarded to it.
	for n := range 3 {
		res := c.on(cc, 1+n%2).post(ctx, `[{"identifier":`+ceNumbers+`,"send":{"action":"noop"}}]`)
		if len(res) != 1 || res[0]["error"] != nil {
			t.Fatalf("POST after the takeover: %v", res)
		}
	}
}

// TestCompatClusterCloseHandsOver: a bridge that stops gracefully (Close,
// as on SIGTERM) gives its compat sessions to the others instead of ending
// them: the client long-polling another node gets no server_restart but
// the reconnect of a takeover (disconnected, connection_lost, then
// connected), and its stream goes on in the same log.
func TestCompatClusterCloseHandsOver(t *testing.T) {
	cc := newCECluster(t, 3*time.Second) // a takeover sooner than the lease: the lease was given up
	ctx := ceCtx(t, 60*time.Second)
	c := cc.nodes[0].newClient("carol")
	c.on(cc, 0).open(ctx)
	c.on(cc, 1).subscribe(ctx, ceNumbers)
	tl := &ceTally{t: t, seen: map[int]int{}}
	tl.pollUntil(ctx, cc, c, 1, func() bool { return len(tl.events) > 0 })
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	closed := time.Now()
	if err := cc.nodes[0].bridge.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Nodes 1 and 2 only: node 0 is closed.
	for i := 1; len(tl.events) < 3; i++ {
		if ctx.Err() != nil {
			t.Fatalf("deadline: events %v", tl.events)
		}
		for _, ev := range c.on(cc, 1+i%2).poll(ctx, fmt.Sprintf("after=%d&timeout=2", tl.last)).events {
			tl.add(ev)
		}
	}
	want := []string{"connected", `disconnected:{"reason":"connection_lost","reconnect":true}`, "connected"}
	if fmt.Sprint(tl.events) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", tl.events, want)
	}
	if d := time.Since(closed); d > 3*time.Second {
		t.Logf("takeover after Close took %v (the lease is 3 s): not handed over at once?", d)
	}
	if err := cc.rails.Broadcast(ctx, "numbers:s1", map[string]int{"n": 7}); err != nil {
		t.Fatal(err)
	}
	for tl.seen[7] == 0 {
		for _, ev := range c.on(cc, 2).poll(ctx, fmt.Sprintf("after=%d&timeout=2", tl.last)).events {
			tl.add(ev)
		}
	}
}

// TestCompatClusterPollQueueBound: the poll-queue bound holds on the
// store: the owner keeps at most that many events in Redis, the oldest
// going, and a long-poll on another node is told how many it will never
// get (dropped, counted from its after cursor).
func TestCompatClusterPollQueueBound(t *testing.T) {
	cc := newCECluster(t, time.Second)
	ctx := ceCtx(t, 60*time.Second)
	c := cc.nodes[0].newClient("dave")
	if p := c.on(cc, 0).poll(ctx, "timeout=0&poll-queue=3"); len(p.Messages) != 0 {
		t.Fatalf("open: %+v", p)
	}
	c.on(cc, 1).subscribe(ctx, ceNumbers)
	tl := &ceTally{t: t, seen: map[int]int{}}
	tl.pollUntil(ctx, cc, c, 2, func() bool { return len(tl.events) > 0 })
	msgs := make([]any, 10)
	for n := range msgs {
		msgs[n] = map[string]int{"n": n}
	}
	if err := cc.rails.BroadcastMany(ctx, "numbers:s1", msgs); err != nil {
		t.Fatal(err)
	}
	rdb := cc.stores[1].Client()
	key := "cableway:{compat:" + c.id + "}:"
	if err := waitCE(ctx, func() bool {
		n, _ := rdb.HGet(ctx, key+"m", "n").Uint64()
		return n >= tl.last+1+10
	}); err != nil {
		t.Fatal("the ten events never reached the log")
	}
	if held, err := rdb.LLen(ctx, key+"s").Result(); err != nil || held > 3 {
		t.Fatalf("%d events held in Redis (%v), want at most 3", held, err)
	}
	p := c.on(cc, 2).poll(ctx, fmt.Sprintf("after=%d&timeout=0", tl.last))
	got := map[int]bool{}
	for _, ev := range p.events {
		got[ev.number()] = ev.number() >= 0
	}
	// Rails may deliver a burst out of order: the last three delivered.
	if len(p.events) != 3 || len(got) != 3 || got[-1] || p.Dropped != 7 || p.QueueLength != 0 {
		t.Fatalf("poll after the burst: %d events (numbers %v), dropped %d, queue_length %d; want 3 numbers, 7 dropped, 0 queued",
			len(p.events), got, p.Dropped, p.QueueLength)
	}
	if first := p.events[0].msgID(); first != tl.last+8 {
		t.Fatalf("first msg_id %d, want %d: msg_ids count the dropped events too", first, tl.last+8)
	}
}
