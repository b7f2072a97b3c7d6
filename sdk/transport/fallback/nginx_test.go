//go:build unix

package fallback_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/nginxtest"
	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/server/bridge"
)

// Proxy configurations: location blocks for nginx in front of Rails
// (/cable) and the bridge (/bridge/).
const (
	// Upgrade headers pass: WebSockets work.
	confOpen = `
    location /cable { proxy_pass http://127.0.0.1:%[1]d; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; proxy_set_header Host $http_host; }
    location /bridge/ { proxy_pass http://127.0.0.1:%[2]d/; proxy_http_version 1.1; proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $http_connection;
      proxy_buffering off; proxy_read_timeout 120s; }`
	// (a) A proxy that strips Upgrade: every WebSocket is refused.
	confNoUpgrade = `
    location /cable { proxy_pass http://127.0.0.1:%[1]d; proxy_http_version 1.1;
      proxy_set_header Upgrade ""; proxy_set_header Connection ""; proxy_set_header Host $http_host; }
    location /bridge/ { proxy_pass http://127.0.0.1:%[2]d/; proxy_http_version 1.1; proxy_set_header Host $http_host;
      proxy_set_header Upgrade ""; proxy_set_header Connection "";
      proxy_buffering off; proxy_read_timeout 120s; }`
	// (c) No WebSockets, and event streams held back: buffering on whatever
	// X-Accel-Buffering says, and gzip, whose buffers release nothing
	// until they fill or the response ends (a classic event-stream killer).
	confBuffered = `
    location /cable { proxy_pass http://127.0.0.1:%[1]d; proxy_http_version 1.1;
      proxy_set_header Upgrade ""; proxy_set_header Connection ""; proxy_set_header Host $http_host; }
    location /bridge/ { proxy_pass http://127.0.0.1:%[2]d/; proxy_http_version 1.1; proxy_set_header Host $http_host;
      proxy_set_header Upgrade ""; proxy_set_header Connection "";
      proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;
      proxy_buffer_size 64k; proxy_buffers 8 64k; proxy_busy_buffers_size 128k;
      gzip on; gzip_types text/event-stream; gzip_min_length 1; gzip_proxied any;
      proxy_read_timeout 120s; }`
)

// proxied is Rails and a bridge behind nginx.
type proxied struct {
	*stack
	nginx      *nginxtest.Server
	railsPort  int
	bridgePort int
}

func newProxied(t testing.TB, conf string) *proxied {
	t.Helper()
	rails := railstest.Start(t)
	b := bridge.New(rails.CableURL())
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	p := &proxied{stack: &stack{rails: rails, bridge: srv.URL}, railsPort: rails.Port(), bridgePort: srv.Listener.Addr().(*net.TCPAddr).Port}
	p.nginx = nginxtest.Start(t, fmt.Sprintf(conf, p.railsPort, p.bridgePort))
	return p
}

func (p *proxied) reload(t testing.TB, conf string) {
	p.nginx = p.nginx.Reload(t, fmt.Sprintf(conf, p.railsPort, p.bridgePort))
}

func TestNginxStripsUpgrade(t *testing.T) {
	p := newProxied(t, confNoUpgrade)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	c, events := dial(t, ctx, p.nginx.WSURL("/cable"), fallback.Bridged(p.nginx.URL("/bridge"), fallback.WithProbeInterval(-1)))
	t.Logf("upgrade stripped → open in %v", time.Since(start))
	if via := connectedVia(t, events); via != "sse" {
		t.Fatalf("connected via %q, want sse", via)
	}
	roundTrip(t, ctx, c, "stripped")
}

func TestNginxBuffersEventStream(t *testing.T) {
	p := newProxied(t, confBuffered)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	c, events := dial(t, ctx, p.nginx.WSURL("/cable"), fallback.Bridged(p.nginx.URL("/bridge"), fallback.WithProbeInterval(-1)))
	t.Logf("buffered SSE → open in %v", time.Since(start))
	if via := connectedVia(t, events); via != "longpoll" {
		t.Fatalf("connected via %q, want longpoll", via)
	}
	roundTrip(t, ctx, c, "buffered")
}

func TestNginxOpenUsesWebSocket(t *testing.T) {
	p := newProxied(t, confOpen)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, events := dial(t, ctx, p.nginx.WSURL("/cable"), fallback.Bridged(p.nginx.URL("/bridge")))
	if via := connectedVia(t, events); via != "websocket" {
		t.Fatalf("connected via %q, want websocket", via)
	}
	roundTrip(t, ctx, c, "open")
}

// cutter is a TCP forwarder whose connections can all be cut at once.
type cutter struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func newCutter(t testing.TB, target string) *cutter {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{l: l, target: target, conns: map[net.Conn]bool{}}
	go c.serve()
	t.Cleanup(func() { l.Close(); c.cut() })
	return c
}

func (c *cutter) addr() string { return c.l.Addr().String() }

func (c *cutter) serve() {
	for {
		in, err := c.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			in.Close()
			continue
		}
		c.mu.Lock()
		c.conns[in], c.conns[out] = true, true
		c.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

// cut closes every connection open now (the TCP connections simply die).
func (c *cutter) cut() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.conns)
	for conn := range c.conns {
		conn.Close()
	}
	c.conns = map[net.Conn]bool{}
	return n / 2
}

// TestNumberedStreamSurvivesCutsAndReturnsToWebSocket streams numbered
// messages from Rails while the client's connections are cut twice on SSE,
// and then WebSockets are allowed again: the probe moves the connection
// back to a WebSocket. Every message arrives exactly once.
func TestNumberedStreamSurvivesCutsAndReturnsToWebSocket(t *testing.T) {
	p := newProxied(t, confNoUpgrade)
	cut := newCutter(t, fmt.Sprintf("127.0.0.1:%d", p.nginx.Port))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	changes := make(chan fallback.Change, 16)
	tr := fallback.Bridged("http://"+cut.addr()+"/bridge",
		fallback.WithProbeInterval(300*time.Millisecond), fallback.WithHeadStart(300*time.Millisecond),
		fallback.WithOnChange(func(c fallback.Change) { changes <- c }))
	c, events := dial(t, ctx, "ws://"+cut.addr()+"/cable", tr)
	if via := connectedVia(t, events); via != "sse" {
		t.Fatalf("connected via %q, want sse", via)
	}
	sub, err := c.Subscribe(ctx, protocol.MustIdentifier("NumbersChannel", "stream", "cuts"), cable.WithBuffer(4096))
	if err != nil {
		t.Fatal(err)
	}

	const total = 600
	seen := make(map[int]int, total)
	received := make(chan int, total)
	go func() {
		for m := range sub.Messages() {
			var v struct{ N int }
			if m.Decode(&v) == nil {
				received <- v.N
			}
		}
	}()
	waitFor := func(n int) {
		t.Helper()
		for len(seen) < n {
			select {
			case v := <-received:
				seen[v]++
			case <-ctx.Done():
				t.Fatalf("only %d of %d messages before the deadline", len(seen), n)
			}
		}
	}
	broadcast := func(from, to int) {
		t.Helper()
		for i := from; i < to; i += 25 {
			batch := make([]any, 0, 25)
			for j := i; j < min(i+25, to); j++ {
				batch = append(batch, map[string]int{"n": j})
			}
			if err := p.rails.BroadcastMany(ctx, "numbers:cuts", batch); err != nil {
				t.Fatal(err)
			}
		}
	}

	broadcast(0, 200)
	waitFor(100)
	t.Logf("cut %d connections mid-stream", cut.cut())
	broadcast(200, 300)
	waitFor(250)
	t.Logf("cut %d connections mid-stream", cut.cut())
	broadcast(300, 400)
	waitFor(400)

	// WebSockets pass again: the probe re-attaches the session over one.
	p.reload(t, confOpen)
	broadcast(400, total)
	deadline := time.After(20 * time.Second)
	for back := false; !back; {
		select {
		case ch := <-changes:
			t.Logf("transport change: %s → %s (%v)", ch.From, ch.To, ch.Reason)
			back = ch.To == "websocket"
		case v := <-received:
			seen[v]++
		case <-deadline:
			t.Fatal("did not move back to a WebSocket")
		}
	}
	broadcast(total, total+50)
	waitFor(total + 50)

	for n, k := range seen {
		if k != 1 {
			t.Errorf("message %d arrived %d times", n, k)
		}
		if n < 0 || n >= total+50 {
			t.Errorf("unexpected message %d", n)
		}
	}
	if d := sub.Dropped(); d != 0 {
		t.Errorf("%d dropped", d)
	}
	if st := c.Stats(); st.DecodeErrors != 0 {
		t.Errorf("decode errors: %+v", st)
	}
}
