//go:build unix

package fallback_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
)

// waitEvent waits for the first event of kind.
func waitEvent(t *testing.T, ctx context.Context, events chan cable.Event, kind cable.EventKind) cable.Event {
	t.Helper()
	for {
		select {
		case e := <-events:
			if e.Kind == kind {
				return e
			}
		case <-ctx.Done():
			t.Fatalf("no %v event before the deadline", kind)
		}
	}
}

// TestPerformDuringUpstreamGap: Rails dies under a consumer that reaches
// it through the bridge. As with a direct WebSocket, the consumer learns of
// it as a disconnect, Perform fails at once with ErrNotConnected (never nil
// for an action that went nowhere), and once Rails is back the consumer
// resubscribes and actions work again.
func TestPerformDuringUpstreamGap(t *testing.T) {
	for _, tr := range []struct {
		name string
		tr   func(bridge string) transport.Transport
	}{
		{"sse", func(b string) transport.Transport { return sse.New(b) }},
		{"longpoll", func(b string) transport.Transport { return longpoll.New(b) }},
	} {
		t.Run(tr.name, func(t *testing.T) {
			s := newStack(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, events := dial(t, ctx, "ws://unused.invalid/cable", tr.tr(s.bridge))
			sub, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel", "room", "gap"))
			if err != nil {
				t.Fatal(err)
			}

			s.rails.Kill()
			e := waitEvent(t, ctx, events, cable.EventDisconnected)
			t.Logf("disconnected: %v", e.Err)
			if !e.WillReconnect {
				t.Errorf("disconnect %v says it will not reconnect", e)
			}
			if c.Connected() || sub.Confirmed() {
				t.Errorf("after the upstream gap: Connected %v, Confirmed %v; want both false", c.Connected(), sub.Confirmed())
			}
			if err := sub.Perform(ctx, "speak", map[string]string{"text": "into the gap"}); !errors.Is(err, cable.ErrNotConnected) {
				t.Fatalf("Perform during the gap = %v, want ErrNotConnected", err)
			}

			s.rails.Restart(t)
			waitEvent(t, ctx, events, cable.EventConnected)
			for !sub.Confirmed() {
				select {
				case <-ctx.Done():
					t.Fatal("not resubscribed after Rails came back")
				case <-time.After(20 * time.Millisecond):
				}
			}
			if err := sub.Perform(ctx, "speak", map[string]string{"text": "after the gap"}); err != nil {
				t.Fatalf("Perform after the gap: %v", err)
			}
			for {
				select {
				case m := <-sub.Messages():
					var line struct{ Text string }
					m.Decode(&line)
					if line.Text == "after the gap" {
						return
					}
					if line.Text == "into the gap" {
						t.Fatal("the action Perform refused reached Rails")
					}
				case <-ctx.Done():
					t.Fatal("the action after the gap never came back")
				}
			}
		})
	}
}

// switchable is a TCP forwarder whose new connections can be passed,
// black-holed or refused, and whose open ones can be cut.
type switchable struct {
	l      net.Listener
	target string
	held   chan struct{} // a value per black-holed connection, dropped when full
	mu     sync.Mutex
	mode   string // "pass", "hole", "refuse"
	conns  []net.Conn
}

func newSwitchable(t testing.TB, target string) *switchable {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &switchable{l: l, target: target, mode: "pass", held: make(chan struct{}, 64)}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			mode := s.mode
			s.conns = append(s.conns, in)
			s.mu.Unlock()
			switch mode {
			case "refuse":
				in.(*net.TCPConn).SetLinger(0)
				in.Close()
				continue
			case "hole":
				select {
				case s.held <- struct{}{}:
				default:
				}
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, out)
			s.mu.Unlock()
			go func() { copyConn(out, in) }()
			go func() { copyConn(in, out) }()
		}
	}()
	t.Cleanup(func() { l.Close(); s.set("pass", true) })
	return s
}

func copyConn(dst, src net.Conn) {
	buf := make([]byte, 8192)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// set changes the mode of new connections and, with cut, closes the open
// ones.
func (s *switchable) set(mode string, cut bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
	if cut {
		for _, c := range s.conns {
			c.Close()
		}
		s.conns = nil
	}
}

// waitHeld waits until n connections have been black-holed since the
// last call.
func waitHeld(t *testing.T, ctx context.Context, sw *switchable, n int) {
	t.Helper()
	for range n {
		select {
		case <-sw.held:
		case <-ctx.Done():
			t.Fatalf("fewer than %d connections reached the black hole", n)
		}
	}
}

// TestCloseReturnsPromptlyInEveryState closes a bridged consumer while it
// dials, races, waits to reconnect, and probes a black-holed WebSocket:
// Close must return within its bound (a couple of seconds for the polite
// goodbyes) whatever the network does.
func TestCloseReturnsPromptlyInEveryState(t *testing.T) {
	const bound = 5 * time.Second // documented: about 2 s; generous for a loaded machine
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, ctx context.Context, net *switchable, hole *blackHole, c *cable.Consumer, events chan cable.Event)
	}{
		{"connected", func(*testing.T, context.Context, *switchable, *blackHole, *cable.Consumer, chan cable.Event) {}},
		{"dialling", func(t *testing.T, ctx context.Context, sw *switchable, _ *blackHole, _ *cable.Consumer, events chan cable.Event) {
			sw.set("hole", true) // every new connection hangs
			waitEvent(t, ctx, events, cable.EventDisconnected)
			waitHeld(t, ctx, sw, 1) // the first attempt hangs
		}},
		{"racing", func(t *testing.T, ctx context.Context, sw *switchable, _ *blackHole, _ *cable.Consumer, events chan cable.Event) {
			sw.set("hole", true)
			waitEvent(t, ctx, events, cable.EventDisconnected)
			waitHeld(t, ctx, sw, 3) // every transport launched, all hanging
		}},
		{"reconnecting", func(t *testing.T, ctx context.Context, sw *switchable, _ *blackHole, _ *cable.Consumer, events chan cable.Event) {
			sw.set("refuse", true) // refused at once: the consumer waits between attempts
			waitEvent(t, ctx, events, cable.EventReconnecting)
			waitEvent(t, ctx, events, cable.EventReconnecting)
		}},
		{"probing", func(t *testing.T, ctx context.Context, _ *switchable, hole *blackHole, _ *cable.Consumer, _ chan cable.Event) {
			for len(hole.accepted) > 0 { // the dial's own WebSocket attempt
				<-hole.accepted
			}
			select { // a probe's WebSocket is in the black hole
			case <-hole.accepted:
			case <-ctx.Done():
				t.Fatal("no probe reached the black hole")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hole := newBlackHole(t)
			p := newProxied(t, strings.ReplaceAll(confBlackHoledWS, "BLACKHOLE", hole.addr()))
			sw := newSwitchable(t, fmt.Sprintf("127.0.0.1:%d", p.nginx.Port))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			events := make(chan cable.Event, 256)
			c, err := cable.Dial(ctx, "ws://"+sw.l.Addr().String()+"/cable",
				cable.WithTransport(fallback.Bridged("http://"+sw.l.Addr().String()+"/bridge",
					fallback.WithProbeInterval(200*time.Millisecond))),
				cable.WithHeader("Authorization", "Bearer secret-alice"),
				cable.WithBackoff(backoff.Policy{Min: 2 * time.Second, Max: 4 * time.Second}),
				cable.WithEventHandler(func(e cable.Event) {
					select {
					case events <- e:
					default:
					}
				}))
			if err != nil {
				t.Fatal(err)
			}
			tc.setup(t, ctx, sw, hole, c, events)
			start := time.Now()
			c.Close()
			took := time.Since(start)
			t.Logf("Close while %s took %v", tc.name, took.Round(time.Millisecond))
			if took > bound {
				t.Errorf("Close while %s took %v, more than %v", tc.name, took, bound)
			}
			if !errors.Is(c.Err(), cable.ErrClosed) {
				t.Errorf("Err after Close = %v", c.Err())
			}
		})
	}
}
