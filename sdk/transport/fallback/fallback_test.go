//go:build unix

package fallback_test

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
	"github.com/cableway/cableway/server/bridge"
)

// stack is Rails with a bridge in front.
type stack struct {
	rails  *railstest.Server
	bridge string // base URL
}

func newStack(t *testing.T) *stack {
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
	return &stack{rails: rails, bridge: srv.URL}
}

// refusedURL is a WebSocket URL where nothing listens.
func refusedURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ws://" + addr + "/cable"
}

// blackHoleURL accepts TCP connections and never answers.
func blackHoleURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "ws://" + l.Addr().String() + "/cable"
}

type recorder struct {
	mu      sync.Mutex
	changes []fallback.Change
	events  chan cable.Event
}

func (r *recorder) onChange(c fallback.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

// roundTrip subscribes, performs and receives through c.
func roundTrip(t *testing.T, ctx context.Context, c *cable.Consumer, room string) {
	t.Helper()
	sub, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel", "room", room))
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := sub.Perform(ctx, "speak", map[string]string{"text": "over " + room}); err != nil {
		t.Fatalf("Perform: %v", err)
	}
	select {
	case m := <-sub.Messages():
		var line struct{ User, Text string }
		if err := m.Decode(&line); err != nil || line.Text != "over "+room || line.User != "alice" {
			t.Fatalf("got %v (%v)", m, err)
		}
	case <-ctx.Done():
		t.Fatal("no broadcast")
	}
}

func dial(t *testing.T, ctx context.Context, url string, tr transport.Transport) (*cable.Consumer, chan cable.Event) {
	t.Helper()
	events := make(chan cable.Event, 64)
	c, err := cable.Dial(ctx, url, cable.WithTransport(tr),
		cable.WithHeader("Authorization", "Bearer secret-alice"),
		cable.WithEventHandler(func(e cable.Event) { events <- e }))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, events
}

func connectedVia(t *testing.T, events chan cable.Event) string {
	t.Helper()
	for e := range events {
		if e.Kind == cable.EventConnected {
			return e.Transport
		}
	}
	return ""
}

func TestRefusedWebSocketFallsBackToSSE(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rec recorder
	start := time.Now()
	c, events := dial(t, ctx, refusedURL(t), fallback.Bridged(s.bridge, fallback.WithOnChange(rec.onChange)))
	t.Logf("refused → open in %v", time.Since(start))
	if via := connectedVia(t, events); via != "sse" {
		t.Fatalf("connected via %q, want sse", via)
	}
	roundTrip(t, ctx, c, "refused")
}

// TestBlackHoledWebSocketFallsBackToSSE: a WebSocket that hangs gives way
// to the bridge within the deadline; which bridge transport wins the race
// depends on the machine's load, but the change says the WebSocket hung,
// and the probe then climbs to the best that works here: a WebSocket to
// the bridge (only the one to Rails is black-holed).
func TestBlackHoledWebSocketFallsBackToSSE(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	changes := make(chan fallback.Change, 16)
	c, events := dial(t, ctx, blackHoleURL(t), fallback.Bridged(s.bridge,
		fallback.WithProbeInterval(200*time.Millisecond),
		fallback.WithOnChange(func(ch fallback.Change) { changes <- ch })))
	t.Logf("black hole → open in %v", time.Since(start))
	if via := connectedVia(t, events); via != "sse" && via != "longpoll" {
		t.Fatalf("connected via %q, want the bridge", via)
	}
	ch := <-changes
	if ch.From != "websocket" || ch.Reason == nil || !strings.Contains(ch.Reason.Error(), "websocket: no welcome within") {
		t.Fatalf("change %+v, want from websocket, saying that it hung", ch)
	}
	for c.Transport() != "websocket" {
		select {
		case ch := <-changes:
			t.Logf("then %s → %s", ch.From, ch.To)
		case <-ctx.Done():
			t.Fatalf("still on %s, want the probe to reach a WebSocket", c.Transport())
		}
	}
	roundTrip(t, ctx, c, "blackhole")
}

func TestLongPollOnly(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, events := dial(t, ctx, "ws://unused.invalid/cable", fallback.New([]transport.Transport{longpoll.New(s.bridge)}))
	if via := connectedVia(t, events); via != "longpoll" {
		t.Fatalf("connected via %q, want longpoll", via)
	}
	roundTrip(t, ctx, c, "poll")
}

func TestSSEOnly(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _ := dial(t, ctx, "ws://unused.invalid/cable", sse.New(s.bridge))
	roundTrip(t, ctx, c, "sse")
}

func TestBridgedReportsTransportChange(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	events := make(chan cable.Event, 64)
	c, err := cable.Dial(ctx, refusedURL(t), cable.WithTransport(fallback.Bridged(s.bridge)),
		cable.WithHeader("Authorization", "Bearer secret-alice"),
		cable.WithEventHandler(func(e cable.Event) { events <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for e := range events {
		if e.Kind == cable.EventConnected {
			t.Fatalf("connected (%v) before the transport change was reported", e)
		}
		if e.Kind == cable.EventTransportChanged {
			if e.From != "websocket" || e.Transport != "sse" || e.Err == nil {
				t.Fatalf("change event %v, want websocket → sse with the refusal as reason", e)
			}
			if msg := e.Err.Error(); strings.Contains(msg, "websocket: websocket:") || !strings.HasPrefix(msg, "websocket: ") {
				t.Fatalf("reason %q, want it named once", msg)
			}
			break
		}
	}
	if e := <-events; e.Kind != cable.EventConnected || e.Transport != "sse" {
		t.Fatalf("then %v, want connected via sse", e)
	}
	roundTrip(t, ctx, c, "events")
}
