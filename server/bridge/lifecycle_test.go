//go:build unix

package bridge_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

func TestCreateBodyTooLarge(t *testing.T) {
	e := newEnv(t, bridge.WithBodyLimit(1024))
	ctx := testCtx(t, 20*time.Second)
	before, _ := e.rails.Stats(ctx)
	resp, body := e.do(ctx, "POST", "/sessions", authHeader("alice"), strings.Repeat("x", 5000))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "body_too_large") {
		t.Fatalf("create with a 5000-byte body: %d %s, want 413", resp.StatusCode, body)
	}
	if after, _ := e.rails.Stats(ctx); after.ConnectsTotal != before.ConnectsTotal {
		t.Fatalf("Rails saw %d connections for a refused create", after.ConnectsTotal-before.ConnectsTotal)
	}
}

// A browser cannot set Authorization: the token it would put in the
// cable URL's query goes on POST /sessions and reaches Rails.
func TestCreatePassesQueryToRails(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 20*time.Second)
	resp, body := e.do(ctx, "POST", "/sessions?token=secret-quinn", nil, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create with ?token: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(ctx, "POST", "/sessions?token=wrong", nil, "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("create with a bad ?token: %d %s, want 401", resp.StatusCode, body)
	}
}

func TestCreateFailsFastWhenRailsIsDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	b := bridge.New("ws://"+addr+"/cable", bridge.WithCreateTimeout(10*time.Second))
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close(context.Background())
	start := time.Now()
	resp, err := http.Post(srv.URL+"/sessions", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v: the create waited for its timeout instead of failing at the refusal", d)
	}
}

// Rails dropping the upstream (a remote disconnect; Rails 6.1 sends no
// frame) ends the session with an upstream_lost disconnect that
// reconnects, and commands are refused from then on (never acknowledged
// and dropped); shutting the bridge down ends every session with a final
// server_restart, and /healthz reports the drain.
func TestUpstreamLossAndShutdown(t *testing.T) {
	e := newEnv(t, bridge.WithSessionTTL(time.Minute))
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "rosa")
	var after uint64
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "welcome" })
	// A confirmed subscription shows Rails has set the connection up fully
	// (remote disconnects reach it through an internal channel joined
	// asynchronously).
	if code, body := e.send(ctx, s, 1, cmd("subscribe", lobby, "")); code != http.StatusOK {
		t.Fatalf("send: %d %s", code, body)
	}
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	if err := e.rails.Disconnect(ctx, "rosa", false); err != nil {
		t.Fatal(err)
	}
	f := e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "disconnect" })
	if !strings.Contains(string(f), `"reason":"upstream_lost"`) || !strings.Contains(string(f), `"reconnect":true`) {
		t.Fatalf("last frame %s, want an upstream_lost disconnect that reconnects", f)
	}
	if p := e.poll(ctx, s, after, "0"); !p.Ended || len(p.Frames) != 0 {
		t.Fatalf("poll after the last frame: %+v, want ended", p)
	}
	if code, body := e.send(ctx, s, 2, cmd("message", lobby, `{"action":"speak","text":"lost?"}`)); code == http.StatusOK {
		t.Fatalf("a command after the upstream was lost was acknowledged: %s", body)
	}

	s = e.create(ctx, "rosa")
	after = 0
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "welcome" })
	closed := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- e.bridge.Close(cctx)
	}()
	if err := waitFor(ctx, "healthz 503", func() bool {
		resp, _, err := e.request(ctx, "GET", "/healthz", nil, "")
		return err == nil && resp.StatusCode == http.StatusServiceUnavailable
	}); err != nil {
		t.Fatal(err)
	}
	f = e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "disconnect" })
	if !strings.Contains(string(f), "server_restart") {
		t.Fatalf("last frame %s, want a server_restart disconnect", f)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestEndedSessionSSESaysSo(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "sam")
	st, body, err := e.openSSE(ctx, s, nil, nil)
	if err != nil {
		t.Fatalf("sse: %v %s", err, body)
	}
	defer st.Close()
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.bridge.Close(cctx)
	}()
	for {
		ev, err := st.next(ctx)
		if err != nil {
			t.Fatalf("stream ended without a reset event: %v", err)
		}
		if ev.Event == "reset" {
			if !strings.Contains(ev.Data, "ended") {
				t.Fatalf("reset %q, want reason ended", ev.Data)
			}
			return
		}
	}
}
