package cable_test

// Tests of the Consumer's connection handling against internal/cabletest, a
// scripted in-process server: welcome, staleness, reconnects, malformed
// frames, disconnect frames, handshake refusals and Close.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/internal/cabletest"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// rigTimeout bounds every wait of a test; tests take far less.
const rigTimeout = 10 * time.Second

var (
	lobby   = protocol.MustIdentifier("ChatChannel", "room", "lobby")
	kitchen = protocol.MustIdentifier("ChatChannel", "room", "kitchen")
)

// fastBackoff keeps reconnects quick.
var fastBackoff = cable.WithBackoff(backoff.Policy{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond})

// rig is one test's server, deadline and recorded consumer events.
type rig struct {
	t      *testing.T
	ctx    context.Context // ends at the test's deadline
	srv    *cabletest.Server
	events chan cable.Event

	mu  sync.Mutex
	log []string // every event, for failure messages
}

func newRig(t *testing.T, opts ...cabletest.Option) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), rigTimeout)
	t.Cleanup(cancel)
	return &rig{t: t, ctx: ctx, srv: cabletest.Start(t, opts...), events: make(chan cable.Event, 4096)}
}

// options returns the rig's defaults (fast backoff, event recording)
// followed by extra.
func (r *rig) options(extra ...cable.Option) []cable.Option {
	return append([]cable.Option{fastBackoff, cable.WithEventHandler(r.record)}, extra...)
}

// record is the event handler. It runs on the consumer's goroutine, maybe
// after the test ended, so it must not touch r.t.
func (r *rig) record(e cable.Event) {
	r.mu.Lock()
	r.log = append(r.log, time.Now().Format("15:04:05.000 ")+e.String())
	r.mu.Unlock()
	select {
	case r.events <- e:
	default:
	}
}

// dial connects a consumer that is closed when the test ends.
func (r *rig) dial(opts ...cable.Option) *cable.Consumer {
	r.t.Helper()
	c, err := cable.Dial(r.ctx, r.srv.URL, r.options(opts...)...)
	if err != nil {
		r.t.Fatalf("Dial: %v", err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// event waits for the next event of kind, skipping others.
func (r *rig) event(kind cable.EventKind) cable.Event {
	r.t.Helper()
	for {
		select {
		case e := <-r.events:
			if e.Kind == kind {
				return e
			}
		case <-r.ctx.Done():
			r.mu.Lock()
			defer r.mu.Unlock()
			r.t.Fatalf("no %v event before the deadline; events:\n%s", kind, strings.Join(r.log, "\n"))
		}
	}
}

// noEvent fails if an event of kind arrives within d.
func (r *rig) noEvent(kind cable.EventKind, d time.Duration) {
	r.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e := <-r.events:
			if e.Kind == kind {
				r.t.Fatalf("unexpected event: %v", e)
			}
		case <-deadline:
			return
		}
	}
}

// conn waits for the server's next connection.
func (r *rig) conn() *cabletest.Conn {
	r.t.Helper()
	c, err := r.srv.NextConn(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// command waits for the next command named cmd for identifier ("" for
// any), skipping others.
func (r *rig) command(cmd, identifier string) cabletest.Command {
	r.t.Helper()
	c, err := r.srv.NextCommand(r.ctx, cabletest.Is(cmd, identifier))
	if err != nil {
		r.t.Fatalf("%s %s: %v", cmd, identifier, err)
	}
	return c
}

func (r *rig) subscribe(c *cable.Consumer, identifier string, opts ...cable.SubscribeOption) *cable.Subscription {
	r.t.Helper()
	s, err := c.Subscribe(r.ctx, identifier, opts...)
	if err != nil {
		r.t.Fatalf("Subscribe(%s): %v", identifier, err)
	}
	return s
}

// broadcast sends v to identifier on sc, failing the test on error.
func (r *rig) broadcast(sc *cabletest.Conn, identifier string, v any) {
	r.t.Helper()
	if err := sc.Broadcast(r.ctx, identifier, v); err != nil {
		r.t.Fatal(err)
	}
}

// receive waits for the subscription's next message.
func (r *rig) receive(s *cable.Subscription) protocol.Payload {
	r.t.Helper()
	select {
	case p, ok := <-s.Messages():
		if !ok {
			r.t.Fatalf("subscription ended: %v", s.Err())
		}
		return p
	case <-r.ctx.Done():
		r.t.Fatal("no message before the deadline")
	}
	return protocol.Payload{}
}

// receiveText waits for a message {"text": …} and returns the text.
func (r *rig) receiveText(s *cable.Subscription) string {
	r.t.Helper()
	var m struct {
		Text string `json:"text"`
	}
	p := r.receive(s)
	if err := p.Decode(&m); err != nil {
		r.t.Fatalf("decode %v: %v", p, err)
	}
	return m.Text
}

// wait waits for ch to be closed.
func (r *rig) wait(ch <-chan struct{}, what string) {
	r.t.Helper()
	select {
	case <-ch:
	case <-r.ctx.Done():
		r.t.Fatalf("%s: not before the deadline", what)
	}
}

// keepAlive pings sc every 20ms until it closes or the test ends, so that a
// short stale timeout does not drop it.
func (r *rig) keepAlive(sc *cabletest.Conn) {
	var wg sync.WaitGroup
	r.t.Cleanup(wg.Wait)
	ctx, cancel := context.WithCancel(r.ctx)
	r.t.Cleanup(cancel)
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if sc.Ping(ctx) != nil {
					return
				}
			case <-sc.Done():
				return
			case <-ctx.Done():
				return
			}
		}
	})
}

// expectCalls reads len(want) handler calls from calls, in order.
func (r *rig) expectCalls(calls <-chan string, want ...string) {
	r.t.Helper()
	for i, w := range want {
		select {
		case got := <-calls:
			if got != w {
				r.t.Fatalf("handler call %d = %s, want %s", i, got, w)
			}
		case <-r.ctx.Done():
			r.t.Fatalf("handler call %d (%s) not made before the deadline", i, w)
		}
	}
}

type text struct {
	Text string `json:"text"`
}

func TestDialReturnsAfterWelcome(t *testing.T) {
	r := newRig(t, cabletest.WithoutWelcome())
	type result struct {
		c   *cable.Consumer
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := cable.Dial(r.ctx, r.srv.URL, r.options()...)
		done <- result{c, err}
	}()
	sc := r.conn()
	select {
	case res := <-done:
		t.Fatalf("Dial returned before the welcome: %v", res.err)
	default:
	}
	if err := sc.Welcome(r.ctx); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-r.ctx.Done():
		t.Fatal("Dial did not return after the welcome")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	defer res.c.Close()
	if !res.c.Connected() || res.c.Err() != nil {
		t.Errorf("Connected() = %v, Err() = %v", res.c.Connected(), res.c.Err())
	}
	if e := r.event(cable.EventConnected); e.Reconnected || e.Transport != "websocket" {
		t.Errorf("first EventConnected = %v", e)
	}
	select {
	case <-res.c.Done():
		t.Error("Done closed while running")
	default:
	}
}

func TestDialNoWelcome(t *testing.T) {
	t.Run("handshake timeout first", func(t *testing.T) {
		r := newRig(t, cabletest.WithoutWelcome())
		start := time.Now()
		_, err := cable.Dial(r.ctx, r.srv.URL, r.options(cable.WithHandshakeTimeout(150*time.Millisecond))...)
		if !errors.Is(err, cable.ErrNoWelcome) {
			t.Fatalf("err = %v, want ErrNoWelcome", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Dial took %v with a 150ms handshake timeout", d)
		}
		if n := r.srv.Accepted(); n != 1 {
			t.Errorf("%d connections, want 1 (no retry)", n)
		}
	})
	t.Run("ctx first", func(t *testing.T) {
		r := newRig(t, cabletest.WithoutWelcome())
		ctx, cancel := context.WithTimeout(r.ctx, 150*time.Millisecond)
		defer cancel()
		_, err := cable.Dial(ctx, r.srv.URL, r.options(cable.WithHandshakeTimeout(5*time.Second))...)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if errors.Is(err, cable.ErrNoWelcome) {
			t.Errorf("err = %v, names ErrNoWelcome before the handshake timeout", err)
		}
	})
	t.Run("default stale timeout does not preempt it", func(t *testing.T) {
		// The stale timeout watches welcomed connections only: a server
		// that never welcomes is reported as such even when the stale
		// timeout is the shorter one.
		r := newRig(t, cabletest.WithoutWelcome())
		_, err := cable.Dial(r.ctx, r.srv.URL, r.options(cable.WithStaleTimeout(50*time.Millisecond), cable.WithHandshakeTimeout(300*time.Millisecond))...)
		if !errors.Is(err, cable.ErrNoWelcome) || errors.Is(err, cable.ErrStale) {
			t.Fatalf("err = %v, want ErrNoWelcome", err)
		}
	})
}

func TestStaleReconnectResubscribes(t *testing.T) {
	r := newRig(t) // silent: no pings
	calls := make(chan string, 100)
	h := cable.Handler{
		Connected:    func(re bool) { calls <- fmt.Sprintf("connected(%v)", re) },
		Disconnected: func(will bool) { calls <- fmt.Sprintf("disconnected(%v)", will) },
	}
	c := r.dial(cable.WithStaleTimeout(150 * time.Millisecond))
	sc1 := r.conn()
	s := r.subscribe(c, lobby)
	hs := r.subscribe(c, kitchen, cable.WithHandler(h))
	r.command(protocol.CommandSubscribe, lobby)
	r.command(protocol.CommandSubscribe, kitchen)

	r.event(cable.EventConnected)
	e := r.event(cable.EventDisconnected)
	if !errors.Is(e.Err, cable.ErrStale) || !e.WillReconnect {
		t.Fatalf("EventDisconnected = %v, want ErrStale and a reconnect", e)
	}
	if e := r.event(cable.EventReconnecting); e.Attempt != 1 || e.Delay <= 0 || e.Delay > 10*time.Millisecond {
		t.Errorf("EventReconnecting = %v", e)
	}
	if e := r.event(cable.EventConnected); !e.Reconnected {
		t.Errorf("EventConnected = %v, want Reconnected", e)
	}
	r.wait(sc1.Done(), "stale connection closed")
	sc2 := r.conn()
	r.keepAlive(sc2)
	if sc2.ID() != 2 {
		t.Fatalf("connection %d, want 2", sc2.ID())
	}
	// Both subscriptions are sent again on the new connection.
	for range 2 {
		cmd := r.command(protocol.CommandSubscribe, "")
		if cmd.Conn != sc2 {
			t.Fatalf("subscribe on connection %d", cmd.Conn.ID())
		}
	}
	r.broadcast(sc2, lobby, text{"after"})
	if got := r.receiveText(s); got != "after" {
		t.Errorf("got %q", got)
	}
	if st := c.Stats(); st.Reconnects != 1 {
		t.Errorf("Stats().Reconnects = %d", st.Reconnects)
	}
	r.expectCalls(calls, "connected(false)", "disconnected(true)", "connected(true)")
	hs.Unsubscribe(r.ctx)
	r.expectCalls(calls, "disconnected(false)")
}

func TestPingsKeepConnectionAlive(t *testing.T) {
	r := newRig(t, cabletest.WithPings(20*time.Millisecond))
	// The handshake timeout is shorter than the wait too: it must not cut a
	// welcomed connection.
	c := r.dial(cable.WithStaleTimeout(200*time.Millisecond), cable.WithHandshakeTimeout(100*time.Millisecond))
	r.noEvent(cable.EventDisconnected, 600*time.Millisecond)
	if !c.Connected() || r.srv.Accepted() != 1 {
		t.Errorf("Connected() = %v after %d connections", c.Connected(), r.srv.Accepted())
	}
	if st := c.Stats(); st.Frames < 10 || st.DecodeErrors != 0 {
		t.Errorf("Stats() = %+v, want pings counted as frames", st)
	}
}

func TestMalformedFramesAreSkipped(t *testing.T) {
	for _, tc := range []struct {
		name   string
		codecs []protocol.Codec
		frames []func(*cabletest.Conn, context.Context) error
	}{
		{
			name:   "json",
			codecs: []protocol.Codec{protocol.JSONCodec{}},
			frames: []func(*cabletest.Conn, context.Context) error{
				textFrame(`garbage`),
				textFrame(`{"type":"welcome"`),
				textFrame(`{"type":"foo"}`),
				textFrame(`[1,2,3]`),
				textFrame(`{"identifier":42,"message":{}}`),
				textFrame(`{"identifier":"x"}`),
				textFrame(``),
				binaryFrame([]byte{0xff, 0x00, 0x13}),
			},
		},
		{
			name:   "msgpack",
			codecs: []protocol.Codec{protocol.MessagePackCodec{}},
			frames: []func(*cabletest.Conn, context.Context) error{
				binaryFrame([]byte{0xc1}),
				binaryFrame([]byte{0x82, 0xa4, 't', 'y'}),
				binaryFrame([]byte{0x81, 0xa4, 't', 'y', 'p', 'e', 0xa3, 'f', 'o', 'o'}), // {"type":"foo"}
				textFrame(`{"type":"ping"}`),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			c := r.dial(cable.WithCodecs(tc.codecs...))
			sc := r.conn()
			s := r.subscribe(c, lobby)
			r.event(cable.EventConnected)
			for i, send := range tc.frames {
				if err := send(sc, r.ctx); err != nil {
					t.Fatal(err)
				}
				e := r.event(cable.EventFrameError)
				if e.Err == nil {
					t.Errorf("frame %d: EventFrameError without an error", i)
				}
				if got := c.Stats().DecodeErrors; got != uint64(i+1) {
					t.Errorf("frame %d: DecodeErrors = %d", i, got)
				}
			}
			r.broadcast(sc, lobby, text{"still here"})
			if got := r.receiveText(s); got != "still here" {
				t.Errorf("got %q", got)
			}
			if !c.Connected() || r.srv.Accepted() != 1 {
				t.Errorf("connection not kept: Connected() = %v, %d connections", c.Connected(), r.srv.Accepted())
			}
		})
	}
}

func TestWelcomeOnLiveConnectionResubscribes(t *testing.T) {
	// Behind a proxy (the Cableway bridge) a second welcome on one
	// connection means the proxy's upstream was redialled: the consumer
	// treats it as a reconnect and subscribes again on the same connection.
	r := newRig(t)
	c := r.dial()
	sc := r.conn()
	s := r.subscribe(c, lobby)
	r.command(protocol.CommandSubscribe, lobby)
	if err := sc.Welcome(r.ctx); err != nil {
		t.Fatal(err)
	}
	if e := r.event(cable.EventDisconnected); !e.WillReconnect {
		t.Errorf("EventDisconnected = %v", e)
	}
	if e := r.event(cable.EventConnected); !e.Reconnected {
		t.Errorf("EventConnected = %v", e)
	}
	if cmd := r.command(protocol.CommandSubscribe, lobby); cmd.Conn != sc {
		t.Errorf("resubscribed on connection %d", cmd.Conn.ID())
	}
	r.broadcast(sc, lobby, text{"same socket"})
	if got := r.receiveText(s); got != "same socket" {
		t.Errorf("got %q", got)
	}
	if st := c.Stats(); st.Reconnects != 1 || st.DecodeErrors != 0 || r.srv.Accepted() != 1 {
		t.Errorf("Stats() = %+v, %d connections", st, r.srv.Accepted())
	}
}

func textFrame(s string) func(*cabletest.Conn, context.Context) error {
	return func(c *cabletest.Conn, ctx context.Context) error { return c.WriteText(ctx, []byte(s)) }
}

func binaryFrame(b []byte) func(*cabletest.Conn, context.Context) error {
	return func(c *cabletest.Conn, ctx context.Context) error { return c.WriteBinary(ctx, b) }
}

func TestUnknownFrameKinds(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	sc := r.conn()
	s := r.subscribe(c, lobby)
	// A message, a confirm and a reject for identifiers nobody subscribed
	// to: counted, not fatal, and not frame errors (they are routine after
	// an Unsubscribe).
	r.broadcast(sc, kitchen, text{"not yours"})
	sc.Confirm(r.ctx, kitchen)
	sc.Reject(r.ctx, kitchen)
	sc.Ping(r.ctx)
	r.broadcast(sc, lobby, text{"yours"})
	if got := r.receiveText(s); got != "yours" {
		t.Errorf("got %q", got)
	}
	st := c.Stats()
	if st.UnknownIdentifier != 3 || st.DecodeErrors != 0 {
		t.Errorf("Stats() = %+v, want 3 unknown identifiers", st)
	}
	r.noEvent(cable.EventFrameError, 50*time.Millisecond)
}

func TestDisconnectFrames(t *testing.T) {
	t.Run("unauthorized before welcome", func(t *testing.T) {
		r := newRig(t, cabletest.WithoutWelcome())
		go func() {
			if sc, err := r.srv.NextConn(r.ctx); err == nil {
				sc.Disconnect(r.ctx, protocol.ReasonUnauthorized, false)
				sc.Close(ws.StatusNormalClosure, "")
			}
		}()
		start := time.Now()
		c, err := cable.Dial(r.ctx, r.srv.URL, r.options()...)
		if err == nil {
			c.Close()
			t.Fatal("Dial succeeded")
		}
		var de *cable.DisconnectError
		if !errors.As(err, &de) || !errors.Is(err, cable.ErrUnauthorized) {
			t.Fatalf("err = %v, want an unauthorized *DisconnectError", err)
		}
		if de.Reason != protocol.ReasonUnauthorized || de.Reconnect || !de.Final() {
			t.Errorf("DisconnectError = %+v", de)
		}
		if d := time.Since(start); d > time.Second || r.srv.Handshakes() != 1 {
			t.Errorf("Dial took %v and %d handshakes", d, r.srv.Handshakes())
		}
	})
	t.Run("unauthorized with reconnect true still stops", func(t *testing.T) {
		r := newRig(t)
		c := r.dial()
		sc := r.conn()
		sc.Disconnect(r.ctx, protocol.ReasonUnauthorized, true)
		r.wait(c.Done(), "consumer stopped")
		if !errors.Is(c.Err(), cable.ErrUnauthorized) {
			t.Errorf("Err() = %v", c.Err())
		}
	})

	stops := []struct {
		name, reason string
		msg          protocol.Message
		unauthorized bool
	}{
		{"unauthorized after welcome", protocol.ReasonUnauthorized, protocol.Message{Type: protocol.TypeDisconnect, Reason: protocol.ReasonUnauthorized, HasReconnect: true}, true},
		{"remote reconnect false", protocol.ReasonRemote, protocol.Message{Type: protocol.TypeDisconnect, Reason: protocol.ReasonRemote, HasReconnect: true}, false},
		// Rails ≥ 6.0 always sends "reconnect"; a frame without it is
		// taken as reconnect:false, as @rails/actioncable does (its
		// close({allowReconnect: undefined}) stops the monitor).
		{"no reconnect key", protocol.ReasonServerRestart, protocol.Message{Type: protocol.TypeDisconnect, Reason: protocol.ReasonServerRestart}, false},
	}
	for _, tc := range stops {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			c := r.dial()
			sc := r.conn()
			s := r.subscribe(c, lobby)
			calls := make(chan string, 10)
			hs := r.subscribe(c, kitchen, cable.WithHandler(cable.Handler{Disconnected: func(will bool) {
				calls <- fmt.Sprintf("disconnected(%v)", will)
			}}))
			if err := sc.Send(r.ctx, &tc.msg); err != nil {
				t.Fatal(err)
			}
			r.wait(c.Done(), "consumer stopped")
			var de *cable.DisconnectError
			if !errors.As(c.Err(), &de) || de.Reason != tc.reason || de.Reconnect {
				t.Fatalf("Err() = %v", c.Err())
			}
			if errors.Is(c.Err(), cable.ErrUnauthorized) != tc.unauthorized {
				t.Errorf("errors.Is(Err(), ErrUnauthorized) = %v", !tc.unauthorized)
			}
			if e := r.event(cable.EventDisconnected); e.WillReconnect || !errors.As(e.Err, &de) {
				t.Errorf("EventDisconnected = %v", e)
			}
			if e := r.event(cable.EventStopped); e.Err != c.Err() {
				t.Errorf("EventStopped = %v", e)
			}
			// Subscriptions end with the consumer's error.
			r.wait(s.Done(), "subscription ended")
			if _, ok := <-s.Messages(); ok {
				t.Error("Messages still open")
			}
			if s.Err() != c.Err() || hs.Err() != c.Err() {
				t.Errorf("subscription errors %v, %v", s.Err(), hs.Err())
			}
			if err := s.Perform(r.ctx, "speak", nil); err != c.Err() {
				t.Errorf("Perform after the stop: %v", err)
			}
			if _, err := c.Subscribe(r.ctx, "{}"); err != c.Err() {
				t.Errorf("Subscribe after the stop: %v", err)
			}
			r.wait(hs.Done(), "handler subscription ended")
			r.expectCalls(calls, "disconnected(false)")
			if n := r.srv.Handshakes(); n != 1 {
				t.Errorf("%d handshakes, want no reconnect", n)
			}
			c.Close()
			if c.Err() != s.Err() {
				t.Errorf("Close replaced Err() with %v", c.Err())
			}
		})
	}

	for _, reason := range []string{protocol.ReasonServerRestart, protocol.ReasonInvalidRequest, ""} {
		t.Run("reconnect true "+reason, func(t *testing.T) {
			r := newRig(t)
			c := r.dial()
			sc1 := r.conn()
			s := r.subscribe(c, lobby)
			r.command(protocol.CommandSubscribe, lobby)
			sc1.Disconnect(r.ctx, reason, true)
			e := r.event(cable.EventDisconnected)
			var de *cable.DisconnectError
			if !errors.As(e.Err, &de) || de.Reason != reason || !de.Reconnect || de.Final() || !e.WillReconnect {
				t.Fatalf("EventDisconnected = %v", e)
			}
			sc2 := r.conn()
			if cmd := r.command(protocol.CommandSubscribe, lobby); cmd.Conn != sc2 {
				t.Errorf("resubscribed on connection %d", cmd.Conn.ID())
			}
			r.broadcast(sc2, lobby, text{"back"})
			if got := r.receiveText(s); got != "back" {
				t.Errorf("got %q", got)
			}
			if c.Err() != nil || s.Err() != nil {
				t.Errorf("Err() = %v, %v", c.Err(), s.Err())
			}
		})
	}
}

func TestForeignSubprotocolFailsFast(t *testing.T) {
	r := newRig(t, cabletest.WithForcedSubprotocol("chat"))
	start := time.Now()
	_, err := cable.Dial(r.ctx, r.srv.URL, r.options(cable.WithBackoff(backoff.Policy{Min: time.Minute}))...)
	if !errors.Is(err, transport.ErrUnsupportedSubprotocol) {
		t.Fatalf("err = %v, want ErrUnsupportedSubprotocol", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Dial took %v", d)
	}
	if n := r.srv.Handshakes(); n != 1 {
		t.Errorf("%d handshakes, want 1", n)
	}
}

func TestHandshakeRefused(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			r := newRig(t, cabletest.WithHandshake(func(*http.Request) int { return status }))
			start := time.Now()
			_, err := cable.Dial(r.ctx, r.srv.URL, r.options(cable.WithBackoff(backoff.Policy{Min: time.Minute}))...)
			var he *transport.HandshakeError
			if !errors.As(err, &he) || he.StatusCode != status {
				t.Fatalf("err = %v, want a HandshakeError %d", err, status)
			}
			if d := time.Since(start); d > time.Second || r.srv.Handshakes() != 1 {
				t.Errorf("Dial took %v and %d handshakes", d, r.srv.Handshakes())
			}
		})
	}
	t.Run("503 is retried", func(t *testing.T) {
		r := newRig(t, cabletest.WithHandshake(func(*http.Request) int { return http.StatusServiceUnavailable }))
		ctx, cancel := context.WithTimeout(r.ctx, 300*time.Millisecond)
		defer cancel()
		_, err := cable.Dial(ctx, r.srv.URL+"?token=secret", r.options()...)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		var he *transport.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != 503 || !strings.Contains(err.Error(), "503") {
			t.Errorf("err = %v, want it to carry the 503", err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("err leaks the query: %v", err)
		}
		if n := r.srv.Handshakes(); n < 3 {
			t.Errorf("%d handshakes in 300ms, want retries", n)
		}
		if e := r.event(cable.EventReconnecting); !errors.As(e.Err, &he) {
			t.Errorf("EventReconnecting = %v", e)
		}
	})
	t.Run("after the first connection 401 is retried", func(t *testing.T) {
		var refuse atomic.Bool
		r := newRig(t, cabletest.WithHandshake(func(*http.Request) int {
			if refuse.Load() {
				return http.StatusUnauthorized
			}
			return 0
		}))
		c := r.dial()
		refuse.Store(true)
		r.conn().Drop()
		r.event(cable.EventDisconnected)
		r.event(cable.EventReconnecting) // after the drop
		var he *transport.HandshakeError
		if e := r.event(cable.EventReconnecting); !errors.As(e.Err, &he) || he.StatusCode != 401 {
			t.Errorf("EventReconnecting = %v, want the 401", e)
		}
		refuse.Store(false)
		if e := r.event(cable.EventConnected); !e.Reconnected {
			t.Errorf("EventConnected = %v", e)
		}
		if c.Err() != nil {
			t.Errorf("Err() = %v", c.Err())
		}
	})
}

func TestFrameOverReadLimit(t *testing.T) {
	r := newRig(t)
	c := r.dial(cable.WithTransport(websocket.New(websocket.WithReadLimit(1024))))
	sc := r.conn()
	s := r.subscribe(c, lobby)
	r.broadcast(sc, lobby, text{strings.Repeat("x", 2048)})
	e := r.event(cable.EventDisconnected)
	if !errors.Is(e.Err, transport.ErrFrameTooLarge) || !e.WillReconnect {
		t.Fatalf("EventDisconnected = %v, want ErrFrameTooLarge", e)
	}
	r.wait(sc.Done(), "server side closed")
	if code := ws.CloseStatus(sc.Err()); code != ws.StatusMessageTooBig {
		t.Errorf("server saw %v, want status 1009", sc.Err())
	}
	sc2 := r.conn()
	r.command(protocol.CommandSubscribe, lobby)
	r.broadcast(sc2, lobby, text{"small"})
	if got := r.receiveText(s); got != "small" {
		t.Errorf("got %q", got)
	}
}

func TestConnectionLost(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(*rig, *cabletest.Conn) error
		code int
	}{
		{"mid-frame", func(r *rig, sc *cabletest.Conn) error {
			return sc.DropMidFrame(200, []byte(`{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","message":{"text":"cut`))
		}, 1006},
		{"header only", func(r *rig, sc *cabletest.Conn) error {
			return sc.DropMidFrame(70000, nil) // only the header
		}, 1006},
		{"drop", func(r *rig, sc *cabletest.Conn) error { return sc.Drop() }, 1006},
		{"close 1012", func(r *rig, sc *cabletest.Conn) error { return sc.Close(ws.StatusServiceRestart, "restart") }, 1012},
		{"close 1000", func(r *rig, sc *cabletest.Conn) error { return sc.Close(ws.StatusNormalClosure, "") }, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			c := r.dial()
			sc := r.conn()
			s := r.subscribe(c, lobby)
			if err := tc.cut(r, sc); err != nil {
				t.Fatal(err)
			}
			e := r.event(cable.EventDisconnected)
			var ce *transport.CloseError
			if !errors.As(e.Err, &ce) || ce.Code != tc.code || !e.WillReconnect {
				t.Fatalf("EventDisconnected = %v, want a CloseError %d", e, tc.code)
			}
			sc2 := r.conn()
			r.command(protocol.CommandSubscribe, lobby)
			r.broadcast(sc2, lobby, text{"again"})
			if got := r.receiveText(s); got != "again" {
				t.Errorf("got %q", got)
			}
		})
	}
}

func TestHeaderFuncOnEveryConnect(t *testing.T) {
	r := newRig(t)
	var calls atomic.Int32
	c := r.dial(cable.WithHeaderFunc(func(ctx context.Context) (map[string][]string, error) {
		n := calls.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("header func ctx has no deadline")
		}
		return http.Header{"Authorization": {fmt.Sprintf("Bearer token-%d", n)}}, nil
	}))
	for i := 1; i <= 3; i++ {
		sc := r.conn()
		if got, want := sc.Header().Get("Authorization"), fmt.Sprintf("Bearer token-%d", i); got != want {
			t.Errorf("connection %d: Authorization = %q, want %q", i, got, want)
		}
		sc.Drop()
	}
	r.conn()
	for range 4 {
		r.event(cable.EventConnected)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("header func called %d times for 4 connections", n)
	}
	if c.Stats().Reconnects != 3 {
		t.Errorf("Stats() = %+v", c.Stats())
	}
}

func TestHeaderFuncError(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(r.ctx, 200*time.Millisecond)
	defer cancel()
	_, err := cable.Dial(ctx, r.srv.URL, r.options(cable.WithHeaderFunc(func(context.Context) (map[string][]string, error) {
		return nil, errors.New("token service down")
	}))...)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "token service down") {
		t.Fatalf("err = %v", err)
	}
	if n := r.srv.Handshakes(); n != 0 {
		t.Errorf("%d handshakes without headers", n)
	}
}

func TestHandshakeHeaders(t *testing.T) {
	t.Run("default origin", func(t *testing.T) {
		r := newRig(t)
		r.dial()
		host := strings.TrimSuffix(strings.TrimPrefix(r.srv.URL, "ws://"), "/cable")
		if got := r.conn().Header().Get("Origin"); got != "http://"+host {
			t.Errorf("Origin = %q, want http://%s", got, host)
		}
	})
	t.Run("explicit origin, cookie and authorization", func(t *testing.T) {
		r := newRig(t, cabletest.WithHandshake(func(req *http.Request) int {
			if req.Header.Get("Origin") != "https://app.example" {
				return http.StatusForbidden
			}
			return 0
		}))
		r.dial(
			cable.WithHeader("Origin", "https://app.example"),
			cable.WithHeader("cookie", "_session=abc"),
			cable.WithHeaderFunc(func(context.Context) (map[string][]string, error) {
				return http.Header{"Cookie": {"theme=dark"}, "Authorization": {"Bearer x"}}, nil
			}),
		)
		h := r.conn().Header()
		if got := h.Values("Origin"); len(got) != 1 {
			t.Errorf("Origin = %q", got)
		}
		if got := h.Values("Cookie"); len(got) != 1 || got[0] != "theme=dark; _session=abc" {
			t.Errorf("Cookie = %q, want one line", got)
		}
		if got := h.Get("Authorization"); got != "Bearer x" {
			t.Errorf("Authorization = %q", got)
		}
	})
}

func TestMessagePack(t *testing.T) {
	type chat struct {
		User  string   `json:"user"`
		Text  string   `json:"text"`
		At    int64    `json:"at"`
		Tags  []string `json:"tags"`
		Reply *chat    `json:"reply,omitempty"`
	}
	in := chat{User: "alice", Text: "hi", At: 1700000000, Tags: []string{"a", "b"}, Reply: &chat{User: "bob"}}

	t.Run("negotiated", func(t *testing.T) {
		r := newRig(t)
		c := r.dial(cable.WithCodecs(protocol.MessagePackCodec{}, protocol.JSONCodec{}))
		sc := r.conn()
		if sc.Subprotocol() != protocol.SubprotocolMessagePack {
			t.Fatalf("server chose %q", sc.Subprotocol())
		}
		s := r.subscribe(c, lobby)
		// The server decoded the subscribe with the MessagePack codec, so
		// the client sent MessagePack.
		if cmd := r.command(protocol.CommandSubscribe, lobby); cmd.Identifier != lobby || !cmd.Binary {
			t.Errorf("subscribe %+v (binary %v)", cmd.Command, cmd.Binary)
		}
		r.broadcast(sc, lobby, in)
		p := r.receive(s)
		if p.Format() != protocol.FormatMessagePack {
			t.Errorf("Format() = %v", p.Format())
		}
		var out chat
		if err := p.Decode(&out); err != nil {
			t.Fatal(err)
		}
		if out.User != in.User || out.Text != in.Text || out.At != in.At || len(out.Tags) != 2 || out.Reply == nil || out.Reply.User != "bob" {
			t.Errorf("decoded %+v", out)
		}
		if err := s.Perform(r.ctx, "speak", map[string]string{"text": "yo"}); err != nil {
			t.Fatal(err)
		}
		cmd := r.command(protocol.CommandMessage, lobby)
		if cmd.Data != `{"text":"yo","action":"speak"}` || !cmd.Binary {
			t.Errorf("data %q (binary %v)", cmd.Data, cmd.Binary)
		}
	})
	t.Run("json-only server", func(t *testing.T) {
		r := newRig(t, cabletest.WithSubprotocols(protocol.SubprotocolJSON))
		c := r.dial(cable.WithCodecs(protocol.MessagePackCodec{}, protocol.JSONCodec{}))
		sc := r.conn()
		if sc.Subprotocol() != protocol.SubprotocolJSON {
			t.Fatalf("server chose %q", sc.Subprotocol())
		}
		if got := sc.Header().Get("Sec-WebSocket-Protocol"); got != "actioncable-v1-msgpack,actioncable-v1-json" {
			t.Errorf("offered %q", got)
		}
		s := r.subscribe(c, lobby)
		if cmd := r.command(protocol.CommandSubscribe, lobby); cmd.Binary {
			t.Error("JSON command in a binary frame")
		}
		r.broadcast(sc, lobby, in)
		p := r.receive(s)
		var out chat
		if p.Format() != protocol.FormatJSON || p.Decode(&out) != nil || out.User != "alice" {
			t.Errorf("payload %v (%v)", p, p.Format())
		}
	})
	t.Run("no subprotocol is JSON", func(t *testing.T) {
		r := newRig(t, cabletest.WithSubprotocols())
		c := r.dial(cable.WithCodecs(protocol.MessagePackCodec{}))
		sc := r.conn()
		s := r.subscribe(c, lobby)
		r.broadcast(sc, lobby, text{"plain"})
		if got := r.receiveText(s); got != "plain" {
			t.Errorf("got %q", got)
		}
	})
}

func TestClose(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	sc := r.conn()
	s := r.subscribe(c, lobby)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if !errors.Is(c.Err(), cable.ErrClosed) || c.Connected() {
		t.Errorf("Err() = %v, Connected() = %v", c.Err(), c.Connected())
	}
	if _, ok := <-s.Messages(); ok || !errors.Is(s.Err(), cable.ErrClosed) {
		t.Errorf("subscription after Close: %v", s.Err())
	}
	if _, err := c.Subscribe(r.ctx, kitchen); !errors.Is(err, cable.ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if err := s.Perform(r.ctx, "speak", nil); !errors.Is(err, cable.ErrClosed) {
		t.Errorf("Perform after Close: %v", err)
	}
	if err := s.Unsubscribe(r.ctx); err != nil {
		t.Errorf("Unsubscribe after Close: %v", err)
	}
	r.wait(sc.Done(), "server side closed")
	if code := ws.CloseStatus(sc.Err()); code != ws.StatusNormalClosure {
		t.Errorf("server saw %v, want a normal close", sc.Err())
	}
	if e := r.event(cable.EventStopped); !errors.Is(e.Err, cable.ErrClosed) {
		t.Errorf("EventStopped = %v", e)
	}
}

func TestCloseWhileDialRetrying(t *testing.T) {
	r := newRig(t, cabletest.WithHandshake(func(*http.Request) int { return http.StatusBadGateway }))
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	go func() {
		defer cancel()
		for {
			select {
			case e := <-r.events:
				if e.Kind == cable.EventReconnecting {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	start := time.Now()
	_, err := cable.Dial(ctx, r.srv.URL, r.options()...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial took %v to give up", d)
	}
}

func TestCloseFromCallbacks(t *testing.T) {
	t.Run("event handler", func(t *testing.T) {
		r := newRig(t)
		var consumer atomic.Pointer[cable.Consumer]
		closed := make(chan error, 1)
		c := r.dial(cable.WithEventHandler(func(e cable.Event) {
			if e.Kind == cable.EventFrameError {
				closed <- consumer.Load().Close()
			}
		}))
		consumer.Store(c)
		r.conn().WriteText(r.ctx, []byte("garbage"))
		select {
		case err := <-closed:
			if err != nil {
				t.Error(err)
			}
		case <-r.ctx.Done():
			t.Fatal("Close from the event handler did not return")
		}
		r.wait(c.Done(), "consumer stopped")
	})
	t.Run("subscription handler", func(t *testing.T) {
		r := newRig(t)
		c := r.dial()
		sc := r.conn()
		closed := make(chan error, 1)
		r.subscribe(c, lobby, cable.WithHandler(cable.Handler{
			Received:     func(protocol.Payload) { closed <- c.Close() },
			Disconnected: func(bool) { c.Close() },
		}))
		r.broadcast(sc, lobby, text{"close please"})
		select {
		case err := <-closed:
			if err != nil {
				t.Error(err)
			}
		case <-r.ctx.Done():
			t.Fatal("Close from Received did not return")
		}
	})
}

func TestDialBadURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := cable.Dial(ctx, "ftp://example.invalid/cable", fastBackoff)
	if err == nil {
		t.Fatal("Dial succeeded")
	}
}
