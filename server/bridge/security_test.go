//go:build unix

package bridge_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

// apiErr decodes a JSON refusal; it fails the test when the answer is
// not JSON.
func apiErr(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want JSON", ct)
	}
	var v struct{ Error string }
	if err := json.Unmarshal(body, &v); err != nil || v.Error == "" {
		t.Errorf("body %q is not a JSON error", body)
	}
	return v.Error
}

// TestRefusals: what the bridge answers when it cannot serve, always as
// JSON.
func TestRefusals(t *testing.T) {
	e := newEnv(t, bridge.WithBodyLimit(1024))
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "alice")

	t.Run("unauthorized upstream", func(t *testing.T) {
		before, _ := e.rails.Stats(ctx)
		for _, h := range []http.Header{nil, authHeader(""), {"Authorization": {"Bearer wrong"}}} {
			resp, _, body, err := e.createAs(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusUnauthorized || apiErr(t, resp, body) != "unauthorized" {
				t.Errorf("create with %v: %d %s, want 401 unauthorized", h, resp.StatusCode, body)
			}
		}
		// The proxy refuses the upgrade the same way.
		if c, resp, err := e.dialWS(ctx, "/", nil); err == nil {
			c.CloseNow()
			t.Error("proxy upgrade without credentials accepted")
		} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("proxy upgrade without credentials: %v, want 401", err)
		}
		after, _ := e.rails.Stats(ctx)
		if after.UnauthorizedTotal-before.UnauthorizedTotal != 4 || after.Connections != before.Connections {
			t.Errorf("Rails stats %+v → %+v", before, after)
		}
	})

	t.Run("unknown session", func(t *testing.T) {
		for _, r := range [][2]string{
			{"GET", "/sessions/nosuchsession/sse?token=x"},
			{"GET", "/sessions/nosuchsession/poll?token=x&timeout=0"},
			{"POST", "/sessions/nosuchsession/send?token=x"},
			{"GET", "/sessions/nosuchsession/ws?token=x"},
			{"DELETE", "/sessions/nosuchsession?token=x"},
		} {
			resp, body, err := e.request(ctx, r[0], r[1], nil, "[]")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusNotFound || apiErr(t, resp, body) != "unknown_session" {
				t.Errorf("%s %s: %d %s, want 404 unknown_session", r[0], r[1], resp.StatusCode, body)
			}
		}
	})

	t.Run("wrong token", func(t *testing.T) {
		for _, r := range [][2]string{
			{"GET", "/sessions/" + s.SID + "/sse?token=wrong"},
			{"GET", "/sessions/" + s.SID + "/poll?timeout=0"},
			{"POST", "/sessions/" + s.SID + "/send?token=" + s.Token[:len(s.Token)-1]},
			{"GET", "/sessions/" + s.SID + "/ws?token=wrong"},
			{"DELETE", "/sessions/" + s.SID + "?token=wrong"},
		} {
			resp, body, err := e.request(ctx, r[0], r[1], http.Header{"Cableway-Token": {"also-wrong"}}, "[]")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusForbidden || apiErr(t, resp, body) != "bad_token" {
				t.Errorf("%s %s: %d %s, want 403 bad_token", r[0], r[1], resp.StatusCode, body)
			}
		}
		// The token in a header works as well as in the query.
		resp, body, err := e.request(ctx, "GET", "/sessions/"+s.SID+"/poll?timeout=0", http.Header{"Cableway-Token": {s.Token}}, "")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("poll with the token in Cableway-Token: %v %v %s", resp, err, body)
		}
	})

	t.Run("oversized body", func(t *testing.T) {
		big := cmd("message", identifier("EchoChannel"), fmt.Sprintf(`{"action":"echo","pad":%q}`, strings.Repeat("x", 2000)))
		code, body, err := e.trySend(ctx, s, 1, big)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), `"body_too_large"`) {
			t.Errorf("send of %d bytes: %d %s, want 413", len(big), code, body)
		}
		// Nothing was applied: cseq 1 is still next.
		if code, body, _ := e.trySend(ctx, s, 1, cmd("subscribe", identifier("EchoChannel"), "")); code != 200 || !strings.Contains(string(body), `"acked":1`) {
			t.Errorf("send after the 413: %d %s", code, body)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		for _, body := range []string{`{`, `[{"cseq":9,"frame":{"command":"dance"}}]`, `[{"cseq":0,"frame":{"command":"subscribe","identifier":"{}"}}]`} {
			resp, rb, err := e.request(ctx, "POST", "/sessions/"+s.SID+"/send?token="+s.Token, nil, body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("send %s: %d %s, want 400", body, resp.StatusCode, rb)
			}
			apiErr(t, resp, rb)
		}
		resp, rb, err := e.request(ctx, "GET", "/sessions/"+s.SID+"/poll?timeout=soon&token="+s.Token, nil, "")
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("poll with a bad timeout: %v %v %s, want 400", resp, err, rb)
		}
	})
}

// TestOrigins: a browser request from an origin that is not allowed is
// refused with 403 before anything reaches Rails; an allowed one gets its
// own origin back with credentials, never "*"; preflights are answered.
func TestOrigins(t *testing.T) {
	const (
		allowed = "http://localhost:4567" // Rails' own check accepts any localhost origin
		evil    = "https://evil.example"
	)
	e := newEnv(t, bridge.WithAllowedOrigins(allowed))
	ctx := testCtx(t, 30*time.Second)

	before, err := e.rails.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cookie := http.Header{"Origin": {evil}, "Cookie": {"user=alice"}}
	for _, r := range [][2]string{{"POST", "/sessions"}, {"GET", "/sessions/x/sse"}, {"OPTIONS", "/sessions"}} {
		h := cookie.Clone()
		if r[0] == "OPTIONS" {
			h.Set("Access-Control-Request-Method", "POST")
		}
		resp, body, err := e.request(ctx, r[0], r[1], h, "")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden || apiErr(t, resp, body) != "origin_not_allowed" {
			t.Errorf("%s %s from %s: %d %s, want 403", r[0], r[1], evil, resp.StatusCode, body)
		}
		if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 0 {
			t.Errorf("%s %s from %s: Access-Control-Allow-Origin %q", r[0], r[1], evil, v)
		}
	}
	// Cross-site WebSocket hijacking: the proxy upgrade is refused too.
	if c, resp, err := e.dialWS(ctx, "/", cookie); err == nil {
		c.CloseNow()
		t.Error("proxy upgrade from a foreign origin accepted")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("proxy upgrade from a foreign origin: %v, want 403", err)
	}
	after, err := e.rails.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("refused requests reached Rails: stats %+v → %+v", before, after)
	}

	// The allowed origin.
	resp, s, body, err := e.createAs(ctx, http.Header{"Origin": {allowed}, "Cookie": {"user=alice"}})
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create from %s: %v %v %s", allowed, resp, err, body)
	}
	checkCORS(t, "create", resp.Header, allowed)
	resp, body, err = e.request(ctx, "GET", "/sessions/"+s.SID+"/poll?timeout=0&token="+s.Token, http.Header{"Origin": {allowed}}, "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("poll from %s: %v %v %s", allowed, resp, err, body)
	}
	checkCORS(t, "poll", resp.Header, allowed)

	// Its preflight.
	resp, body, err = e.request(ctx, "OPTIONS", "/sessions/"+s.SID+"/send", http.Header{
		"Origin":                         {allowed},
		"Access-Control-Request-Method":  {"POST"},
		"Access-Control-Request-Headers": {"content-type, cableway-token"},
	}, "")
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("preflight: %v %v %s", resp, err, body)
	}
	checkCORS(t, "preflight", resp.Header, allowed)
	if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
		t.Errorf("Access-Control-Allow-Methods %q", m)
	}
	if h := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")); !strings.Contains(h, "content-type") || !strings.Contains(h, "cableway-token") {
		t.Errorf("Access-Control-Allow-Headers %q", h)
	}

	// Same-origin and non-browser requests need no allowlist entry; no
	// Origin means no CORS headers.
	resp, body, err = e.request(ctx, "GET", "/sessions/"+s.SID+"/poll?timeout=0&token="+s.Token, nil, "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("poll without Origin: %v %v %s", resp, err, body)
	}
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("Access-Control-Allow-Origin %q without an Origin", v)
	}
	if !hasToken(resp.Header.Values("Vary"), "Origin") {
		t.Errorf("Vary %q, want Origin", resp.Header.Values("Vary"))
	}
	self := e.srv.URL // http://127.0.0.1:port, the request's Host
	resp, body, err = e.request(ctx, "GET", "/sessions/"+s.SID+"/poll?timeout=0&token="+s.Token, http.Header{"Origin": {self}}, "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("same-origin poll: %v %v %s", resp, err, body)
	}
}

func checkCORS(t *testing.T, what string, h http.Header, origin string) {
	t.Helper()
	if v := h.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != origin {
		t.Errorf("%s: Access-Control-Allow-Origin %q, want exactly %q", what, v, origin)
	}
	if v := h.Get("Access-Control-Allow-Credentials"); v != "true" {
		t.Errorf("%s: Access-Control-Allow-Credentials %q", what, v)
	}
	if !hasToken(h.Values("Vary"), "Origin") {
		t.Errorf("%s: Vary %q, want Origin", what, h.Values("Vary"))
	}
	for k, vs := range h {
		for _, v := range vs {
			if strings.HasPrefix(k, "Access-Control-") && strings.TrimSpace(v) == "*" {
				t.Errorf("%s: %s: *", what, k)
			}
		}
	}
}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for p := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), token) {
				return true
			}
		}
	}
	return false
}

// TestSessionLimits: sessions are capped per client IP (429) and in total
// (503); ending a session frees its place.
func TestSessionLimits(t *testing.T) {
	e := newEnv(t,
		bridge.WithSessionLimits(3, 2),
		bridge.WithClientIP(func(r *http.Request) string { return r.Header.Get("X-Test-IP") }),
	)
	ctx := testCtx(t, 30*time.Second)
	create := func(ip string) (int, sessionInfo, string) {
		t.Helper()
		h := authHeader("alice")
		h.Set("X-Test-IP", ip)
		resp, s, body, err := e.createAs(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusCreated {
			return resp.StatusCode, s, apiErr(t, resp, body)
		}
		return resp.StatusCode, s, ""
	}
	_, a1, _ := create("10.0.0.1")
	create("10.0.0.1")
	if code, _, reason := create("10.0.0.1"); code != http.StatusTooManyRequests || reason != "too_many_sessions_for_ip" {
		t.Errorf("third session for one IP: %d %s, want 429", code, reason)
	}
	if code, _, _ := create("10.0.0.2"); code != http.StatusCreated {
		t.Fatalf("another IP: %d", code)
	}
	if code, _, reason := create("10.0.0.3"); code != http.StatusServiceUnavailable || reason != "too_many_sessions" {
		t.Errorf("fourth session: %d %s, want 503", code, reason)
	}
	// The proxy counts against the same limits.
	h := authHeader("alice")
	h.Set("X-Test-IP", "10.0.0.3")
	if c, resp, err := e.dialWS(ctx, "/", h); err == nil {
		c.CloseNow()
		t.Error("proxy beyond the session limit accepted")
	} else if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("proxy beyond the session limit: %v, want 503", err)
	}
	if err := e.deleteSession(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := create("10.0.0.1"); code != http.StatusCreated {
		t.Errorf("after a delete: %d, want 201", code)
	}
	if st, err := e.rails.Stats(ctx); err != nil || st.ConnectsTotal != 4 {
		t.Errorf("Rails stats %+v %v: refused creations must not dial", st, err)
	}
}
