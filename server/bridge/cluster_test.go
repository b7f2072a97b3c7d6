//go:build unix

package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/server/bridge"
	"github.com/cableway/cableway/server/session/redisstore"
)

// clusterEnv is Rails, one redis-server and three bridges sharing it, each
// on its own HTTP server: a test picks the node of each request, as a
// round-robin load balancer without stickiness would.
type clusterEnv struct {
	rails  *railstest.Server
	redis  *redistest.Server
	stores []*redisstore.Store
	nodes  []*env
}

func newClusterEnv(t *testing.T, lease time.Duration) *clusterEnv {
	t.Helper()
	ce := &clusterEnv{rails: railstest.Start(t), redis: redistest.Start(t)}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := redisstore.New(ctx, ce.redis.URL(0), redisstore.WithNode(fmt.Sprintf("n%d", i)), redisstore.WithLease(lease))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		b := bridge.New(ce.rails.CableURL(), bridge.WithSharedStore(st),
			bridge.WithUpstreamBackoff(backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}))
		srv := httptest.NewServer(b)
		ce.stores = append(ce.stores, st)
		ce.nodes = append(ce.nodes, &env{t: t, rails: ce.rails, bridge: b, srv: srv, client: client})
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for i, n := range ce.nodes {
			n.srv.Close()
			if err := n.bridge.Close(ctx); err != nil {
				t.Errorf("bridge %d Close: %v", i, err)
			}
			ce.stores[i].Close()
		}
	})
	return ce
}

// collect reads polled frames into numbers seen (counting duplicates).
type tally struct {
	seen   map[int]int
	dups   []int
	frames []string
}

func (tl *tally) add(t *testing.T, raw json.RawMessage) {
	f, err := parseFrame(raw)
	if err != nil {
		t.Fatal(err)
	}
	tl.frames = append(tl.frames, f.kind())
	if n := f.number(); n >= 0 {
		if tl.seen[n]++; tl.seen[n] > 1 {
			tl.dups = append(tl.dups, n)
		}
	}
}

// TestClusterAnyNodeServesAnySession: a session created on one node is
// read by long-poll on every node in turn and by SSE on another; its
// commands POSTed to nodes that do not own it reach the owner, and a
// repeated cseq is applied once; numbered broadcasts arrive once each.
func TestClusterAnyNodeServesAnySession(t *testing.T) {
	ce := newClusterEnv(t, time.Second)
	ctx := testCtx(t, 90*time.Second)
	n := ce.nodes
	s := n[0].create(ctx, "alice")
	stream := identifier("NumbersChannel", "stream", "cluster")

	// Subscribe through node 1 (not the owner): forwarded to node 0.
	if code, body := n[1].send(ctx, s, 1, cmd("subscribe", stream, "")); code != http.StatusOK || !strings.Contains(string(body), `"acked":1`) {
		t.Fatalf("send through a non-owner: %d %s", code, body)
	}
	// The same cseq again, through node 2: applied once, answered alike.
	if code, body := n[2].send(ctx, s, 1, cmd("subscribe", stream, "")); code != http.StatusOK || !strings.Contains(string(body), `"acked":1`) {
		t.Fatalf("repeated cseq: %d %s", code, body)
	}
	if code, body := n[2].send(ctx, s, 5, cmd("subscribe", stream, "")); code != http.StatusConflict || !strings.Contains(string(body), `"acked":1`) {
		t.Fatalf("cseq gap through a non-owner: %d %s", code, body)
	}
	var after uint64
	n[2].pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })

	const total = 60
	msgs := make([]any, total)
	for i := range msgs {
		msgs[i] = map[string]int{"n": i}
	}
	if err := ce.rails.BroadcastMany(ctx, "numbers:cluster", msgs); err != nil {
		t.Fatal(err)
	}
	tl := &tally{seen: map[int]int{}}
	for i := 0; len(tl.seen) < total/2; i++ { // half by long-poll, a node per request
		p := n[i%3].poll(ctx, s, after, "5")
		if p.Reset || p.Ended {
			t.Fatalf("poll on node %d: %+v", i%3, p)
		}
		after = p.Next
		for _, f := range p.Frames {
			if frameType(f) != "ping" {
				tl.add(t, f)
			}
		}
	}
	// The rest by SSE on node 1, from the long-poll's cursor.
	st, body, err := n[1].openSSE(ctx, s, http.Header{"Last-Event-ID": {fmt.Sprintf("%d:%d", s.Epoch, after)}}, nil)
	if err != nil {
		t.Fatalf("sse on a non-owner: %v %s", err, body)
	}
	defer st.Close()
	for len(tl.seen) < total {
		f, err := st.nextData(ctx)
		if err != nil {
			t.Fatalf("sse: %v (have %d of %d)", err, len(tl.seen), total)
		}
		if f.kind() != "ping" {
			tl.add(t, json.RawMessage(f.Raw))
		}
	}
	if len(tl.dups) > 0 {
		t.Fatalf("duplicated: %v", tl.dups)
	}
	for i := range total {
		if tl.seen[i] != 1 {
			t.Fatalf("number %d seen %d times", i, tl.seen[i])
		}
	}
	if st := n[1].bridge.Stats(); st.Forwarded < 1 || st.RemoteSessions != 1 {
		t.Errorf("node 1 stats: forwarded %d, remote sessions %d", st.Forwarded, st.RemoteSessions)
	}
	if st := n[0].bridge.Stats(); st.Sessions != 1 || st.Commands != 1 {
		t.Errorf("owner stats: sessions %d, commands %d (want 1 and 1: the repeat was not applied)", st.Sessions, st.Commands)
	}
}

// TestClusterTakeover: the owner's process loses Redis (as if it died:
// its lease lapses, its writes are refused); the node serving the
// session's long-poll takes it over and redials Rails; the client sees a
// new welcome, resubscribes through a third node, and gets the broadcasts
// that follow; nothing that was in the log is lost or repeated.
func TestClusterTakeover(t *testing.T) {
	ce := newClusterEnv(t, 600*time.Millisecond)
	ctx := testCtx(t, 90*time.Second)
	n := ce.nodes
	s := n[0].create(ctx, "bob")
	stream := identifier("NumbersChannel", "stream", "takeover")
	if code, body := n[1].send(ctx, s, 1, cmd("subscribe", stream, "")); code != http.StatusOK {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	var after uint64
	n[1].pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	msgs := []any{map[string]int{"n": 0}, map[string]int{"n": 1}, map[string]int{"n": 2}}
	if err := ce.rails.BroadcastMany(ctx, "numbers:takeover", msgs); err != nil {
		t.Fatal(err)
	}
	// Wait until the three are in the log (the owner appended them), then
	// kill the owner's store before the client read them.
	rdb := ce.stores[1].Client()
	if err := waitFor(ctx, "three frames in the log", func() bool {
		nx, _ := rdb.HGet(ctx, "cableway:{"+s.SID+"}:m", "n").Uint64()
		return nx >= after+4
	}); err != nil {
		t.Fatal(err)
	}
	ce.stores[0].Close()

	tl := &tally{seen: map[int]int{}}
	welcomed := false
	for i := 0; !welcomed; i++ {
		p := n[1+i%2].poll(ctx, s, after, "5")
		if p.Reset || p.Ended {
			t.Fatalf("poll: %+v (frames %v)", p, tl.frames)
		}
		after = p.Next
		for _, f := range p.Frames {
			switch frameType(f) {
			case "ping":
			case "welcome":
				welcomed = true
			default:
				tl.add(t, f)
			}
		}
	}
	for i := range 3 {
		if tl.seen[i] != 1 {
			t.Fatalf("frame %d of the log before the takeover seen %d times (frames %v)", i, tl.seen[i], tl.frames)
		}
	}
	// The consumer resubscribes after the new welcome, through node 2.
	if code, body := n[2].send(ctx, s, 2, cmd("subscribe", stream, "")); code != http.StatusOK {
		t.Fatalf("resubscribe: %d %s", code, body)
	}
	n[2].pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	if err := ce.rails.Broadcast(ctx, "numbers:takeover", map[string]int{"n": 3}); err != nil {
		t.Fatal(err)
	}
	f := n[1].pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "message" })
	tl.add(t, f)
	if tl.seen[3] != 1 || len(tl.dups) > 0 {
		t.Fatalf("after the takeover: seen %v, duplicates %v", tl.seen, tl.dups)
	}
	var takeovers uint64
	for _, nd := range n[1:] {
		takeovers += nd.bridge.Stats().Takeovers
	}
	if takeovers != 1 {
		t.Errorf("takeovers %d, want 1", takeovers)
	}
}

// TestClusterCloseHandsOver: a bridge that stops gracefully (Close, as on
// SIGTERM) gives its sessions to the others instead of ending them: the
// client long-polling another node gets no server_restart, but a new
// welcome, and its session goes on (its cseq too).
func TestClusterCloseHandsOver(t *testing.T) {
	ce := newClusterEnv(t, 3*time.Second) // a takeover sooner than the lease: the lease was given up
	ctx := testCtx(t, 60*time.Second)
	n := ce.nodes
	s := n[0].create(ctx, "carol")
	stream := identifier("NumbersChannel", "stream", "handover")
	if code, body := n[1].send(ctx, s, 1, cmd("subscribe", stream, "")); code != http.StatusOK {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	var after uint64
	n[1].pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n[0].bridge.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	f := n[1].pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) != "confirm_subscription" })
	if frameType(f) != "welcome" {
		t.Fatalf("after the owner's Close the client got %s, want a new welcome", f)
	}
	if code, body := n[2].send(ctx, s, 2, cmd("subscribe", stream, "")); code != http.StatusOK {
		t.Fatalf("resubscribe: %d %s", code, body)
	}
	n[1].pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	if st := n[0].bridge.Stats(); st.Sessions != 0 {
		t.Errorf("the closed bridge still counts %d sessions", st.Sessions)
	}
}

// TestClusterRedisGone: with Redis gone, a long-poll is answered 503
// store_unavailable (poll again at the cursor), not "ended"; an SSE stream
// ends without a reset event (the EventSource comes back at its
// Last-Event-ID); creation is refused with 503.
func TestClusterRedisGone(t *testing.T) {
	// go-redis redials a dead server on a goroutine that notices its
	// client's Close within a second: wait for it (this cleanup runs
	// last), so that the package's leak check sees none.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		waitFor(ctx, "go-redis's redial goroutines to end", func() bool {
			buf := make([]byte, 1<<20)
			return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "pool.(*ConnPool).tryDial")
		})
	})
	ce := newClusterEnv(t, time.Second)
	ctx := testCtx(t, 60*time.Second)
	n := ce.nodes
	s := n[0].create(ctx, "dave")
	var after uint64
	n[1].pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "welcome" })
	st, body, err := n[2].openSSE(ctx, s, nil, url.Values{"after": {fmt.Sprint(after)}})
	if err != nil {
		t.Fatalf("sse: %v %s", err, body)
	}
	defer st.Close()
	ce.redis.Kill()
	resp, body := n[1].do(ctx, "GET", fmt.Sprintf("/sessions/%s/poll?token=%s&after=%d&timeout=0", s.SID, s.Token, after), nil, "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "store_unavailable") {
		t.Fatalf("poll with Redis gone: %d %s", resp.StatusCode, body)
	}
	resp, body = n[1].do(ctx, "POST", "/sessions", http.Header{"Authorization": {"Bearer secret-dave"}}, "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "store_unavailable") {
		t.Fatalf("create with Redis gone: %d %s", resp.StatusCode, body)
	}
	// The SSE stream: the owner's next frame (a Rails ping, every 3 s)
	// fails to be stored; the stream's reader fails and the stream ends,
	// with no reset event.
	for {
		f, err := st.nextData(ctx)
		if err == nil {
			if f.kind() != "ping" {
				t.Fatalf("frame %v with Redis gone", f)
			}
			continue
		}
		if errors.Is(err, errSSEReset) || ctx.Err() != nil {
			t.Fatalf("SSE with Redis gone: %v, want the stream to end without a reset", err)
		}
		break
	}
}
