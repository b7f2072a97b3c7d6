package cable_test

// Tests of promises the package documentation makes that the code once
// broke (issue 14): a done context fails one call, never the shared
// connection; Close from a frame hook returns; Send takes action-less
// data; dial errors name no credentials.

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

func TestDoneContextFailsOnlyThatCall(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	sc := r.conn()
	s := r.subscribe(c, lobby)
	other := r.subscribe(c, kitchen)

	cancelled, cancel := context.WithCancel(r.ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(r.ctx, time.Now().Add(-time.Second))
	defer cancel2()
	calls := []struct {
		name string
		call func() error
		want error
	}{
		{"Perform cancelled", func() error { return s.Perform(cancelled, "speak", text{"lost"}) }, context.Canceled},
		{"Send cancelled", func() error { return s.Send(cancelled, map[string]string{"action": "speak"}) }, context.Canceled},
		{"Perform past its deadline", func() error { return other.Perform(expired, "speak", nil) }, context.DeadlineExceeded},
		{"SendCommand cancelled", func() error {
			return c.SendCommand(cancelled, &protocol.Command{Command: protocol.CommandMessage, Identifier: lobby, Data: `{"action":"x"}`})
		}, context.Canceled},
	}
	for _, tc := range calls {
		if err := tc.call(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The connection is the one it was: still up, nothing lost, and the
	// next call with a live context goes through on it.
	if err := s.Perform(r.ctx, "speak", text{"kept"}); err != nil {
		t.Fatalf("Perform after the cancelled calls: %v", err)
	}
	cmd := r.command(protocol.CommandMessage, lobby)
	if cmd.Conn != sc || !strings.Contains(cmd.Data, `"kept"`) {
		t.Fatalf("first command after the cancelled calls: %+v on conn %d", cmd.Command, cmd.Conn.ID())
	}
	if !c.Connected() || r.srv.Handshakes() != 1 {
		t.Errorf("Connected() = %v after %d handshakes, want the first connection kept", c.Connected(), r.srv.Handshakes())
	}
	r.broadcast(sc, kitchen, text{"still here"})
	if got := r.receiveText(other); got != "still here" {
		t.Errorf("kitchen got %q", got)
	}
	select {
	case <-sc.Done():
		t.Fatal("the server's connection closed")
	default:
	}
}

func TestCloseFromFrameHook(t *testing.T) {
	r := newRig(t)
	var consumer atomic.Pointer[cable.Consumer]
	closed := make(chan error, 1)
	c := r.dial(cable.WithFrameHook(func(f cable.Frame) {
		if f.Message.Type != protocol.TypeMessage {
			return
		}
		if c := consumer.Load(); c != nil && consumer.CompareAndSwap(c, nil) {
			closed <- c.Close() // must return: the hook runs on the goroutine Close stops
		}
	}))
	consumer.Store(c)
	sc := r.conn()
	s := r.subscribe(c, lobby)
	r.broadcast(sc, lobby, text{"bye"})
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close from the hook: %v", err)
		}
	case <-r.ctx.Done():
		t.Fatal("Close called from the frame hook did not return")
	}
	r.wait(c.Done(), "consumer stopped")
	r.wait(s.Done(), "subscription ended")
	if !errors.Is(c.Err(), cable.ErrClosed) || !errors.Is(s.Err(), cable.ErrClosed) {
		t.Errorf("Err() = %v, subscription %v; want ErrClosed", c.Err(), s.Err())
	}
	r.wait(sc.Done(), "server connection closed")
	// Close from elsewhere, after, waits as usual and returns.
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Send's data need not name an action (Rails hands it to the channel's
// receive): it goes out as given, with no "action" added.
func TestSendWithoutAction(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	r.conn()
	s := r.subscribe(c, lobby)
	if err := s.Send(r.ctx, map[string]string{"text": "to receive"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if cmd := r.command(protocol.CommandMessage, lobby); cmd.Data != `{"text":"to receive"}` {
		t.Errorf("data sent = %s", cmd.Data)
	}
}

func TestDialErrorNamesNoSecret(t *testing.T) {
	r := newRig(t)
	// A port nothing listens on: every attempt is refused until ctx ends.
	url := strings.Replace(r.srv.URL, "ws://", "ws://alice:s3cret-pass@", 1)
	r.srv.Close()
	ctx, cancel := context.WithTimeout(r.ctx, 300*time.Millisecond)
	defer cancel()
	_, err := cable.Dial(ctx, url+"?token=s3cret-token#s3cret-frag", r.options()...)
	if err == nil {
		t.Fatal("Dial to a closed server succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "alice") {
		t.Errorf("Dial error keeps a secret: %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial error = %v, want the deadline", err)
	}
}

// WithFrameLimit holds whatever the transport: here one whose own limit
// is far above it.
func TestFrameLimitWithAnyTransport(t *testing.T) {
	r := newRig(t)
	c := r.dial(cable.WithTransport(websocket.New(websocket.WithReadLimit(1<<20))), cable.WithFrameLimit(512))
	sc := r.conn()
	s := r.subscribe(c, lobby)
	r.broadcast(sc, lobby, text{strings.Repeat("x", 1024)})
	if e := r.event(cable.EventDisconnected); !errors.Is(e.Err, transport.ErrFrameTooLarge) || !e.WillReconnect {
		t.Fatalf("EventDisconnected = %v, want ErrFrameTooLarge and a reconnect", e)
	}
	r.wait(sc.Done(), "the server's connection closed")
	sc2 := r.conn()
	r.event(cable.EventConnected)
	r.command(protocol.CommandSubscribe, lobby)
	r.broadcast(sc2, lobby, text{"small"})
	if got := r.receiveText(s); got != "small" {
		t.Errorf("after the reconnect got %q", got)
	}
}

// A frame hook that holds the reader back (the bridge's backpressure) is
// not silence from the server: the connection is not dropped as stale
// while it blocks, however long, and frames go on after it returns.
func TestBlockingFrameHookIsNotStale(t *testing.T) {
	r := newRig(t) // silent: no pings
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	c := r.dial(cable.WithStaleTimeout(100*time.Millisecond), cable.WithFrameHook(func(f cable.Frame) {
		if f.Message.Type == protocol.TypeMessage && string(f.Raw) != "" {
			select {
			case held <- struct{}{}:
				<-release
			default:
			}
		}
	}))
	sc := r.conn()
	s := r.subscribe(c, lobby)
	r.broadcast(sc, lobby, text{"first"})
	r.wait(held, "the hook holding the first message")
	// Many stale timeouts pass while the hook blocks; the monitor runs
	// every 25 ms, so a dropped connection would show by now.
	timer := time.NewTimer(1 * time.Second)
	select {
	case <-sc.Done():
		t.Fatal("the connection was dropped while the frame hook held the reader")
	case <-timer.C:
	}
	close(release)
	r.keepAlive(sc)
	r.broadcast(sc, lobby, text{"second"})
	for _, want := range []string{"first", "second"} {
		if got := r.receiveText(s); got != want {
			t.Fatalf("received %q, want %q", got, want)
		}
	}
	if sc2 := r.srv.Handshakes(); sc2 != 1 {
		t.Errorf("%d handshakes, want 1", sc2)
	}
}
