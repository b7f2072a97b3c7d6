package cable_test

// Tests of Subscribe, Perform, Send, Unsubscribe, buffering and handlers
// against internal/cabletest. Helpers (rig, lobby, kitchen, text) are in
// consumer_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/cabletest"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

// noCommand fails if the server receives a command matching match within d.
func (r *rig) noCommand(match func(cabletest.Command) bool, d time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, d)
	defer cancel()
	if cmd, err := r.srv.NextCommand(ctx, match); err == nil {
		r.t.Fatalf("unexpected command %+v on connection %d", cmd.Command, cmd.Conn.ID())
	}
}

// onConn matches command for identifier on connection id.
func onConn(id int, command, identifier string) func(cabletest.Command) bool {
	return func(c cabletest.Command) bool {
		return c.Conn.ID() == id && cabletest.Is(command, identifier)(c)
	}
}

// refusable returns a handshake option whose refusal (HTTP 503) the test
// switches on and off.
func refusable() (cabletest.Option, *atomic.Bool) {
	var refuse atomic.Bool
	return cabletest.WithHandshake(func(*http.Request) int {
		if refuse.Load() {
			return http.StatusServiceUnavailable
		}
		return 0
	}), &refuse
}

// disconnect drops the server's connection while new handshakes are
// refused, and waits until the consumer has noticed.
func (r *rig) disconnect(sc *cabletest.Conn, refuse *atomic.Bool) {
	r.t.Helper()
	refuse.Store(true)
	sc.Drop()
	r.event(cable.EventDisconnected)
}

func TestSubscribeConfirmed(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	sc := r.conn()
	s := r.subscribe(c, lobby)
	cmd := r.command(protocol.CommandSubscribe, lobby)
	if cmd.Conn != sc || cmd.Data != "" {
		t.Errorf("subscribe %+v", cmd.Command)
	}
	if !s.Confirmed() || s.Identifier() != lobby || s.Messages() == nil || s.Err() != nil || s.Dropped() != 0 {
		t.Errorf("Confirmed() %v, Identifier() %q, Err() %v", s.Confirmed(), s.Identifier(), s.Err())
	}
	r.broadcast(sc, lobby, text{"one"})
	r.broadcast(sc, lobby, text{"two"})
	if a, b := r.receiveText(s), r.receiveText(s); a != "one" || b != "two" {
		t.Errorf("got %q, %q", a, b)
	}
}

func TestSubscribeRejected(t *testing.T) {
	r := newRig(t, cabletest.WithSubscribeReply(func(cmd cabletest.Command) cabletest.Reply {
		if cmd.Identifier == kitchen {
			return cabletest.Reject
		}
		return cabletest.Confirm
	}))
	c := r.dial()
	rejected := make(chan struct{}, 1)
	for range 2 { // a rejected identifier may be tried again
		_, err := c.Subscribe(r.ctx, kitchen, cable.WithHandler(cable.Handler{Rejected: func() { rejected <- struct{}{} }}))
		if !errors.Is(err, cable.ErrRejected) {
			t.Fatalf("err = %v, want ErrRejected", err)
		}
	}
	select {
	case <-rejected:
		t.Error("Rejected called for the first subscribe (that is Subscribe's error)")
	default:
	}
	// The consumer carries on.
	s := r.subscribe(c, lobby)
	if c.Err() != nil || !s.Confirmed() {
		t.Errorf("Err() = %v", c.Err())
	}
}

func TestSubscribeContextEnds(t *testing.T) {
	t.Run("connected", func(t *testing.T) {
		r := newRig(t, cabletest.WithSubscribeReply(func(cabletest.Command) cabletest.Reply { return cabletest.Ignore }))
		c := r.dial()
		ctx, cancel := context.WithTimeout(r.ctx, 100*time.Millisecond)
		defer cancel()
		_, err := c.Subscribe(ctx, lobby)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		r.command(protocol.CommandSubscribe, lobby)
		r.command(protocol.CommandUnsubscribe, lobby)
		// The identifier is free again.
		go func() {
			if cmd, err := r.srv.NextCommand(r.ctx, cabletest.Is(protocol.CommandSubscribe, lobby)); err == nil {
				cmd.Conn.Confirm(r.ctx, lobby)
			}
		}()
		r.subscribe(c, lobby)
	})
	t.Run("disconnected", func(t *testing.T) {
		refuse, refusing := refusable()
		r := newRig(t, refuse)
		c := r.dial()
		r.disconnect(r.conn(), refusing)
		ctx, cancel := context.WithTimeout(r.ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := c.Subscribe(ctx, lobby); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		refusing.Store(false)
		r.event(cable.EventConnected)
		r.subscribe(c, kitchen)
		// The abandoned subscription is neither sent nor withdrawn.
		cmd, err := r.srv.NextCommand(r.ctx, nil)
		if err != nil || cmd.Command.Command != protocol.CommandSubscribe || cmd.Identifier != kitchen {
			t.Errorf("first command after the reconnect: %+v, %v", cmd.Command, err)
		}
	})
}

func TestSubscribeRepeatedUntilConfirmed(t *testing.T) {
	var subscribes atomic.Int32
	r := newRig(t, cabletest.WithSubscribeReply(func(cmd cabletest.Command) cabletest.Reply {
		if subscribes.Add(1) < 3 {
			return cabletest.Ignore // lost, as Rails can lose them (rails/rails#25333)
		}
		return cabletest.Confirm
	}))
	c := r.dial(cable.WithResubscribeInterval(20 * time.Millisecond))
	start := time.Now()
	s := r.subscribe(c, lobby)
	if n := subscribes.Load(); n != 3 {
		t.Errorf("%d subscribes sent, want 3", n)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("3 subscribes in %v: not paced by the interval", d)
	}
	for range 3 {
		r.command(protocol.CommandSubscribe, lobby)
	}
	r.noCommand(cabletest.Is(protocol.CommandSubscribe, ""), 100*time.Millisecond)
	if !s.Confirmed() {
		t.Error("not confirmed")
	}
}

func TestMessageBeforeConfirmIsDelivered(t *testing.T) {
	r := newRig(t, cabletest.WithSubscribeReply(func(cabletest.Command) cabletest.Reply { return cabletest.Ignore }))
	c := r.dial()
	go func() {
		// rails/rails#25333: a broadcast can overtake the confirmation.
		cmd, err := r.srv.NextCommand(r.ctx, cabletest.Is(protocol.CommandSubscribe, lobby))
		if err != nil {
			return
		}
		cmd.Conn.Broadcast(r.ctx, lobby, text{"early"})
		cmd.Conn.Confirm(r.ctx, lobby)
		cmd.Conn.Broadcast(r.ctx, lobby, text{"late"})
	}()
	s := r.subscribe(c, lobby)
	if a, b := r.receiveText(s), r.receiveText(s); a != "early" || b != "late" {
		t.Errorf("got %q, %q", a, b)
	}
}

func TestDuplicateSubscription(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	s := r.subscribe(c, lobby)
	for _, opts := range [][]cable.SubscribeOption{nil, {cable.WithHandler(cable.Handler{})}} {
		if _, err := c.Subscribe(r.ctx, lobby, opts...); !errors.Is(err, cable.ErrDuplicateSubscription) {
			t.Errorf("err = %v, want ErrDuplicateSubscription", err)
		}
	}
	if s.Err() != nil || !s.Confirmed() {
		t.Errorf("the first subscription suffered: %v", s.Err())
	}
	r.command(protocol.CommandSubscribe, lobby)
	r.noCommand(cabletest.Is(protocol.CommandSubscribe, lobby), 50*time.Millisecond)
}

func TestSubscribeWhileDisconnected(t *testing.T) {
	refuse, refusing := refusable()
	r := newRig(t, refuse)
	c := r.dial()
	r.disconnect(r.conn(), refusing)
	if c.Connected() {
		t.Fatal("still connected")
	}
	type result struct {
		s   *cable.Subscription
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.Subscribe(r.ctx, lobby)
		done <- result{s, err}
	}()
	// Let a couple of refused attempts go by with Subscribe waiting.
	r.event(cable.EventReconnecting)
	r.event(cable.EventReconnecting)
	select {
	case res := <-done:
		t.Fatalf("Subscribe returned while disconnected: %v", res.err)
	default:
	}
	refusing.Store(false)
	sc := r.conn()
	cmd := r.command(protocol.CommandSubscribe, lobby)
	if cmd.Conn != sc {
		t.Errorf("subscribe on connection %d", cmd.Conn.ID())
	}
	var res result
	select {
	case res = <-done:
	case <-r.ctx.Done():
		t.Fatal("Subscribe did not return after the reconnect")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	r.broadcast(sc, lobby, text{"hello"})
	if got := r.receiveText(res.s); got != "hello" {
		t.Errorf("got %q", got)
	}
}

func TestPerform(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	s := r.subscribe(c, lobby)
	type speak struct {
		Text string `json:"text"`
		To   []int  `json:"to,omitempty"`
	}
	for _, tc := range []struct {
		name string
		data any
		want string
	}{
		{"struct", speak{Text: "hi", To: []int{1, 2}}, `{"text":"hi","to":[1,2],"action":"speak"}`},
		{"map", map[string]any{"n": 1}, `{"n":1,"action":"speak"}`},
		{"nil", nil, `{"action":"speak"}`},
		{"empty object", struct{}{}, `{"action":"speak"}`},
		{"raw with spaces", json.RawMessage(" { } "), `{"action":"speak"}`},
		{"raw", json.RawMessage(`{"a":"b"}`), `{"a":"b","action":"speak"}`},
		{"escapes", map[string]string{"q": `"<&>"`}, `{"q":"\"\u003c\u0026\u003e\"","action":"speak"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Perform(r.ctx, "speak", tc.data); err != nil {
				t.Fatal(err)
			}
			cmd := r.command(protocol.CommandMessage, lobby)
			if cmd.Data != tc.want {
				t.Errorf("data %s, want %s", cmd.Data, tc.want)
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(cmd.Data), &fields); err != nil || fields["action"] != "speak" {
				t.Errorf("data %s: %v", cmd.Data, err)
			}
		})
	}
	t.Run("not an object", func(t *testing.T) {
		for _, data := range []any{42, "text", []int{1}, true, map[string]any(nil), (*speak)(nil), json.RawMessage(`[]`), make(chan int)} {
			if err := s.Perform(r.ctx, "speak", data); err == nil {
				t.Errorf("Perform(%T %v) succeeded", data, data)
			}
		}
		// Nothing was sent: the next message command is this one.
		if err := s.Perform(r.ctx, "after", nil); err != nil {
			t.Fatal(err)
		}
		if cmd := r.command(protocol.CommandMessage, lobby); cmd.Data != `{"action":"after"}` {
			t.Errorf("next command data %s", cmd.Data)
		}
	})
	t.Run("action escaping", func(t *testing.T) {
		if err := s.Perform(r.ctx, `a"b`, nil); err != nil {
			t.Fatal(err)
		}
		var fields map[string]string
		cmd := r.command(protocol.CommandMessage, lobby)
		if err := json.Unmarshal([]byte(cmd.Data), &fields); err != nil || fields["action"] != `a"b` {
			t.Errorf("data %s: %v", cmd.Data, err)
		}
	})
}

func TestSend(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	s := r.subscribe(c, lobby)
	if err := s.Send(r.ctx, map[string]any{"action": "raw", "n": 1}); err != nil {
		t.Fatal(err)
	}
	if cmd := r.command(protocol.CommandMessage, lobby); cmd.Data != `{"action":"raw","n":1}` {
		t.Errorf("data %s", cmd.Data)
	}
	if err := s.Send(r.ctx, make(chan int)); err == nil {
		t.Error("Send of a channel succeeded")
	}
}

func TestPerformNotConnected(t *testing.T) {
	refuse, refusing := refusable()
	r := newRig(t, refuse)
	c := r.dial()
	s := r.subscribe(c, lobby)
	r.disconnect(r.conn(), refusing)
	start := time.Now()
	for _, err := range []error{s.Perform(r.ctx, "lost", nil), s.Send(r.ctx, map[string]string{"action": "lost"})} {
		if !errors.Is(err, cable.ErrNotConnected) {
			t.Errorf("err = %v, want ErrNotConnected", err)
		}
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("failing took %v", d)
	}
	refusing.Store(false)
	r.srv.NextCommand(r.ctx, onConn(2, protocol.CommandSubscribe, lobby))
	// The server confirmed lobby before kitchen: once kitchen's Subscribe
	// returns, the consumer has lobby's confirmation too.
	r.subscribe(c, kitchen)
	if err := s.Perform(r.ctx, "found", nil); err != nil {
		t.Fatal(err)
	}
	// The action performed while disconnected was never queued.
	if cmd := r.command(protocol.CommandMessage, ""); cmd.Data != `{"action":"found"}` {
		t.Errorf("first message command %s", cmd.Data)
	}
}

func TestPerformBeforeReconfirm(t *testing.T) {
	r := newRig(t, cabletest.WithSubscribeReply(func(cmd cabletest.Command) cabletest.Reply {
		if cmd.Conn.ID() > 1 {
			return cabletest.Ignore
		}
		return cabletest.Confirm
	}))
	c := r.dial()
	s := r.subscribe(c, lobby)
	r.conn().Drop()
	r.conn()
	r.command(protocol.CommandSubscribe, lobby)
	r.command(protocol.CommandSubscribe, lobby) // the one on connection 2
	r.event(cable.EventConnected)
	r.event(cable.EventConnected)
	if s.Confirmed() {
		t.Fatal("confirmed without a confirmation")
	}
	if err := s.Perform(r.ctx, "early", nil); !errors.Is(err, cable.ErrNotConnected) {
		t.Errorf("err = %v, want ErrNotConnected", err)
	}
	if !c.Connected() {
		t.Error("not connected")
	}
}

func TestUnsubscribe(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	sc := r.conn()
	s := r.subscribe(c, lobby)
	if err := s.Unsubscribe(r.ctx); err != nil {
		t.Fatal(err)
	}
	r.command(protocol.CommandUnsubscribe, lobby)
	r.wait(s.Done(), "subscription ended")
	if _, ok := <-s.Messages(); ok || !errors.Is(s.Err(), cable.ErrUnsubscribed) || s.Confirmed() {
		t.Errorf("after Unsubscribe: Err() = %v", s.Err())
	}
	for _, err := range []error{s.Perform(r.ctx, "x", nil), s.Send(r.ctx, map[string]string{"action": "x"})} {
		if !errors.Is(err, cable.ErrUnsubscribed) {
			t.Errorf("err = %v, want ErrUnsubscribed", err)
		}
	}
	if err := s.Unsubscribe(r.ctx); err != nil {
		t.Errorf("second Unsubscribe: %v", err)
	}
	r.noCommand(cabletest.Is(protocol.CommandUnsubscribe, ""), 50*time.Millisecond)
	// A late broadcast is counted, not delivered.
	r.broadcast(sc, lobby, text{"late"})
	r.subscribe(c, kitchen) // the consumer has read "late"
	s2 := r.subscribe(c, lobby)
	r.broadcast(sc, lobby, text{"new"})
	if got := r.receiveText(s2); got != "new" {
		t.Errorf("got %q", got)
	}
	if n := c.Stats().UnknownIdentifier; n != 1 {
		t.Errorf("UnknownIdentifier = %d", n)
	}
}

func TestBufferOverflowDropsNewest(t *testing.T) {
	r := newRig(t, cabletest.WithSubscribeReply(func(cmd cabletest.Command) cabletest.Reply {
		if cmd.Identifier == kitchen {
			return cabletest.Ignore
		}
		return cabletest.Confirm
	}))
	c := r.dial()
	sc := r.conn()
	s := r.subscribe(c, lobby, cable.WithBuffer(2))
	go func() {
		if _, err := r.srv.NextCommand(r.ctx, cabletest.Is(protocol.CommandSubscribe, kitchen)); err != nil {
			return
		}
		for i := range 10 {
			sc.Broadcast(r.ctx, lobby, text{fmt.Sprint(i)})
		}
		// The consumer reads frames in order: once kitchen is confirmed,
		// all ten messages have been handled.
		sc.Confirm(r.ctx, kitchen)
	}()
	r.subscribe(c, kitchen)
	if n := s.Dropped(); n != 8 {
		t.Errorf("Dropped() = %d, want 8", n)
	}
	if a, b := r.receiveText(s), r.receiveText(s); a != "0" || b != "1" {
		t.Errorf("got %q, %q, want the oldest two", a, b)
	}
	r.broadcast(sc, lobby, text{"room again"})
	if got := r.receiveText(s); got != "room again" {
		t.Errorf("got %q", got)
	}
}

func TestHandlerBufferOverflow(t *testing.T) {
	r := newRig(t)
	c := r.dial()
	sc := r.conn()
	release := make(chan struct{})
	got := make(chan int, 10)
	s := r.subscribe(c, lobby, cable.WithBuffer(2), cable.WithHandler(cable.Handler{Received: func(p protocol.Payload) {
		<-release
		var m text
		p.Decode(&m)
		var n int
		fmt.Sscan(m.Text, &n)
		got <- n
	}}))
	for i := range 10 {
		r.broadcast(sc, lobby, text{fmt.Sprint(i)})
	}
	r.subscribe(c, kitchen) // all ten handled by the reader
	close(release)
	// The handler's goroutine takes queued messages in batches: at most
	// one batch (≤ 2) is in its hands while 2 more wait; the rest drop.
	d := int(s.Dropped())
	if d < 6 || d > 8 {
		t.Fatalf("Dropped() = %d, want 6 to 8", d)
	}
	last := -1
	for i := range 10 - d {
		select {
		case n := <-got:
			if n <= last || i == 0 && n != 0 {
				t.Errorf("message %d is %d after %d", i, n, last)
			}
			last = n
		case <-r.ctx.Done():
			t.Fatalf("message %d not delivered", i)
		}
	}
}

// goid returns the current goroutine's id, for checking that callbacks share
// one goroutine.
func goid() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	return string(b[:bytes.IndexByte(b, ' ')])
}

func TestHandlerCallbacksInOrder(t *testing.T) {
	refuse, refusing := refusable()
	r := newRig(t, refuse)
	c := r.dial()
	sc := r.conn()
	var (
		calls    = make(chan string, 100)
		inflight atomic.Int32
		mu       sync.Mutex
		ids      = map[string]bool{}
	)
	enter := func(call string) {
		if inflight.Add(1) != 1 {
			calls <- "overlap"
		}
		mu.Lock()
		ids[goid()] = true
		mu.Unlock()
		calls <- call
		inflight.Add(-1)
	}
	s := r.subscribe(c, lobby, cable.WithHandler(cable.Handler{
		Received: func(p protocol.Payload) {
			var m text
			p.Decode(&m)
			enter("received " + m.Text)
		},
		Connected:    func(re bool) { enter(fmt.Sprintf("connected(%v)", re)) },
		Disconnected: func(will bool) { enter(fmt.Sprintf("disconnected(%v)", will)) },
		Rejected:     func() { enter("rejected") },
	}))
	if s.Messages() != nil {
		t.Error("Messages() is not nil for a handler subscription")
	}
	r.broadcast(sc, lobby, text{"1"})
	r.broadcast(sc, lobby, text{"2"})
	r.expectCalls(calls, "connected(false)", "received 1", "received 2")
	r.disconnect(sc, refusing)
	r.expectCalls(calls, "disconnected(true)")
	refusing.Store(false)
	sc2 := r.conn()
	r.expectCalls(calls, "connected(true)")
	r.broadcast(sc2, lobby, text{"3"})
	r.expectCalls(calls, "received 3")
	c.Close()
	r.expectCalls(calls, "disconnected(false)")
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 1 {
		t.Errorf("callbacks ran on %d goroutines", len(ids))
	}
}

func TestHandlerRejectedAfterReconnect(t *testing.T) {
	r := newRig(t, cabletest.WithSubscribeReply(func(cmd cabletest.Command) cabletest.Reply {
		if cmd.Conn.ID() > 1 {
			return cabletest.Reject
		}
		return cabletest.Confirm
	}))
	c := r.dial()
	calls := make(chan string, 10)
	s := r.subscribe(c, lobby, cable.WithHandler(cable.Handler{
		Connected:    func(re bool) { calls <- fmt.Sprintf("connected(%v)", re) },
		Disconnected: func(will bool) { calls <- fmt.Sprintf("disconnected(%v)", will) },
		Rejected:     func() { calls <- "rejected" },
	}))
	r.conn().Drop()
	r.expectCalls(calls, "connected(false)", "disconnected(true)", "rejected")
	r.wait(s.Done(), "subscription ended")
	if !errors.Is(s.Err(), cable.ErrRejected) {
		t.Errorf("Err() = %v", s.Err())
	}
	if c.Err() != nil {
		t.Errorf("consumer stopped: %v", c.Err())
	}
	// The consumer forgot it: the identifier can be subscribed again.
	if _, err := c.Subscribe(r.ctx, lobby); !errors.Is(err, cable.ErrRejected) {
		t.Errorf("resubscribe: %v", err)
	}
}
