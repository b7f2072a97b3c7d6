//go:build unix

package fallback_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/sdk/transport/longpoll"
)

// confBlackHoledWS: WebSockets are black-holed (the proxy accepts, passes
// the request on to a server that never answers): the direct one to Rails
// and the bridge's re-attach alike. Event streams and polls pass.
// BLACKHOLE is replaced by the black hole's address.
const confBlackHoledWS = `
    location /cable { proxy_pass http://BLACKHOLE; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; proxy_read_timeout 300s; }
    location ~ ^/bridge/sessions/[^/]+/ws$ { proxy_pass http://BLACKHOLE; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; proxy_read_timeout 300s; }
    location /bridge/ { proxy_pass http://127.0.0.1:%[2]d/; proxy_http_version 1.1; proxy_set_header Host $http_host;
      proxy_set_header Upgrade ""; proxy_set_header Connection "";
      proxy_buffering off; proxy_read_timeout 120s; }`

// blackHole accepts TCP connections and never answers; it counts them.
type blackHole struct {
	l        net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted chan struct{} // one value per connection, dropped when full
}

func newBlackHole(t testing.TB) *blackHole {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{l: l, accepted: make(chan struct{}, 1024)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			select {
			case b.accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
	})
	return b
}

func (b *blackHole) addr() string { return b.l.Addr().String() }

// soakDuration is how long each numbered stream runs: short in make test,
// CABLEWAY_SOAK_SECONDS=60 for the figures in the README.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("CABLEWAY_SOAK_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("CABLEWAY_SOAK_SECONDS=%q", v)
		}
		return time.Duration(n) * time.Second
	}
	return 10 * time.Second
}

// numbered is a consumer subscribed to a numbered stream, and what it has
// received.
type numbered struct {
	t       *testing.T
	p       *proxied
	c       *cable.Consumer
	stream  string
	sent    int
	changes chan fallback.Change

	mu          sync.Mutex
	seen        map[int]int
	got         chan struct{} // a value per message, dropped when full
	maxGap      time.Duration
	last        time.Time
	disconnects []cable.Event
}

func newNumbered(t *testing.T, ctx context.Context, p *proxied, wsURL string, tr *fallback.Transport, changes chan fallback.Change, stream string) *numbered {
	n := &numbered{t: t, p: p, stream: stream, changes: changes, seen: map[int]int{}, got: make(chan struct{}, 1)}
	c, err := cable.Dial(ctx, wsURL, cable.WithTransport(tr),
		cable.WithHeader("Authorization", "Bearer secret-alice"),
		cable.WithEventHandler(func(e cable.Event) {
			if e.Kind == cable.EventDisconnected {
				n.mu.Lock()
				n.disconnects = append(n.disconnects, e)
				n.mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	n.c = c
	sub, err := c.Subscribe(ctx, protocol.MustIdentifier("NumbersChannel", "stream", stream), cable.WithBuffer(1<<16))
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	go func() {
		for m := range sub.Messages() {
			var v struct{ N int }
			if err := m.Decode(&v); err != nil {
				t.Errorf("decode %v: %v", m, err)
				continue
			}
			now := time.Now()
			n.mu.Lock()
			n.seen[v.N]++
			if !n.last.IsZero() && now.Sub(n.last) > n.maxGap {
				n.maxGap = now.Sub(n.last)
			}
			n.last = now
			n.mu.Unlock()
			select {
			case n.got <- struct{}{}:
			default:
			}
		}
	}()
	return n
}

// broadcast sends rate messages a second for d, numbered on from
// n.sent, in batches every 100 ms.
func (n *numbered) broadcast(ctx context.Context, rate int, d time.Duration) {
	n.t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		batch := make([]any, 0, rate/10)
		for range rate / 10 {
			batch = append(batch, map[string]any{"n": n.sent, "pad": strings.Repeat("x", 64)})
			n.sent++
		}
		if err := n.p.rails.BroadcastMany(ctx, "numbers:"+n.stream, batch); err != nil {
			n.t.Fatalf("broadcast: %v", err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			n.t.Fatal("deadline while streaming")
		}
	}
}

// waitAll waits until every message sent has arrived, and then checks
// that each arrived once and the connection never dropped.
func (n *numbered) waitAll(ctx context.Context) {
	n.t.Helper()
	for {
		n.mu.Lock()
		have := len(n.seen)
		n.mu.Unlock()
		if have >= n.sent {
			break
		}
		select {
		case <-n.got:
		case <-ctx.Done():
			n.mu.Lock()
			drops := n.disconnects
			n.mu.Unlock()
			n.t.Fatalf("%d of %d messages arrived before the deadline (lost: %s); disconnects: %v", have, n.sent, n.missing(), drops)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for v, k := range n.seen {
		if k != 1 {
			n.t.Errorf("message %d arrived %d times", v, k)
		}
		if v < 0 || v >= n.sent {
			n.t.Errorf("unexpected message %d", v)
		}
	}
	if len(n.disconnects) != 0 || n.c.Stats().Reconnects != 0 {
		n.t.Errorf("the connection dropped (a stale reconnect): %v", n.disconnects)
	}
}

func (n *numbered) missing() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for i := 0; i < n.sent && len(out) < 10; i++ {
		if n.seen[i] == 0 {
			out = append(out, strconv.Itoa(i))
		}
	}
	return strings.Join(out, " ")
}

// drainChanges logs the transport changes seen so far and returns the
// latest transport (or last if none).
func drainChanges(t *testing.T, changes chan fallback.Change, last string) string {
	for {
		select {
		case ch := <-changes:
			t.Logf("transport change: %s → %s (upgrade %v, %v)", ch.From, ch.To, ch.Upgrade, ch.Reason)
			last = ch.To
		default:
			return last
		}
	}
}

// waitTransport waits until the connection is on want, streaming on.
func (n *numbered) waitTransport(ctx context.Context, want string) {
	n.t.Helper()
	for {
		if via := n.c.Transport(); via == want {
			return
		}
		select {
		case ch := <-n.changes:
			n.t.Logf("transport change: %s → %s (upgrade %v, %v)", ch.From, ch.To, ch.Upgrade, ch.Reason)
		case <-ctx.Done():
			n.t.Fatalf("still on %s, want %s", n.c.Transport(), want)
		}
	}
}

// TestObstaclesLoseNothing streams numbered messages (50 a second) through
// each obstacle a fallback exists for, with the upgrade probe every second
// and the probed path broken: the probe must cost the live connection
// nothing (no message lost or repeated, no stale reconnect). Then the proxy
// is fixed and the connection must climb to a WebSocket, again losing
// nothing.
func TestObstaclesLoseNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf string
		// what the connection may start on and must stay on while the
		// obstacle lasts (every better one is broken)
		on []string
	}{
		{"black-holed WebSocket", confBlackHoledWS, []string{"sse", "longpoll"}},
		{"buffering SSE proxy", confBuffered, []string{"longpoll"}},
		{"Upgrade stripped", confNoUpgrade, []string{"sse", "longpoll"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hole := newBlackHole(t)
			p := newProxied(t, strings.ReplaceAll(tc.conf, "BLACKHOLE", hole.addr()))
			d := soakDuration(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*d+90*time.Second)
			defer cancel()

			changes := make(chan fallback.Change, 256)
			tr := fallback.Bridged(p.nginx.URL("/bridge"),
				fallback.WithProbeInterval(time.Second),
				fallback.WithOnChange(func(c fallback.Change) {
					t.Logf("%s: transport change %s → %s (upgrade %v, %v)", time.Now().Format("15:04:05.000"), c.From, c.To, c.Upgrade, c.Reason)
					changes <- c
				}))
			n := newNumbered(t, ctx, p, p.nginx.WSURL("/cable"), tr, changes, strings.ReplaceAll(tc.name, " ", "-"))
			start := n.c.Transport()
			if !contains(tc.on, start) {
				t.Fatalf("connected via %s, want one of %v", start, tc.on)
			}
			n.broadcast(ctx, 50, d)
			n.waitAll(ctx)
			n.mu.Lock()
			t.Logf("%s: %d messages in %v, each once; no reconnect; started on %s, now on %s; longest gap between messages %v",
				tc.name, n.sent, d, start, n.c.Transport(), n.maxGap.Round(time.Millisecond))
			n.mu.Unlock()
			if via := drainChanges(t, changes, n.c.Transport()); !contains(tc.on, via) {
				t.Errorf("moved to %s through the obstacle", via)
			}

			// The proxy is fixed: the connection climbs to a WebSocket
			// while the stream goes on.
			p.reload(t, confOpen)
			done := make(chan struct{})
			go func() {
				defer close(done)
				n.broadcast(ctx, 50, 3*time.Second)
			}()
			n.waitTransport(ctx, "websocket")
			<-done
			n.broadcast(ctx, 50, time.Second)
			n.waitAll(ctx)
			t.Logf("%s fixed: climbed to a WebSocket; %d messages in all, each once", tc.name, n.sent)
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// byteCutter forwards TCP connections and cuts each one once it has passed
// limit bytes towards the client: a proxy that limits response sizes.
type byteCutter struct {
	l      net.Listener
	target string
	limit  int64
	cuts   sync.WaitGroup
}

func newByteCutter(t testing.TB, target string, limit int64) *byteCutter {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &byteCutter{l: l, target: target, limit: limit}
	var mu sync.Mutex
	var open []net.Conn
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			open = append(open, in, out)
			mu.Unlock()
			go copyConn(out, in)
			go func() {
				var passed int64
				buf := make([]byte, 4096)
				for passed < limit {
					n, err := out.Read(buf[:min(int64(len(buf)), limit-passed)])
					if n > 0 {
						if _, werr := in.Write(buf[:n]); werr != nil {
							break
						}
						passed += int64(n)
					}
					if err != nil {
						break
					}
				}
				in.Close()
				out.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	})
	return c
}

// TestLongPollThroughSizeLimitingProxy: a proxy cuts every connection after
// 30 KB, less than a full poll answer. Polls must shrink until they pass,
// and every message arrives once.
func TestLongPollThroughSizeLimitingProxy(t *testing.T) {
	p := newProxied(t, confNoUpgrade)
	cut := newByteCutter(t, fmt.Sprintf("127.0.0.1:%d", p.nginx.Port), 30<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	changes := make(chan fallback.Change, 64)
	tr := fallback.New([]transport.Transport{longpoll.New("http://" + cut.l.Addr().String() + "/bridge")},
		fallback.WithOnChange(func(c fallback.Change) { changes <- c }))
	n := newNumbered(t, ctx, p, "ws://"+cut.l.Addr().String()+"/cable", tr, changes, "size-limit")
	// Bursts of ~50 KB, more than passes in one connection: each must
	// arrive whole. (Each stays within the bridge's per-session queue.)
	for range 10 {
		batch := make([]any, 0, 200)
		for range 200 {
			batch = append(batch, map[string]any{"n": n.sent, "pad": strings.Repeat("x", 150)})
			n.sent++
		}
		if err := p.rails.BroadcastMany(ctx, "numbers:size-limit", batch); err != nil {
			t.Fatal(err)
		}
		n.waitAll(ctx)
	}
	t.Logf("%d messages through a proxy that cuts connections at 30 KB, each once", n.sent)
}
