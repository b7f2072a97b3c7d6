//go:build unix

package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/bridge"
)

// TestDownstreams runs the same ActionCable conversation with Rails over
// every downstream the bridge offers: subscribe and confirm, reject,
// perform (EchoChannel echo, ChatChannel speak), a broadcast from Rails,
// and Rails' pings passing through.
func TestDownstreams(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name    string
		open    func(ctx context.Context, t *testing.T) (downstream, error)
		welcome bool // the script starts at the welcome
	}{
		{"sse", func(ctx context.Context, t *testing.T) (downstream, error) {
			_, s, body, err := e.createAs(ctx, authHeader("alice"))
			if err != nil || s.SID == "" {
				return nil, fmt.Errorf("create: %v %s", err, body)
			}
			st, _, err := e.openSSE(ctx, s, nil, nil)
			if err != nil {
				return nil, err
			}
			return &sseDown{e: e, s: s, st: st}, nil
		}, true},
		{"longpoll", func(ctx context.Context, t *testing.T) (downstream, error) {
			_, s, body, err := e.createAs(ctx, authHeader("alice"))
			if err != nil || s.SID == "" {
				return nil, fmt.Errorf("create: %v %s", err, body)
			}
			return &pollDown{e: e, s: s}, nil
		}, true},
		{"ws-json", func(ctx context.Context, t *testing.T) (downstream, error) {
			return e.openProxy(ctx, protocol.SubprotocolJSON)
		}, true},
		{"ws-msgpack", func(ctx context.Context, t *testing.T) (downstream, error) {
			return e.openProxy(ctx, protocol.SubprotocolMessagePack)
		}, true},
		{"ws-reattach", func(ctx context.Context, t *testing.T) (downstream, error) {
			// Start over long-poll, then move the session to a WebSocket
			// at the cursor: the welcome was read over long-poll, the
			// rest must follow on the socket with no gap.
			_, s, body, err := e.createAs(ctx, authHeader("alice"))
			if err != nil || s.SID == "" {
				return nil, fmt.Errorf("create: %v %s", err, body)
			}
			lp := &pollDown{e: e, s: s}
			f, err := nextMatch(ctx, lp, nil, notPing)
			if err != nil {
				return nil, err
			}
			if f.kind() != "welcome" || lp.after != 1 {
				return nil, fmt.Errorf("long-poll: first frame %v at %d", f, lp.after)
			}
			q := url.Values{"token": {s.Token}, "after": {"1"}}
			c, _, err := e.dialWS(ctx, "/sessions/"+s.SID+"/ws?"+q.Encode(), nil, protocol.SubprotocolJSON)
			if err != nil {
				return nil, err
			}
			d, err := newWSDown(c)
			if err != nil {
				return nil, err
			}
			d.after = 1
			return d, nil
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t, 30*time.Second)
			d, err := tc.open(ctx, t)
			if err != nil {
				t.Fatal(err)
			}
			defer d.close()
			conversation(t, ctx, e, d, tc.name, tc.welcome)
		})
	}
}

// openProxy opens the plain ActionCable proxy on / as alice, speaking
// subprotocol.
func (e *env) openProxy(ctx context.Context, subprotocol string) (*wsDown, error) {
	c, resp, err := e.dialWS(ctx, "/", authHeader("alice"), subprotocol)
	if err != nil {
		return nil, fmt.Errorf("dial: %v (%v)", err, resp)
	}
	if c.Subprotocol() != subprotocol {
		c.CloseNow()
		return nil, fmt.Errorf("subprotocol %q, want %q", c.Subprotocol(), subprotocol)
	}
	return newWSDown(c)
}

func notPing(f tframe) bool { return f.kind() != "ping" }

// conversation is the script every downstream passes.
func conversation(t *testing.T, ctx context.Context, e *env, d downstream, name string, welcome bool) {
	t.Helper()
	pings := 0
	next := func(what string, ok func(tframe) bool) tframe {
		t.Helper()
		f, err := nextMatch(ctx, d, &pings, ok)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		return f
	}
	do := func(c string) {
		t.Helper()
		if err := d.command(ctx, c); err != nil {
			t.Fatalf("command %s: %v", c, err)
		}
	}
	is := func(kind, id string) func(tframe) bool {
		return func(f tframe) bool { return f.kind() == kind && f.Identifier == id }
	}
	if welcome {
		if f := next("welcome", notPing); f.kind() != "welcome" || f.Seq != 1 {
			t.Fatalf("first frame %v (seq %d), want the welcome at 1", f, f.Seq)
		}
	}

	chat := identifier("ChatChannel", "room", name)
	do(cmd("subscribe", chat, ""))
	next("chat confirmation", is("confirm_subscription", chat))

	reject := identifier("RejectChannel", "for", name)
	do(cmd("subscribe", reject, ""))
	next("rejection", is("reject_subscription", reject))

	echo := identifier("EchoChannel", "who", name)
	do(cmd("subscribe", echo, ""))
	params := next("echo params", is("message", echo))
	if want := fmt.Sprintf(`{"params":{"who":%q}}`, name); string(params.Message) != want {
		t.Errorf("echo params %s, want %s", params.Message, want)
	}
	next("echo confirmation", is("confirm_subscription", echo))

	do(cmd("message", echo, `{"action":"echo","text":"ping-pong"}`))
	got := next("echo", is("message", echo))
	var eb struct{ Text, User string }
	if json.Unmarshal(got.Message, &eb); eb.Text != "ping-pong" || eb.User != "alice" {
		t.Errorf("echo %s", got.Message)
	}

	do(cmd("message", chat, fmt.Sprintf(`{"action":"speak","text":"hello from %s"}`, name)))
	got = next("speak broadcast", is("message", chat))
	var cb struct{ User, Text, Room string }
	if json.Unmarshal(got.Message, &cb); cb.User != "alice" || cb.Text != "hello from "+name || cb.Room != name {
		t.Errorf("speak broadcast %s", got.Message)
	}

	if err := e.rails.Broadcast(ctx, "chat:"+name, map[string]any{"text": "from rails", "to": name}); err != nil {
		t.Fatal(err)
	}
	got = next("Rails broadcast", is("message", chat))
	if want := fmt.Sprintf(`{"text":"from rails","to":%q}`, name); string(got.Message) != want {
		t.Errorf("Rails broadcast %s, want %s", got.Message, want)
	}

	if pings == 0 {
		// Rails pings every 3 s; the conversation may have been quicker.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := nextMatch(pctx, d, &pings, func(f tframe) bool { return f.kind() == "ping" }); err != nil {
			t.Fatalf("no ping passed through: %v", err)
		}
	}
}

// TestSSEStream checks the SSE framing: headers, retry, ids, keep-alive
// comments, and pings passing through unnumbered within Rails' 3 s period.
func TestSSEStream(t *testing.T) {
	e := newEnv(t, bridge.WithKeepAlive(50*time.Millisecond))
	ctx := testCtx(t, 20*time.Second)
	s := e.create(ctx, "alice")
	opened := time.Now()
	st, _, err := e.openSSE(ctx, s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := st.Resp.Header
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache, no-transform",
		"X-Accel-Buffering": "no",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	first, err := st.next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Retry == "" || first.HasData {
		t.Errorf("first block %+v, want a retry field alone", first)
	}
	var (
		welcome, ping   bool
		keepAlives      int
		pingAfter       time.Duration
		pingHadNoID     bool
		welcomeID, want = "", fmt.Sprintf("%d:1", s.Epoch)
	)
	for !(welcome && ping && keepAlives >= 2) {
		ev, err := st.next(ctx)
		if err != nil {
			t.Fatalf("welcome %v, ping %v, keep-alives %d: %v", welcome, ping, keepAlives, err)
		}
		switch {
		case ev.IsComment:
			if ev.Comment != "keep-alive" {
				t.Errorf("comment %q", ev.Comment)
			}
			keepAlives++
		case ev.HasData:
			f, err := parseFrame([]byte(ev.Data))
			if err != nil {
				t.Fatal(err)
			}
			switch f.kind() {
			case "welcome":
				welcome, welcomeID = true, ev.ID
			case "ping":
				if !ping {
					ping, pingAfter, pingHadNoID = true, time.Since(opened), !ev.HasID && ev.Event == ""
				}
			default:
				t.Errorf("unexpected frame %s", ev.Data)
			}
		}
	}
	if welcomeID != want {
		t.Errorf("welcome id %q, want %q", welcomeID, want)
	}
	if !pingHadNoID {
		t.Error("the ping came with an id or an event name")
	}
	if pingAfter > 3500*time.Millisecond {
		t.Errorf("first ping after %v, want within 3.5 s (Rails pings every 3 s)", pingAfter)
	}
	t.Logf("first ping after %v; %d keep-alives", pingAfter.Round(time.Millisecond), keepAlives)
}
