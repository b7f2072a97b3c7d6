//go:build unix

package compat_test

// Tests of the compat defects found by probing the bridge black-box
// (issue #10, item 5). Each fails without its fix.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/server/bridge"
	"github.com/cableway/cableway/server/compat"
)

// railsConnects returns how many connections Rails has authenticated.
func (e *ceEnv) railsConnects(ctx context.Context) int {
	e.t.Helper()
	st, err := e.rails.Stats(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.ConnectsTotal
}

// TestCompatRefusesInvalidText: an identifier or send data that is not
// valid Unicode text is refused and never reaches Rails, which would drop
// the connection (close 1007) and, with the subscription sent again after
// every reconnect, keep dropping it.
func TestCompatRefusesInvalidText(t *testing.T) {
	e := newCEEnv(t, nil)
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	st := c.openSSE(ctx, nil)
	st.next(ctx) // joined
	lobbyChan := c.subscribe(ctx, ceLobby).str("chan_id")
	if ev := st.next(ctx); ev.Type != "connected" || ev.ChanID != lobbyChan {
		t.Fatalf("got %s, want connected", ev.raw)
	}

	for _, body := range []string{
		`[{"identifier":{"channel":"ChatChannel","room":"l` + "\xff" + `bby"},"subscribe":true}]`,
		`[{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"` + "\xc3\x28" + `\"}","subscribe":true}]`,
		`[{"identifier":{"channel":"ChatChannel","room":"\ud800"},"subscribe":true}]`,
		`[{"identifier":{"channel":"ChatChannel","room":"\udc00x"},"subscribe":true}]`,
		`[{"identifier":` + ceLobby + `,"send":{"action":"speak","text":"` + "\xed\xa0\x80" + `"}}]`,
		`[{"identifier":` + ceLobby + `,"send":{"action":"speak","text":"\ud83d"}}]`,
	} {
		res := c.post(ctx, body)
		if len(res) != 1 || !strings.Contains(res[0].str("error"), "Unicode") {
			t.Errorf("POST %q: %v, want an error naming invalid text", body, res)
		}
	}
	// A valid surrogate pair is text.
	res := c.post(ctx, `[{"identifier":`+ceLobby+`,"send":{"action":"speak","text":"\ud83d\ude00 ok"}}]`)
	if len(res) != 1 || res[0]["error"] != nil {
		t.Fatalf("send with a surrogate pair: %v", res)
	}
	// The connection is the one Rails welcomed first: the speak made it,
	// and no disconnected came before it.
	if ev := st.next(ctx); ev.Type != "received" || !strings.Contains(string(ev.Message), "😀 ok") {
		t.Fatalf("got %s, want the speak", ev.raw)
	}
	if n := e.railsConnects(ctx); n != 1 {
		t.Fatalf("Rails saw %d connections, want 1: a refused command reached it", n)
	}
	if n := e.bridge.Stats().UpstreamReconnects; n != 0 {
		t.Fatalf("%d upstream reconnects, want 0", n)
	}
}

// TestCompatBoundToCredentials: an events id opened with a Bearer token
// (no cookie) belongs to that token: another client on the same IP, with
// another token or none, can neither read nor send.
func TestCompatBoundToCredentials(t *testing.T) {
	e := newCEEnv(t, nil, bridge.WithPassHeaders("X-User"))
	ctx := ceCtx(t, 30*time.Second)
	c := &ceClient{e: e, id: ceNewID(), header: http.Header{"Authorization": {"Bearer secret-alice"}}}
	sid := c.poll(ctx, "timeout=0").SessionID
	if sid == "" {
		t.Fatal("no session")
	}
	for name, o := range map[string]*ceClient{
		"other token":        c.as(http.Header{"Authorization": {"Bearer secret-bob"}}),
		"no token":           c.as(http.Header{}),
		"token and a header": c.as(http.Header{"Authorization": {"Bearer secret-alice"}, "X-User": {"mallory"}}),
	} {
		for _, r := range []struct {
			method string
			header http.Header
			body   string
		}{
			{"GET", http.Header{"Accept": {"application/json"}}, ""},
			{"GET", http.Header{"Accept": {"text/event-stream"}}, ""},
			{"POST", nil, `[{"identifier":` + ceLobby + `,"subscribe":true}]`},
		} {
			resp, b := o.request(ctx, r.method, "timeout=0", r.header, r.body)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `"not_session_owner"`) {
				t.Errorf("%s: %s %v: %d %s, want 403 not_session_owner", name, r.method, r.header, resp.StatusCode, b)
			}
		}
	}
	if p := c.poll(ctx, "timeout=0"); p.SessionID != sid {
		t.Fatalf("owner: session_id %s, want %s", p.SessionID, sid)
	}
	if n := e.railsConnects(ctx); n != 1 {
		t.Fatalf("Rails saw %d connections, want 1", n)
	}
}

// TestCompatCrossSiteWithoutOrigin: a browser's cross-site GET carries the
// victim's cookie and no Origin (an <img>, a link); it must not open a
// Rails connection with that cookie. Same-origin requests (no Origin
// either) and non-browser clients pass.
func TestCompatCrossSiteWithoutOrigin(t *testing.T) {
	const allowed = "http://localhost:1"
	e := newCEEnv(t, nil, bridge.WithAllowedOrigins(allowed))
	ctx := ceCtx(t, 30*time.Second)
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"cross-site fetch", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"same-site fetch", http.Header{"Sec-Fetch-Site": {"same-site"}}, http.StatusForbidden},
		{"foreign referer", http.Header{"Referer": {"http://evil.example/page"}}, http.StatusForbidden},
		{"https referer of this host", http.Header{"Referer": {"https://" + strings.TrimPrefix(e.srv.URL, "http://") + "/"}}, http.StatusForbidden},
		{"same-origin fetch", http.Header{"Sec-Fetch-Site": {"same-origin"}}, http.StatusOK},
		{"typed in", http.Header{"Sec-Fetch-Site": {"none"}}, http.StatusOK},
		{"referer of this origin", http.Header{"Referer": {e.srv.URL + "/app"}}, http.StatusOK},
		{"referer of an allowed origin", http.Header{"Referer": {allowed + "/app"}}, http.StatusOK},
		{"not a browser", http.Header{}, http.StatusOK},
	} {
		before := e.railsConnects(ctx)
		for _, accept := range []string{"application/json", "text/event-stream"} {
			c := e.newClient("victim")
			h := tc.header.Clone()
			h.Set("Accept", accept)
			if tc.status == http.StatusOK && accept == "text/event-stream" {
				st := c.openSSE(ctx, h)
				st.next(ctx) // joined
				st.close()
				continue
			}
			resp, b := c.request(ctx, "GET", "timeout=0", h, "")
			if resp.StatusCode != tc.status {
				t.Errorf("%s (%s): %d %s, want %d", tc.name, accept, resp.StatusCode, b, tc.status)
			}
		}
		after := e.railsConnects(ctx)
		if tc.status == http.StatusForbidden && after != before {
			t.Errorf("%s: Rails saw %d connections, want none", tc.name, after-before)
		}
	}
}

// TestCompatPostToUnknownID: only a GET opens a session; a POST to an id
// with no session is 404 and dials nothing.
func TestCompatPostToUnknownID(t *testing.T) {
	e := newCEEnv(t, nil)
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	resp, b := c.request(ctx, "POST", "", nil, `[{"identifier":`+ceLobby+`,"subscribe":true}]`)
	var apiErr struct{ Error string }
	if resp.StatusCode != http.StatusNotFound || json.Unmarshal(b, &apiErr) != nil || apiErr.Error == "" {
		t.Fatalf("POST to an unknown id: %d %s, want 404 with a JSON error", resp.StatusCode, b)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("error body with X-Content-Type-Options %q, want nosniff", got)
	}
	if n := e.railsConnects(ctx); n != 0 {
		t.Fatalf("Rails saw %d connections, want 0", n)
	}
	if st := e.bridge.Stats(); st.Sessions != 0 || st.SessionsCreated != 0 {
		t.Fatalf("stats %+v: a session was created", st)
	}
	// Opened by a GET, the same POST works.
	c.open(ctx)
	c.subscribe(ctx, ceLobby)
}

// TestCompatOptionsWithoutOrigin: a plain OPTIONS (no Origin: not a
// preflight) is answered with what the resource allows.
func TestCompatOptionsWithoutOrigin(t *testing.T) {
	e := newCEEnv(t, nil)
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	resp, b := c.request(ctx, "OPTIONS", "", nil, "")
	allow := resp.Header.Get("Allow")
	if resp.StatusCode/100 != 2 || !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") || !strings.Contains(allow, "OPTIONS") {
		t.Fatalf("OPTIONS: %d Allow %q %s, want 2xx with Allow: GET, POST, OPTIONS", resp.StatusCode, allow, b)
	}
	if n := e.railsConnects(ctx); n != 0 {
		t.Fatalf("Rails saw %d connections, want 0", n)
	}
}

// TestCompatStreamEndsWithSession: when the bridge shuts down, an attached
// EventSource gets its channels' disconnected (server_restart) and its
// stream ends at once, not at the next keep-alive: the HTTP server's
// shutdown does not wait for it.
func TestCompatStreamEndsWithSession(t *testing.T) {
	e := newCEEnv(t, nil, bridge.WithKeepAlive(time.Hour))
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	st := c.openSSE(ctx, nil)
	st.next(ctx) // joined
	lobbyChan := c.subscribe(ctx, ceLobby).str("chan_id")
	if ev := st.next(ctx); ev.Type != "connected" {
		t.Fatalf("got %s, want connected", ev.raw)
	}

	closeCtx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- e.bridge.Close(closeCtx) }()
	ev := st.next(ctx)
	var m struct {
		Reason    string
		Reconnect bool
	}
	json.Unmarshal(ev.Message, &m)
	if ev.Type != "disconnected" || ev.ChanID != lobbyChan || m.Reason != "server_restart" || !m.Reconnect {
		t.Fatalf("got %s, want disconnected (server_restart, reconnect)", ev.raw)
	}
	select {
	case ev, ok := <-st.events:
		if ok {
			t.Fatalf("after the last event: %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("the stream of an ended session stayed open")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
}

// fakeUpstream is an ActionCable server that drops the connection (close
// 1007, as Rails does on invalid UTF-8) when a subscribe names the channel
// "Poison", and confirms any other. It stands in for Rails because compat
// no longer lets Rails see such a subscribe.
type fakeUpstream struct {
	mu    sync.Mutex
	dials []time.Time
	subs  map[string]int // subscribes received, by identifier
}

func (f *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := ws.Accept(w, r, &ws.AcceptOptions{Subprotocols: []string{"actioncable-v1-json"}})
	if err != nil {
		return
	}
	defer conn.CloseNow()
	f.mu.Lock()
	f.dials = append(f.dials, time.Now())
	f.mu.Unlock()
	ctx := r.Context()
	if conn.Write(ctx, ws.MessageText, []byte(`{"type":"welcome"}`)) != nil {
		return
	}
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var cmd struct{ Command, Identifier string }
		if json.Unmarshal(b, &cmd) != nil || cmd.Command != "subscribe" {
			continue
		}
		f.mu.Lock()
		f.subs[cmd.Identifier]++
		f.mu.Unlock()
		if strings.Contains(cmd.Identifier, "Poison") {
			conn.Close(ws.StatusInvalidFramePayloadData, "")
			return
		}
		id, _ := json.Marshal(cmd.Identifier)
		conn.Write(ctx, ws.MessageText, []byte(`{"identifier":`+string(id)+`,"type":"confirm_subscription"}`))
	}
}

func (f *fakeUpstream) dialTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.dials...)
}

// TestCompatSubscriptionThatDropsTheConnection: a subscribe after which
// the upstream drops the connection is not sent again after every
// reconnect: after a few losses in a row it is given up (rejected), and
// meanwhile the redial delays grow.
func TestCompatSubscriptionThatDropsTheConnection(t *testing.T) {
	up := &fakeUpstream{subs: map[string]int{}}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	policy := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	h := compat.New("ws"+strings.TrimPrefix(upSrv.URL, "http"), compat.WithUpstreamBackoff(policy))
	srv := httptest.NewServer(http.StripPrefix("/events", h))
	t.Cleanup(func() {
		srv.Close()
		h.Close(context.Background())
	})
	e := &ceEnv{t: t, srv: srv, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	c.open(ctx)

	const poison = `{"channel":"Poison"}`
	poisonChan := c.subscribe(ctx, poison).str("chan_id")
	var rejected bool
	for !rejected {
		for _, ev := range c.poll(ctx, "timeout=10").events {
			if ev.Type == "rejected" && ev.ChanID == poisonChan {
				rejected = true
			}
		}
	}
	// The session goes on without it, on the connection it has now.
	const fine = `{"channel":"Fine"}`
	fineChan := c.subscribe(ctx, fine).str("chan_id")
	for connected := false; !connected; {
		for _, ev := range c.poll(ctx, "timeout=10").events {
			connected = connected || ev.Type == "connected" && ev.ChanID == fineChan
		}
	}
	dials := up.dialTimes()
	up.mu.Lock()
	sent := up.subs[poison]
	up.mu.Unlock()
	if sent > 4 || len(dials) > 5 {
		t.Fatalf("the subscribe was sent %d times over %d connections, want it given up after 3 losses", sent, len(dials))
	}
	if len(dials) < 4 {
		t.Fatalf("%d connections: the upstream did not drop the subscribe 3 times", len(dials))
	}
	// Redial n waits at least half of the policy's ceiling for attempt n:
	// the delays grow although every connection was welcomed.
	for n := 1; n < len(dials); n++ {
		gap, least := dials[n].Sub(dials[n-1]), policy.Ceiling(n)/2
		if gap < least {
			t.Errorf("redial %d came %v after the previous, want ≥ %v (the delays must grow)", n, gap, least)
		}
	}
}

// TestCompatSharesBridgeLimits: the compat API's sessions count against
// the bridge's session limits, with the bridge's own sessions: one client
// IP cannot open the per-IP limit of each.
func TestCompatSharesBridgeLimits(t *testing.T) {
	e := newCEEnv(t, nil, bridge.WithSessionLimits(100, 2))
	ctx := ceCtx(t, 30*time.Second)
	// One bridge session from the IP…
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/sessions", nil)
	req.Header.Set("Cookie", "user=alice")
	req.Header.Set("X-Test-IP", "192.0.2.9")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /sessions: %d", resp.StatusCode)
	}
	// …and one compat session: the limit of two is reached.
	c := e.newClient("alice")
	c.header.Set("X-Test-IP", "192.0.2.9")
	c.open(ctx)
	third := e.newClient("alice")
	third.header.Set("X-Test-IP", "192.0.2.9")
	resp, b := third.request(ctx, "GET", "timeout=0", http.Header{"Accept": {"application/json"}}, "")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "too_many_sessions_for_ip") {
		t.Fatalf("third session of the IP: %d %s, want 429 too_many_sessions_for_ip", resp.StatusCode, b)
	}
	// Another IP is not affected.
	other := e.newClient("bob")
	other.header.Set("X-Test-IP", "192.0.2.10")
	other.open(ctx)
}

// TestCompatSessionCreationRate: compat sessions are created under the
// bridge's per-client creation rate, an IPv6 /64 counting as one client.
func TestCompatSessionCreationRate(t *testing.T) {
	e := newCEEnv(t, nil, bridge.WithSessionRate(0.001, 2))
	ctx := ceCtx(t, 30*time.Second)
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2"} {
		c := e.newClient("alice")
		c.header.Set("X-Test-IP", ip)
		c.open(ctx)
	}
	c := e.newClient("alice")
	c.header.Set("X-Test-IP", "2001:db8:1:2:ffff::3") // the same /64
	resp, b := c.request(ctx, "GET", "timeout=0", http.Header{"Accept": {"application/json"}}, "")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "create_rate_limited") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third creation from the /64: %d %v %s, want 429 create_rate_limited with Retry-After", resp.StatusCode, resp.Header, b)
	}
	other := e.newClient("bob")
	other.header.Set("X-Test-IP", "2001:db8:1:3::1") // another /64
	other.open(ctx)
}
