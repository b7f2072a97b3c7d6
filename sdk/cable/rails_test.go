//go:build unix

package cable_test

// Integration tests against the real Rails 6.1 ActionCable app of
// examples/rails, started on a free loopback port by internal/railstest.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

// dialRails connects as user through an Authorization header.
func dialRails(t *testing.T, ctx context.Context, rails *railstest.Server, user string, opts ...cable.Option) *cable.Consumer {
	t.Helper()
	opts = append([]cable.Option{cable.WithHeader("Authorization", "Bearer secret-"+user)}, opts...)
	c, err := cable.Dial(ctx, rails.CableURL(), opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next waits for one message, failing the test at ctx's deadline.
func next(t *testing.T, ctx context.Context, sub *cable.Subscription) protocol.Payload {
	t.Helper()
	select {
	case m, ok := <-sub.Messages():
		if !ok {
			t.Fatalf("subscription ended: %v", sub.Err())
		}
		return m
	case <-ctx.Done():
		t.Fatalf("no message before the deadline")
	}
	return protocol.Payload{}
}

type chatLine struct {
	User string `json:"user"`
	Text string `json:"text"`
	Room string `json:"room"`
}

func TestRailsSubscribePerformBroadcast(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialRails(t, ctx, rails, "alice")

	lobby, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel", "room", "lobby"))
	if err != nil {
		t.Fatalf("Subscribe lobby: %v", err)
	}
	attic, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel", "room", "attic"))
	if err != nil {
		t.Fatalf("Subscribe attic: %v", err)
	}

	// perform → the channel broadcasts to the room → we receive it.
	if err := lobby.Perform(ctx, "speak", map[string]string{"text": "hi from Go"}); err != nil {
		t.Fatalf("Perform: %v", err)
	}
	var line chatLine
	if err := next(t, ctx, lobby).Decode(&line); err != nil {
		t.Fatal(err)
	}
	if line != (chatLine{User: "alice", Text: "hi from Go", Room: "lobby"}) {
		t.Fatalf("lobby got %+v", line)
	}

	// A broadcast from outside reaches only its room.
	if err := rails.Broadcast(ctx, "chat:attic", map[string]any{"text": "up here", "n": 1}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := next(t, ctx, attic).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["text"] != "up here" || got["n"] != float64(1) {
		t.Fatalf("attic got %v", got)
	}
	select {
	case m := <-lobby.Messages():
		t.Fatalf("lobby received the attic broadcast: %v", m)
	default:
	}
	if s := c.Stats(); s.DecodeErrors != 0 || s.UnknownIdentifier != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestRailsEchoAndIdentifierParams(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialRails(t, ctx, rails, "bob")

	// Several params, in an order that sorting would change, a nested
	// object and a number: Rails must see them as sent, and match the
	// identifier of its confirm byte for byte.
	id := protocol.MustIdentifier("EchoChannel", "zeta", "last", "alpha", 1, "nested", json.RawMessage(`{"b":2,"a":"x"}`))
	sub, err := c.Subscribe(ctx, id)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	// EchoChannel transmits its params before the confirmation arrives
	// (rails/rails#25333): that message must be delivered, not lost.
	first := next(t, ctx, sub)
	want := `{"params":{"zeta":"last","alpha":1,"nested":{"b":2,"a":"x"}}}`
	if string(first.Bytes()) != want {
		t.Fatalf("params message = %s, want %s", first.Bytes(), want)
	}

	if err := sub.Perform(ctx, "echo", map[string]any{"text": "ping", "n": 42}); err != nil {
		t.Fatal(err)
	}
	var echo map[string]any
	if err := next(t, ctx, sub).Decode(&echo); err != nil {
		t.Fatal(err)
	}
	if echo["text"] != "ping" || echo["n"] != float64(42) || echo["user"] != "bob" {
		t.Fatalf("echo = %v", echo)
	}
	// Send is the raw form: the data names its own action.
	if err := sub.Send(ctx, map[string]any{"action": "echo", "raw": true}); err != nil {
		t.Fatal(err)
	}
	if err := next(t, ctx, sub).Decode(&echo); err != nil || echo["raw"] != true {
		t.Fatalf("echo of Send = %v, %v", echo, err)
	}
}

func TestRailsReject(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialRails(t, ctx, rails, "carol")

	_, err := c.Subscribe(ctx, protocol.MustIdentifier("RejectChannel"))
	if !errors.Is(err, cable.ErrRejected) {
		t.Fatalf("Subscribe RejectChannel: err = %v, want ErrRejected", err)
	}
	// ChatChannel rejects a subscription without a room.
	if _, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel")); !errors.Is(err, cable.ErrRejected) {
		t.Fatalf("Subscribe ChatChannel without room: err = %v, want ErrRejected", err)
	}
	// The identifier is free again after a rejection, and the connection
	// still works.
	if _, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel", "room", "r")); err != nil {
		t.Fatalf("Subscribe after rejections: %v", err)
	}
}

func TestRailsUnauthorized(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for name, opt := range map[string]cable.Option{
		"no credentials": cable.WithHeader("X-Nothing", "1"),
		"bad token":      cable.WithHeader("Authorization", "Bearer wrong"),
	} {
		start := time.Now()
		_, err := cable.Dial(ctx, rails.CableURL(), opt)
		var de *cable.DisconnectError
		if !errors.As(err, &de) || !errors.Is(err, cable.ErrUnauthorized) || de.Reconnect {
			t.Fatalf("%s: Dial err = %v, want an unauthorized *DisconnectError", name, err)
		}
		// It is final: Dial must not have retried until the deadline.
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s: Dial retried an unauthorized connection", name)
		}
	}
	st, err := rails.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.UnauthorizedTotal != 2 {
		t.Fatalf("Rails counted %d unauthorized connections, want 2 (one per Dial, no retries)", st.UnauthorizedTotal)
	}

	// A token that expires: the header function is asked again on every
	// connect, and the consumer stops with the reason once Rails refuses.
	var calls atomic.Int32
	tokens := make(chan string, 2)
	tokens <- "Bearer secret-dave"
	c, err := cable.Dial(ctx, rails.CableURL(),
		cable.WithBackoff(backoff.Policy{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}),
		cable.WithHeaderFunc(func(context.Context) (map[string][]string, error) {
			calls.Add(1)
			tok := "Bearer expired"
			select {
			case tok = <-tokens:
			default:
			}
			return map[string][]string{"Authorization": {tok}}, nil
		}))
	if err != nil {
		t.Fatalf("Dial with token func: %v", err)
	}
	defer c.Close()
	// A confirmed subscription shows Rails has finished setting up the
	// connection (its internal channel, which remote disconnects use).
	if _, err := c.Subscribe(ctx, protocol.MustIdentifier("EchoChannel")); err != nil {
		t.Fatal(err)
	}
	// Rails 6.1 can still miss a remote disconnect sent right after the
	// connection opens: repeat it until the consumer reacts.
	for stopped := false; !stopped; {
		if err := rails.Disconnect(ctx, "dave", true); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done():
			stopped = true
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			t.Fatal("consumer did not stop after its token expired")
		}
	}
	if !errors.Is(c.Err(), cable.ErrUnauthorized) {
		t.Fatalf("Err = %v, want ErrUnauthorized", c.Err())
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("header func called %d times, want 2", n)
	}
}

func TestRailsRestart(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	events := make(chan cable.Event, 64)
	c := dialRails(t, ctx, rails, "erin",
		cable.WithBackoff(backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}),
		cable.WithEventHandler(func(e cable.Event) { events <- e }))

	confirmed := make(chan bool, 8)
	received := make(chan protocol.Payload, 64)
	_, err := c.Subscribe(ctx, protocol.MustIdentifier("NumbersChannel", "stream", "restart"),
		cable.WithHandler(cable.Handler{
			Connected: func(re bool) { confirmed <- re },
			Received:  func(m protocol.Payload) { received <- m },
		}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func(cable.Event) bool) cable.Event {
		t.Helper()
		for {
			select {
			case e := <-events:
				if ok(e) {
					return e
				}
			case <-ctx.Done():
				t.Fatalf("no %s event before the deadline", what)
			}
		}
	}
	waitFor("connected", func(e cable.Event) bool { return e.Kind == cable.EventConnected })
	if re := <-confirmed; re {
		t.Fatal("first confirmation says reconnected")
	}

	for round, restart := range []func(){
		// A server_restart disconnect frame (ActionCable.server.restart).
		func() {
			if err := rails.RestartCable(ctx); err != nil {
				t.Fatal(err)
			}
		},
		// The process killed and started again on the same port: the
		// socket just ends, without a close frame.
		func() { rails.Kill(); rails.Restart(t) },
	} {
		restart()
		d := waitFor("disconnected", func(e cable.Event) bool { return e.Kind == cable.EventDisconnected })
		if !d.WillReconnect {
			t.Fatalf("round %d: disconnected without reconnect: %v", round, d)
		}
		waitFor("reconnected", func(e cable.Event) bool { return e.Kind == cable.EventConnected && e.Reconnected })
		select {
		case re := <-confirmed:
			if !re {
				t.Fatalf("round %d: resubscription not marked reconnected", round)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: not resubscribed", round)
		}
		// What is broadcast after the new confirmation arrives.
		want := map[string]bool{}
		for i := range 20 {
			v := fmt.Sprintf("r%d-%d", round, i)
			want[v] = true
			if err := rails.Broadcast(ctx, "numbers:restart", map[string]string{"v": v}); err != nil {
				t.Fatal(err)
			}
		}
		// Rails 6.1 may reorder a burst: compare sets.
		for len(want) > 0 {
			var m struct{ V string }
			select {
			case p := <-received:
				if err := p.Decode(&m); err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatalf("round %d: missing %d messages", round, len(want))
			}
			if !want[m.V] {
				t.Fatalf("round %d: unexpected or duplicate message %q", round, m.V)
			}
			delete(want, m.V)
		}
	}
}

func TestRailsMessagePackOfferFallsBackToJSON(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Stock Rails speaks only JSON: offering MessagePack first must still
	// end in a working JSON connection.
	c := dialRails(t, ctx, rails, "frank", cable.WithCodecs(protocol.MessagePackCodec{}, protocol.JSONCodec{}))
	sub, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel", "room", "mp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rails.Broadcast(ctx, "chat:mp", map[string]int{"n": 7}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, ctx, sub); m.Format() != protocol.FormatJSON || string(m.Bytes()) != `{"n":7}` {
		t.Fatalf("got %v (%v)", m, m.Format())
	}
}
