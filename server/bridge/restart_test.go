//go:build unix

package bridge_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/bridge"
)

// TestRailsRestart restarts Rails under live sessions (SSE, long-poll and
// the WebSocket proxy), politely (ActionCable.server.restart: a
// server_restart disconnect frame, then close) and by SIGKILL and a new
// process. As with a WebSocket to Rails itself, each client is told: the
// session's last frame is Rails' disconnect, or the bridge's
// upstream_lost one when Rails just vanished, both with reconnect:true,
// and then the session ends. Clients reconnect (new sessions), resubscribe
// and get broadcasts again; no upstream connection is left behind.
func TestRailsRestart(t *testing.T) {
	for _, kill := range []bool{false, true} {
		name := "RestartCable"
		if kill {
			name = "KillRestart"
		}
		t.Run(name, func(t *testing.T) { testRestart(t, kill) })
	}
}

func testRestart(t *testing.T, kill bool) {
	e := newEnv(t)
	ctx := testCtx(t, 60*time.Second)
	room := fmt.Sprintf("restart-%v", kill)
	chat := identifier("ChatChannel", "room", room)

	open := func() map[string]downstream {
		t.Helper()
		_, s1, body, err := e.createAs(ctx, authHeader("alice"))
		if err != nil || s1.SID == "" {
			t.Fatalf("create: %v %s", err, body)
		}
		st, _, err := e.openSSE(ctx, s1, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		sse := &sseDown{e: e, s: s1, st: st}
		t.Cleanup(sse.close)
		_, s2, body, err := e.createAs(ctx, authHeader("bob"))
		if err != nil || s2.SID == "" {
			t.Fatalf("create: %v %s", err, body)
		}
		proxy, err := e.openProxy(ctx, protocol.SubprotocolJSON)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proxy.close)
		return map[string]downstream{"sse": sse, "longpoll": &pollDown{e: e, s: s2}, "ws": proxy}
	}
	subscribe := func(what string, d downstream) {
		t.Helper()
		if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
			t.Fatalf("%s: %v %v, want a welcome", what, f, err)
		}
		if err := d.command(ctx, cmd("subscribe", chat, "")); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "confirm_subscription" {
			t.Fatalf("%s: %v %v, want the confirmation", what, f, err)
		}
	}
	receive := func(what string, d downstream, text string) {
		t.Helper()
		f, err := nextMatch(ctx, d, nil, notPing)
		if err != nil || f.kind() != "message" || string(f.Message) != fmt.Sprintf(`{"text":%q}`, text) {
			t.Fatalf("%s: %v %v, want the broadcast %q", what, f, err, text)
		}
	}
	downs := open()
	for what, d := range downs {
		subscribe(what, d)
	}
	if err := e.rails.Broadcast(ctx, "chat:"+room, map[string]string{"text": "before"}); err != nil {
		t.Fatal(err)
	}
	for what, d := range downs {
		receive(what, d, "before")
	}

	reason := "server_restart"
	if kill {
		reason = "upstream_lost"
		e.rails.Kill()
	} else if err := e.rails.RestartCable(ctx); err != nil {
		t.Fatal(err)
	}
	for what, d := range downs {
		// The client is told, in sequence, and then the session ends.
		f, err := nextMatch(ctx, d, nil, notPing)
		if err != nil || f.kind() != "disconnect" || f.Reason != reason || f.Reconnect == nil || !*f.Reconnect {
			t.Fatalf("%s: %v %v, want a %s disconnect that reconnects", what, f, err, reason)
		}
		if f, err := nextMatch(ctx, d, nil, notPing); err == nil {
			t.Fatalf("%s: %v after the last frame, want the end", what, f)
		}
		d.close()
	}
	if kill {
		e.rails.Restart(t)
	} else {
		// Rails counts the 3 closed connections on: restart halted the
		// worker pool that would have run their disconnect callbacks.
		e.railsStale = 3
	}
	if err := waitFor(ctx, "no session left", func() bool { return e.bridge.Stats().Sessions == 0 }); err != nil {
		t.Errorf("%d sessions left after their upstream ended: %v", e.bridge.Stats().Sessions, err)
	}

	// The clients reconnect as they would to Rails.
	downs = open()
	for what, d := range downs {
		subscribe(what+" after the restart", d)
	}
	if err := e.rails.Broadcast(ctx, "chat:"+room, map[string]string{"text": "after"}); err != nil {
		t.Fatal(err)
	}
	for what, d := range downs {
		receive(what+" after the restart", d, "after")
	}
	if n := e.bridge.Stats().UpstreamReconnects; n != 0 {
		t.Errorf("upstream reconnects %d, want 0 (sessions end with their upstream)", n)
	}
	if n := socketsTo(e.rails.Port()); n != 3 && n != -1 {
		t.Errorf("%d sockets to Rails, want 3", n)
	}
	if st, err := e.rails.WaitStats(ctx, func(s railstest.Stats) bool { return s.Connections == e.railsStale+3 }); err != nil {
		t.Errorf("Rails connections %+v %v, want %d", st, err, e.railsStale+3)
	}
}

// TestSessionExpiry: a session with no client attached expires after the
// TTL and its upstream socket is closed; one with an SSE stream attached
// lives on until the stream goes.
func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, bridge.WithSessionTTL(500*time.Millisecond))
	ctx := testCtx(t, 30*time.Second)
	idle := e.create(ctx, "alice")
	busy := e.create(ctx, "bob")
	st, _, err := e.openSSE(ctx, busy, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &sseDown{e: e, s: busy, st: st}
	defer d.close()
	if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
		t.Fatalf("welcome: %v %v", f, err)
	}
	if _, err := e.rails.WaitStats(ctx, func(s railstest.Stats) bool { return s.Connections == 2 }); err != nil {
		t.Fatal(err)
	}

	if err := waitFor(ctx, "the idle session to expire", func() bool { return e.bridge.Stats().Sessions == 1 }); err != nil {
		t.Fatal(err)
	}
	if st, err := e.rails.WaitStats(ctx, func(s railstest.Stats) bool { return s.Connections == 1 }); err != nil {
		t.Fatalf("the expired session's upstream is still open: %+v %v", st, err)
	}
	resp, body, err := e.request(ctx, "GET", "/sessions/"+idle.SID+"/poll?timeout=0&token="+idle.Token, nil, "")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("poll of an expired session: %v %v %s, want 404", resp, err, body)
	}

	// The attached session works on.
	chat := identifier("ChatChannel", "room", "expiry")
	if err := d.command(ctx, cmd("subscribe", chat, "")); err != nil {
		t.Fatal(err)
	}
	if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "confirm_subscription" {
		t.Fatalf("%v %v", f, err)
	}

	// Once its stream goes, it expires too.
	d.close()
	if err := waitFor(ctx, "the second session to expire", func() bool { return e.bridge.Stats().Sessions == 0 }); err != nil {
		t.Fatal(err)
	}
	if st, err := e.rails.WaitStats(ctx, func(s railstest.Stats) bool { return s.Connections == 0 }); err != nil {
		t.Fatalf("upstream sockets left open: %+v %v", st, err)
	}
}
