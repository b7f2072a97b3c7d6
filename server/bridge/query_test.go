//go:build unix

package bridge_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/server/bridge"
)

// railsBridge is a bridge relaying to upstream on rails, served over HTTP.
func railsBridge(t *testing.T, upstream string) *env {
	t.Helper()
	b := bridge.New(upstream)
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return &env{t: t, bridge: b, srv: srv, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
}

// The operator's query in the upstream URL wins over the client's: with
// --upstream …?token=reject a client's ?token=secret-bob does not log in
// as bob, over POST /sessions or through the WebSocket proxy. Other client
// parameters still reach Rails, and the proxy forwards its query as
// POST /sessions does.
func TestUpstreamQueryOperatorWins(t *testing.T) {
	rails := railstest.Start(t)
	ctx := testCtx(t, 30*time.Second)

	locked := railsBridge(t, rails.CableURL()+"?token=reject")
	resp, body := locked.do(ctx, "POST", "/sessions?token=secret-bob", nil, "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("create with the client's token against the operator's: %d %s, want 401 (Rails must see token=reject only)", resp.StatusCode, body)
	}
	if _, resp, err := locked.dialWS(ctx, "/?token=secret-bob", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("proxy with the client's token against the operator's: %v, want 401", err)
	}

	open := railsBridge(t, rails.CableURL()+"?unrelated=1")
	resp, body = open.do(ctx, "POST", "/sessions?token=secret-bob", nil, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create with the client's token: %d %s, want 201", resp.StatusCode, body)
	}
	c, resp, err := open.dialWS(ctx, "/?token=secret-carol", nil)
	if err != nil {
		t.Fatalf("proxy with ?token=secret-carol and no other credential: %v (%v), want a welcome", err, resp)
	}
	defer c.CloseNow()
	d, _ := newWSDown(c)
	if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
		t.Fatalf("proxy: %v %v, want a welcome", f, err)
	}
	// Rails says who it registered: EchoChannel answers with the user.
	echo := identifier("EchoChannel", "test", "query")
	if err := d.command(ctx, cmd("subscribe", echo, "")); err != nil {
		t.Fatal(err)
	}
	// Rails may run commands out of order: echo once subscribed.
	if _, err := nextMatch(ctx, d, nil, func(f tframe) bool { return f.kind() == "confirm_subscription" }); err != nil {
		t.Fatal(err)
	}
	if err := d.command(ctx, cmd("message", echo, `{"action":"echo","x":1}`)); err != nil {
		t.Fatal(err)
	}
	f, err := nextMatch(ctx, d, nil, func(f tframe) bool { return strings.Contains(string(f.Message), `"x":1`) })
	var m struct{ User string }
	if err != nil || json.Unmarshal(f.Message, &m) != nil || m.User != "carol" {
		t.Fatalf("echo through the proxy: %v %v, want user carol", f, err)
	}

	resp, body = open.do(ctx, "POST", "/sessions?token=%zz", nil, "")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "bad_query") {
		t.Errorf("a query that does not parse: %d %s, want 400 bad_query", resp.StatusCode, body)
	}
}
