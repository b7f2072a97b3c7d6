//go:build unix

package bridge_test

// Attacks on the bridge (issue #12, item 4): each test plays one attack on
// every entry it applies to and asserts the defence — what the attacker
// gets, and that nothing reached the upstream. Each fails when its defence
// is removed (see the comment above each test for which).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/internal/cabletest"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/bridge"
)

// attempt sends one request to the bridge as an attacker would, a
// WebSocket upgrade when upgrade is set, and returns the status and body
// of the answer (101 when an upgrade was accepted; the socket is closed at
// once).
func (e *fakeEnv) attempt(ctx context.Context, method, path string, header http.Header, body string, upgrade bool) (int, string, http.Header) {
	if upgrade {
		u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + path
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, resp, err := ws.Dial(dctx, u, &ws.DialOptions{HTTPClient: e.client, HTTPHeader: header})
		if err == nil {
			c.CloseNow()
			return http.StatusSwitchingProtocols, "", resp.Header
		}
		if resp == nil {
			return 0, err.Error(), nil
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, err.Error(), nil
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	// An event stream that was accepted never ends: read what is there.
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		return resp.StatusCode, string(buf[:n]), resp.Header
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// sessionEntry is one request on an existing session.
type sessionEntry struct {
	name, method, path, body string
	upgrade                  bool
}

// sessionEntries are the requests on session sid with token tok, each
// one the upstream would act on if it were served: a command to send, a
// stream to read, the session to end.
func sessionEntries(sid, tok string) []sessionEntry {
	q := "?token=" + url.QueryEscape(tok)
	sub := `[{"cseq":1,"frame":{"command":"subscribe","identifier":"{\"channel\":\"Attack\"}"}}]`
	return []sessionEntry{
		{"SSE", "GET", "/sessions/" + sid + "/sse" + q, "", false},
		{"long-poll", "GET", "/sessions/" + sid + "/poll" + q + "&timeout=0", "", false},
		{"send", "POST", "/sessions/" + sid + "/send" + q, sub, false},
		{"ack", "POST", "/sessions/" + sid + "/ack" + q + "&after=1", "", false},
		{"WebSocket re-attach", "GET", "/sessions/" + sid + "/ws" + q + "&after=0", "", true},
		{"delete", "DELETE", "/sessions/" + sid + q, "", false},
	}
}

// noCommandSince proves that no command reached the upstream since the
// test began: it sends a marker command on session s (cseq 1) and checks
// that the upstream's first command is that marker.
func noCommandSince(t *testing.T, ctx context.Context, e *fakeEnv, s sessionInfo, what string) {
	t.Helper()
	marker := identifier("Marker")
	resp, body := e.do(t, ctx, "POST", "/sessions/"+s.SID+"/send?token="+s.Token, nil,
		fmt.Sprintf(`[{"cseq":1,"frame":%s}]`, cmd("subscribe", marker, "")))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("marker command: %d %s", resp.StatusCode, body)
	}
	c, err := e.up.NextCommand(ctx, func(cabletest.Command) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if c.Identifier != marker {
		t.Errorf("%s: the upstream received %s %s before the marker", what, c.Command.Command, c.Identifier)
	}
}

// Cross-site hijacking: a page on a foreign origin makes the victim's
// browser call every entry with the victim's cookie (and, for session
// entries, even a valid token). Every one is refused with 403 before the
// upstream hears of it, with no CORS grant, and the victim's session is
// untouched. Defence: the origin policy (withOrigin/originAllowed).
func TestAttackCrossSiteFromForeignOrigin(t *testing.T) {
	const allowed = "https://app.example"
	e := newFakeEnv(t, nil, bridge.WithAllowedOrigins(allowed))
	ctx := testCtx(t, 60*time.Second)
	victim, _ := e.create(t, ctx)
	self := e.srv.URL
	host := strings.TrimPrefix(self, "http://")
	upgrade := http.Header{"Sec-Websocket-Protocol": {protocol.SubprotocolJSON}}
	eventsID := "AttackAttackAttackAttack0"

	type entry struct {
		name, method, path, body string
		upgrade                  bool
	}
	entries := []entry{
		{"WebSocket proxy", "GET", "/", "", true},
		{"POST /sessions", "POST", "/sessions", "", false},
		{"GET /sessions/sse", "GET", bridgewire.OpenSSEPath + "?" + bridgewire.SubscribeParam + "=" + url.QueryEscape(identifier("Attack")), "", false},
		{"compat SSE", "GET", "/events/" + eventsID, "", false},
		{"compat long-poll", "GET", "/events/" + eventsID + "?timeout=0", "", false},
		{"compat POST", "POST", "/events/" + eventsID, `[{"identifier":{"channel":"Attack"},"subscribe":true}]`, false},
	}
	for _, se := range sessionEntries(victim.SID, victim.Token) {
		entries = append(entries, entry{se.name, se.method, se.path, se.body, se.upgrade})
	}
	for _, origin := range []string{
		"https://evil.example",
		"null",                             // a sandboxed iframe, a data: URL
		"https://" + host,                  // the bridge's host on another scheme
		"http://" + host + ".evil.example", // a prefix of the bridge's origin
		"http://evil.example/" + host,
		allowed + ".evil.example",
		strings.ToUpper(allowed[:5]) + "://evil.example",
	} {
		for _, en := range entries {
			h := http.Header{"Origin": {origin}, "Cookie": {"user=victim"}, "Sec-Fetch-Site": {"cross-site"}}
			if en.name == "compat long-poll" {
				h.Set("Accept", "application/json")
			}
			if en.upgrade {
				for k, v := range upgrade {
					h[k] = v
				}
			}
			status, body, rh := e.attempt(ctx, en.method, en.path, h, en.body, en.upgrade)
			if status != http.StatusForbidden || !strings.Contains(body, `"origin_not_allowed"`) {
				t.Errorf("%s from Origin %q: %d %q, want 403 origin_not_allowed", en.name, origin, status, body)
			}
			if v := rh.Values("Access-Control-Allow-Origin"); len(v) != 0 {
				t.Errorf("%s from Origin %q: Access-Control-Allow-Origin %q", en.name, origin, v)
			}
		}
		// The preflight of a cross-site POST is refused as well.
		status, body, rh := e.attempt(ctx, "OPTIONS", "/sessions", http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}}, "", false)
		if status != http.StatusForbidden || rh.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from Origin %q: %d %q %v, want 403 without a CORS grant", origin, status, body, rh)
		}
	}
	if n := e.up.Handshakes(); n != 1 {
		t.Errorf("the upstream saw %d handshakes, want 1 (the victim's own session)", n)
	}
	if st := e.bridge.Stats(); st.Sessions != 1 || st.SessionsCreated != 1 {
		t.Errorf("bridge stats %+v: refused requests created or ended sessions", st)
	}
	// The victim's session is intact (not deleted, nothing acknowledged)
	// and received no command.
	p := pollOnce(t, ctx, e, victim, 0)
	if len(p.Frames) == 0 || frameType(p.Frames[0]) != "welcome" {
		t.Errorf("the victim's session after the attack: %+v, want its welcome still there", p)
	}
	noCommandSince(t, ctx, e, victim, "cross-site requests")

	// The allowed origin, on the same entries, is served.
	resp, body := e.do(t, ctx, "POST", "/sessions", http.Header{"Origin": {allowed}, "Cookie": {"user=victim"}}, "")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Access-Control-Allow-Origin") != allowed {
		t.Errorf("POST /sessions from the allowed origin: %d %s %v", resp.StatusCode, body, resp.Header)
	}
}

// pollOnce polls s from after without waiting.
func pollOnce(t *testing.T, ctx context.Context, e *fakeEnv, s sessionInfo, after uint64) pollResult {
	t.Helper()
	resp, body := e.do(t, ctx, "GET", fmt.Sprintf("/sessions/%s/poll?timeout=0&after=%d&token=%s", s.SID, after, s.Token), nil, "")
	var p pollResult
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &p) != nil {
		t.Fatalf("poll: %d %s", resp.StatusCode, body)
	}
	return p
}

// randomID is 128 random bits as the bridge writes its ids.
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Guessed and replayed session ids and tokens, on every session entry: a
// valid sid with a wrong, truncated, empty or another session's token is
// 403 bad_token; a guessed sid is 404; an ended session's own sid and
// token are 404. None of them reads, commands, acknowledges or ends
// anything. Defence: lookup's token check, and removal of ended sessions.
func TestAttackGuessedAndReplayedSessions(t *testing.T) {
	e := newFakeEnv(t, nil)
	ctx := testCtx(t, 60*time.Second)
	a, _ := e.create(t, ctx)
	b, _ := e.create(t, ctx)
	old, _ := e.create(t, ctx)
	if len(a.SID) < 22 || len(a.Token) < 22 || a.SID == b.SID || a.Token == b.Token || a.SID == a.Token {
		t.Fatalf("ids and tokens of 128 bits, all distinct: %+v %+v", a, b)
	}
	if err := e.deleteAs(ctx, old); err != nil {
		t.Fatal(err)
	}

	flip := []byte(a.Token)
	flip[len(flip)-1] ^= 1
	cases := []struct {
		name, sid, tok, reason string
		status                 int
	}{
		{"a wrong token", a.SID, randomID(), "bad_token", http.StatusForbidden},
		{"the token with its last bit flipped", a.SID, string(flip), "bad_token", http.StatusForbidden},
		{"the token truncated", a.SID, a.Token[:len(a.Token)-1], "bad_token", http.StatusForbidden},
		{"the token with a suffix", a.SID, a.Token + "x", "bad_token", http.StatusForbidden},
		{"no token", a.SID, "", "bad_token", http.StatusForbidden},
		{"another session's token", a.SID, b.Token, "bad_token", http.StatusForbidden},
		{"the session's sid as its token", a.SID, a.SID, "bad_token", http.StatusForbidden},
		{"a guessed sid with a real token", randomID(), a.Token, "unknown_session", http.StatusNotFound},
		{"an ended session's sid and token", old.SID, old.Token, "unknown_session", http.StatusNotFound},
	}
	for _, c := range cases {
		for _, en := range sessionEntries(c.sid, c.tok) {
			status, body, _ := e.attempt(ctx, en.method, en.path, nil, en.body, en.upgrade)
			if status != c.status || !strings.Contains(body, `"`+c.reason+`"`) {
				t.Errorf("%s on %s: %d %q, want %d %s", c.name, en.name, status, body, c.status, c.reason)
			}
		}
		// The token in the Cableway-Token header is checked the same way.
		status, body, _ := e.attempt(ctx, "GET", "/sessions/"+c.sid+"/poll?timeout=0", http.Header{bridgewire.TokenHeader: {c.tok}}, "", false)
		if status != c.status {
			t.Errorf("%s in %s: %d %q, want %d", c.name, bridgewire.TokenHeader, status, body, c.status)
		}
	}
	if st := e.bridge.Stats(); st.Sessions != 2 {
		t.Errorf("%d sessions, want 2: a refused request ended one", st.Sessions)
	}
	// Nothing was acknowledged: a's welcome is still there, at seq 1.
	if p := pollOnce(t, ctx, e, a, 0); len(p.Frames) == 0 || frameType(p.Frames[0]) != "welcome" {
		t.Errorf("a after the attack: %+v, want its welcome", p)
	}
	noCommandSince(t, ctx, e, a, "guessed and replayed tokens")
}

// deleteAs ends a session.
func (e *fakeEnv) deleteAs(ctx context.Context, s sessionInfo) error {
	req, _ := http.NewRequestWithContext(ctx, "DELETE", e.srv.URL+"/sessions/"+s.SID+"?token="+s.Token, nil)
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("delete: %d", resp.StatusCode)
	}
	return nil
}

// rawExchange writes req on a new connection and returns the status line
// of the answer ("" when the connection closed without one).
func rawExchange(ctx context.Context, addr, req string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", nil
		}
		return "", err
	}
	resp.Body.Close()
	return resp.Status, nil
}

// CRLF and bare-CR injection through what the bridge forwards to Rails:
// the pass headers, the credentials and the query. A request carrying one
// either is refused before the upstream is dialled or reaches the
// upstream with no header of the attacker's making and no CR or LF in any
// header value. Defence: net/http's header parsing and the upstream URL
// built by url.Values.Encode (upstreamURL).
func TestAttackCRLFThroughForwardedHeaders(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []*http.Request
	)
	up := cabletest.Start(t, cabletest.WithHandshake(func(r *http.Request) int {
		mu.Lock()
		seen = append(seen, r.Clone(context.Background()))
		mu.Unlock()
		return 0
	}))
	e := newFakeEnvFor(t, up, up.URL+"?app=1", bridge.WithPassHeaders("X-Tenant"))
	ctx := testCtx(t, 60*time.Second)
	addr := strings.TrimPrefix(e.srv.URL, "http://")

	injected := func(r *http.Request) string {
		for k, vs := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "injected") {
				return k
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n") {
					return k + ": " + v
				}
			}
		}
		if strings.Contains(strings.ToLower(r.URL.RawQuery), "\r") || strings.Contains(r.URL.RawQuery, "\n") || r.URL.Query().Get("app") != "1" || len(r.URL.Query()["app"]) != 1 {
			return "query " + r.URL.RawQuery
		}
		return ""
	}
	raw := []struct{ name, req string }{
		{"bare CR in a pass header", "POST /sessions HTTP/1.1\r\nHost: b\r\nX-Tenant: a\rInjected: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"bare LF in a pass header", "POST /sessions HTTP/1.1\r\nHost: b\r\nX-Tenant: a\nInjected: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"bare CR in the cookie", "POST /sessions HTTP/1.1\r\nHost: b\r\nCookie: a=b\rInjected: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"an obsolete folded line", "POST /sessions HTTP/1.1\r\nHost: b\r\nX-Tenant: a\r\n Injected: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"bare CR in the Authorization", "GET / HTTP/1.1\r\nHost: b\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer x\rInjected: 1\r\n\r\n"},
		{"CR in the request line", "POST /sessions?a=\r HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
	}
	for _, c := range raw {
		before := e.up.Handshakes()
		status, err := rawExchange(ctx, addr, c.req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if e.up.Handshakes() == before && !strings.HasPrefix(status, "4") && status != "" {
			t.Errorf("%s: %q without reaching the upstream, want a 4xx", c.name, status)
		}
	}
	// Encoded CR/LF in the query and in header values (%0d%0a) go on as
	// data, encoded, never as a line end; the operator's own parameter
	// stays the only one of its name.
	for _, q := range []string{
		"token=x%0d%0aInjected:%201",
		"token=x%0dInjected:%201",
		"app=2%0d%0aInjected:%201",
		"x%0d%0aInjected=1",
		"token=%E5%98%8A%E5%98%8DInjected:%201", // U+560A U+560D: CR and LF in their low bytes
	} {
		resp, body := e.do(t, ctx, "POST", "/sessions?"+q, http.Header{"X-Tenant": {"a%0d%0aInjected: 1"}, "Cookie": {"a=%0d%0aInjected: 1"}}, "")
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("query %q: %d %s", q, resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no handshake reached the upstream")
	}
	for _, r := range seen {
		if what := injected(r); what != "" {
			t.Errorf("an injection reached the upstream: %s (request %s %q, headers %q)", what, r.Method, r.URL.RequestURI(), r.Header)
		}
	}
}

// A malicious or careless upstream frame holding line ends in its JSON
// whitespace (CR, LF, CRLF, blank lines, lines that read as SSE fields)
// must not split or forge an event: on both SSE entries each frame
// arrives as exactly one event whose data is the frame, the ids stay
// consecutive, and no "reset" or foreign id appears. Invalid JSON that
// would carry SSE fields is never passed on. Defence: bridgewire.AppendData
// writes every line of a frame as its own data line.
func TestAttackSSEDataInjection(t *testing.T) {
	e := newFakeEnv(t, nil)
	ctx := testCtx(t, 60*time.Second)
	frames := []string{
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\r\n\r\n\"message\":{\"n\":1}}",
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\n\n\n\"message\":{\"n\":2}}",
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\r\r\"message\":{\"n\":3}}",
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\r\n\r\"message\":\r\n\r\n{\"n\":4}\n\r\n}",
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\"message\":{\"n\":5,\"text\":\"\\r\\n\\r\\nevent: reset\\ndata: {}\\n\\nid: 9:9\"}}",
	}
	// Not JSON: the upstream consumer skips them (they would read as a
	// reset and an id if written as they are).
	forged := []string{
		"{\"type\":\"x\"}\n\nevent: reset\ndata: {\"reason\":\"forged\"}\n\n",
		"\r\rid: 1:999\r\rdata: {\"identifier\":\"{}\",\"message\":{\"n\":666}}\r\r",
	}
	check := func(t *testing.T, st *sseStream, epoch uint32, firstSeq uint64) {
		t.Helper()
		n := 0
		for n < len(frames) {
			ev, err := st.next(ctx)
			if err != nil {
				t.Fatalf("after %d frames: %v", n, err)
			}
			if ev.IsComment || !ev.HasData && ev.Event == "" {
				continue
			}
			if ev.Event != "" && ev.Event != "message" {
				t.Fatalf("an event %q appeared: %+v", ev.Event, ev)
			}
			f, err := parseFrame([]byte(ev.Data))
			if err != nil {
				t.Fatalf("event data is not one frame: %q (%v)", ev.Data, err)
			}
			if f.kind() != "message" {
				continue // the welcome, a ping
			}
			want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(frames[n])
			if ev.Data != want {
				t.Errorf("frame %d read as %q, want %q", n+1, ev.Data, want)
			}
			if wantID := fmt.Sprintf("%d:%d", epoch, firstSeq+uint64(n)); ev.ID != wantID {
				t.Errorf("frame %d has id %q, want %q", n+1, ev.ID, wantID)
			}
			if f.number() == 666 {
				t.Errorf("a forged frame was delivered: %q", ev.Data)
			}
			n++
		}
	}
	send := func(t *testing.T, up *cabletest.Conn) {
		t.Helper()
		for i, f := range frames {
			if i == 2 {
				for _, bad := range forged {
					if err := up.WriteText(ctx, []byte(bad)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := up.WriteText(ctx, []byte(f)); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("GET /sessions/{sid}/sse", func(t *testing.T) {
		s, up := e.create(t, ctx)
		send(t, up)
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/sessions/"+s.SID+"/sse?after=1&token="+s.Token, nil)
		st := streamOf(t, e, req)
		defer st.Close()
		check(t, st, s.Epoch, 2)
	})
	t.Run("GET /sessions/sse", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+bridgewire.OpenSSEPath, nil)
		st := streamOf(t, e, req)
		defer st.Close()
		ev, err := st.next(ctx) // the session event
		for err == nil && ev.Event != bridgewire.SessionEvent {
			ev, err = st.next(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		var s sessionInfo
		if err := json.Unmarshal([]byte(ev.Data), &s); err != nil {
			t.Fatalf("session event %q: %v", ev.Data, err)
		}
		up, err := e.up.NextConn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		send(t, up)
		check(t, st, s.Epoch, 2)
	})
}

// streamOf opens an event stream for req.
func streamOf(t *testing.T, e *fakeEnv, req *http.Request) *sseStream {
	t.Helper()
	rctx, cancel := context.WithCancel(req.Context())
	req = req.WithContext(rctx)
	resp, err := e.client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	st := &sseStream{Resp: resp, events: make(chan sseEvent, 4096), stop: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go st.read(bufio.NewReader(resp.Body))
	return st
}

// Invalid UTF-8 on every path into and out of the bridge. From a client:
// /send (in a frame object, in a frame string, as a lone surrogate
// escape), the single-request open's subscribe parameter, the WebSocket
// proxy and a re-attached WebSocket (JSON and MessagePack): refused with
// 400 invalid_utf8 or close 1007, and never forwarded (Rails would drop
// the whole connection). From the upstream: a frame that is not valid
// UTF-8 never reaches a client as it is (every downstream writes valid
// UTF-8 only), and the session goes on. Defences: protocol.ValidateCommand
// and bridgewire.ParseSend on the way in; the upstream consumer's frame
// decoding on the way out.
func TestAttackInvalidUTF8(t *testing.T) {
	e := newFakeEnv(t, nil)
	ctx := testCtx(t, 60*time.Second)
	s, up := e.create(t, ctx)
	const ident = `{"channel":"X"}`
	identJSON, _ := json.Marshal(ident)

	for name, frame := range map[string]string{
		"frame object":   `{"command":"message","identifier":` + string(identJSON) + `,"data":"{\"t\":\"` + "\xff" + `\"}"}`,
		"frame string":   `"{\"command\":\"subscribe\",\"identifier\":\"{\\\"channel\\\":\\\"` + "\xc3" + `\\\"}\"}"`,
		"lone surrogate": `{"command":"subscribe","identifier":"{\"channel\":\"\ud800\"}"}`,
		"overlong NUL":   `{"command":"subscribe","identifier":"{\"channel\":\"` + "\xc0\x80" + `\"}"}`,
		"CESU surrogate": `{"command":"subscribe","identifier":"{\"channel\":\"` + "\xed\xa0\x80" + `\"}"}`,
	} {
		resp, body := e.do(t, ctx, "POST", "/sessions/"+s.SID+"/send?token="+s.Token, nil, `[{"cseq":1,"frame":`+frame+`}]`)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_utf8"`) {
			t.Errorf("/send with a %s holding invalid text: %d %s, want 400 invalid_utf8", name, resp.StatusCode, body)
		}
	}
	for _, q := range []string{"%FF", "%ED%A0%80", "%C0%80"} {
		status, body, _ := e.attempt(ctx, "GET", bridgewire.OpenSSEPath+"?"+bridgewire.SubscribeParam+"="+q, nil, "", false)
		if status != http.StatusBadRequest || !strings.Contains(body, `"invalid_utf8"`) {
			t.Errorf("GET /sessions/sse?subscribe=%s: %d %s, want 400 invalid_utf8", q, status, body)
		}
	}
	handshakes := e.up.Handshakes()
	for _, path := range []string{"/", "/sessions/" + s.SID + "/ws?after=0&token=" + s.Token} {
		for _, sub := range []string{protocol.SubprotocolJSON, protocol.SubprotocolMessagePack} {
			c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+path, &ws.DialOptions{HTTPClient: e.client, Subprotocols: []string{sub}})
			if err != nil {
				t.Fatalf("%s (%s): %v", path, sub, err)
			}
			if path == "/" {
				if _, err := e.up.NextConn(ctx); err != nil {
					t.Fatal(err)
				}
			}
			codec, _ := protocol.CodecFor(sub)
			frame, err := codec.AppendCommand(nil, &protocol.Command{Command: "subscribe", Identifier: `{"channel":"` + "\xe2\x82" + `"}`})
			if err != nil {
				t.Fatal(err)
			}
			typ := ws.MessageText
			if codec.Binary() {
				typ = ws.MessageBinary
			}
			if err := c.Write(ctx, typ, frame); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second) // a socket left open fails the test
			for err == nil {
				_, _, err = c.Read(rctx)
			}
			cancel()
			if ws.CloseStatus(err) != ws.StatusInvalidFramePayloadData {
				t.Errorf("%s (%s): a command with invalid UTF-8 ended the socket with %v, want close 1007", path, sub, err)
			}
			c.CloseNow()
		}
	}
	if n := e.up.Handshakes() - handshakes; n != 2 {
		t.Errorf("%d proxy handshakes, want 2", n)
	}
	noCommandSince(t, ctx, e, s, "commands with invalid UTF-8")

	// From the upstream: frames that are not valid UTF-8, then a valid one.
	for _, bad := range []string{
		`{"identifier":"{\"channel\":\"X\"}","message":{"t":"` + "\xff\xfe" + `"}}`,
		`{"identifier":"{\"channel\":\"X\"}","message":{"t":"` + "\xed\xa0\x80" + `"}}`,
		`{"identifier":"{\"channel\":\"X\"}","message":{"t":"\ud800"}}`,
	} {
		if err := up.WriteText(ctx, []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	if err := up.Broadcast(ctx, ident, map[string]string{"t": "after"}); err != nil {
		t.Fatal(err)
	}
	// Every downstream gets the four frames, each as valid UTF-8 (the bad
	// bytes replaced, as a browser's decoder would), none dropped: a
	// WebSocket client counts frames for its cursor.
	check := func(what string, got []json.RawMessage) {
		t.Helper()
		var msgs []json.RawMessage
		for _, f := range got {
			if !utf8.Valid(f) {
				t.Errorf("%s: a frame with invalid UTF-8 reached the client: %q", what, f)
			}
			if frameType(f) == "message" {
				msgs = append(msgs, f)
			}
		}
		if len(msgs) != 4 || !bytes.Contains(msgs[3], []byte(`"after"`)) || !bytes.Contains(msgs[0], []byte("\uFFFD")) {
			t.Errorf("%s: messages %q, want the 4 frames", what, msgs)
		}
	}
	var polled []json.RawMessage
	for after := uint64(1); ctx.Err() == nil && !hasAfter(polled); {
		p := pollOnce(t, ctx, e, s, after)
		after = p.Next
		polled = append(polled, p.Frames...)
	}
	check("long-poll", polled)

	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/sessions/"+s.SID+"/sse?after=1&token="+s.Token, nil)
	st := streamOf(t, e, req)
	var streamed []json.RawMessage
	for len(streamed) < 5 { // 4 messages and the confirmation of the marker
		ev, err := st.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.HasData && ev.ID != "" {
			streamed = append(streamed, json.RawMessage(ev.Data))
		}
	}
	st.Close()
	check("SSE", streamed)

	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/sessions/"+s.SID+"/ws?after=1&token="+s.Token, &ws.DialOptions{HTTPClient: e.client, Subprotocols: []string{protocol.SubprotocolJSON}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var read []json.RawMessage
	for len(read) < 5 {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if frameType(data) != "ping" {
			read = append(read, data)
		}
	}
	check("WebSocket", read)
}

func hasAfter(frames []json.RawMessage) bool {
	for _, f := range frames {
		if bytes.Contains(f, []byte(`"after"`)) {
			return true
		}
	}
	return false
}

// Oversized bodies and frames on every endpoint: a body beyond the limit
// is 413 body_too_large on every route, the ones that read none
// included, and a session creation refused so never dials the upstream; a
// client frame beyond the frame limit closes the proxy's and a
// re-attached socket with 1009. Defences: MaxBytesReader in create, send
// and drainBody; the WebSocket read limit (serveWebSocket).
func TestAttackOversized(t *testing.T) {
	const bodyLimit, frameLimit = 1024, 4096
	e := newFakeEnv(t, nil, bridge.WithBodyLimit(bodyLimit), bridge.WithFrameLimit(frameLimit))
	ctx := testCtx(t, 60*time.Second)
	s, _ := e.create(t, ctx)
	handshakes := e.up.Handshakes()
	big := `[{"cseq":1,"frame":` + cmd("subscribe", identifier("X", "pad", strings.Repeat("x", 2*bodyLimit)), "") + `}]`
	for _, r := range []struct{ method, path string }{
		{"POST", "/sessions"},
		{"POST", "/sessions/" + s.SID + "/send?token=" + s.Token},
		{"GET", bridgewire.OpenSSEPath},
		{"GET", "/sessions/" + s.SID + "/sse?token=" + s.Token},
		{"GET", "/sessions/" + s.SID + "/poll?timeout=0&token=" + s.Token},
		{"GET", "/sessions/" + s.SID + "/ws?token=" + s.Token},
		{"DELETE", "/sessions/" + s.SID + "?token=" + s.Token},
		{"GET", "/healthz"},
		{"GET", "/nowhere"},
		{"POST", "/events/AttackAttackAttackAttack0"},
		{"GET", "/events/AttackAttackAttackAttack0"},
	} {
		status, body, _ := e.attempt(ctx, r.method, r.path, http.Header{"Content-Type": {"application/json"}}, big, false)
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "body_too_large") && !strings.Contains(body, "too large") {
			t.Errorf("%s %s with a %d-byte body: %d %s, want 413", r.method, r.path, len(big), status, body)
		}
	}
	if n := e.up.Handshakes(); n != handshakes {
		t.Errorf("the upstream saw %d handshakes for refused requests", n-handshakes)
	}
	if st := e.bridge.Stats(); st.Sessions != 1 {
		t.Errorf("%d sessions, want 1 (the DELETE with a body too large must not end it)", st.Sessions)
	}

	for _, path := range []string{"/", "/sessions/" + s.SID + "/ws?after=1&token=" + s.Token} {
		c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+path, &ws.DialOptions{HTTPClient: e.client, Subprotocols: []string{protocol.SubprotocolJSON}})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		frame := cmd("subscribe", identifier("X", "pad", strings.Repeat("y", 2*frameLimit)), "")
		if err := c.Write(ctx, ws.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second) // a socket left open fails the test
		for err == nil {
			_, _, err = c.Read(rctx)
		}
		cancel()
		if ws.CloseStatus(err) != ws.StatusMessageTooBig {
			t.Errorf("%s: a %d-byte frame ended the socket with %v, want close 1009", path, len(frame), err)
		}
		c.CloseNow()
	}
	// Nothing too large reached the upstream: the proxy's session saw no
	// command, and the marker is the first of s.
	noCommandSince(t, ctx, e, s, "oversized frames")
}

// Session floods from one client: many concurrent creations from one
// address (IPv4 and IPv6 end to end, the default client IP being the
// connection's address) open no more sessions than the per-client cap,
// on every entry that creates one, and dial the upstream no more; an
// IPv6 client counts as its /64 (ClientKey). Defence: reserve's per-client
// count, taken before the upstream is dialled.
func TestAttackSessionFlood(t *testing.T) {
	const perIP = 3
	e := newFakeEnv(t, nil, bridge.WithSessionLimits(1000, perIP), bridge.WithSessionRate(0, 0))
	ctx := testCtx(t, 60*time.Second)
	servers := map[string]string{"127.0.0.1": e.srv.URL}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		srv := httptest.NewUnstartedServer(e.bridge)
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
		servers["::1"] = srv.URL
	} else {
		t.Logf("no IPv6 loopback (%v): the /64 key is covered by TestClientKey only", err)
	}
	for ip, base := range servers {
		before := e.up.Handshakes()
		var created, refused, other atomic.Int64
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				var (
					req *http.Request
					err error
				)
				switch i % 3 {
				case 0:
					req, err = http.NewRequestWithContext(ctx, "POST", base+"/sessions", nil)
				case 1: // the single-request open, read until its session event
					req, err = http.NewRequestWithContext(ctx, "GET", base+bridgewire.OpenSSEPath, nil)
				case 2: // a compat session
					req, err = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/events/Flood%020d?timeout=0", base, len(ip)*100+i), nil)
					req.Header.Set("Accept", "application/json")
				}
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := e.client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				switch {
				case resp.StatusCode/100 == 2:
					created.Add(1)
				case resp.StatusCode == http.StatusTooManyRequests:
					b, _ := io.ReadAll(resp.Body)
					if !strings.Contains(string(b), "too_many_sessions_for_ip") {
						t.Errorf("429 %s", b)
					}
					refused.Add(1)
				default:
					b, _ := io.ReadAll(resp.Body)
					t.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
					other.Add(1)
				}
			})
		}
		wg.Wait()
		if created.Load() != perIP || refused.Load() != 40-perIP {
			t.Errorf("from %s: %d created, %d refused with 429, want %d and %d", ip, created.Load(), refused.Load(), perIP, 40-perIP)
		}
		if n := e.up.Handshakes() - before; n != perIP {
			t.Errorf("from %s: the upstream saw %d handshakes, want %d", ip, n, perIP)
		}
		// The WebSocket proxy is refused as well.
		u := "ws" + strings.TrimPrefix(base, "http") + "/"
		if c, resp, err := ws.Dial(ctx, u, &ws.DialOptions{HTTPClient: e.client}); err == nil {
			c.CloseNow()
			t.Errorf("from %s: a proxy session beyond the cap", ip)
		} else if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("from %s: proxy beyond the cap: %v, want 429", ip, err)
		}
	}
	if got, want := bridge.ClientKey("::1"), bridge.ClientKey("::2"); got != want {
		t.Errorf("ClientKey(::1) %q and ClientKey(::2) %q: one /64 must be one client", got, want)
	}
}

// countingWriter counts the bytes logged.
type countingWriter struct {
	n     atomic.Int64
	lines atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	w.lines.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

// A malicious upstream: a frame far beyond the frame limit, an endless
// flood of frames its client does not read, and invalid frames at full
// speed. The bridge stays bounded in memory (what it holds never exceeds
// its queue and resume window plus a frame), its logs stay bounded even
// at debug level (counted in bytes: kilobytes, not gigabytes), and
// clients are told of what ends their session. Defences: the upstream
// read limit (WithFrameLimit), the session's pending limit (WithQueue:
// backpressure on the upstream socket), the consumer's rate-limited
// frame-error log.
func TestAttackMaliciousUpstream(t *testing.T) {
	const (
		frameLimit  = 64 << 10
		queueBytes  = 64 << 10
		windowBytes = 64 << 10
	)
	var logged countingWriter
	logger := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newFakeEnv(t, nil,
		bridge.WithFrameLimit(frameLimit),
		bridge.WithQueue(1<<20, queueBytes), // bytes bind first
		bridge.WithResumeWindow(windowBytes),
		bridge.WithLogger(logger),
	)
	ctx := testCtx(t, 120*time.Second)
	const ident = `{"channel":"X"}`

	t.Run("huge frame", func(t *testing.T) {
		s, up := e.create(t, ctx)
		// 32 MiB announced: the bridge must stop reading long before.
		err := up.WriteText(ctx, append(append([]byte(`{"identifier":"{\"channel\":\"X\"}","message":"`), bytes.Repeat([]byte("x"), 32<<20)...), `"}`...))
		// Whether this write fails depends on timing: after refusing the
		// frame the bridge's WebSocket library reads on, discarding, until
		// the peer's close frame or its close timeout. What the bridge
		// promises is below: the frame never reaches a client, and the
		// client is told the upstream was lost.
		t.Logf("the upstream's 32 MiB write: %v", err)
		var after uint64
		for {
			p := pollOnce(t, ctx, e, s, after)
			after = p.Next
			for _, f := range p.Frames {
				if len(f) > frameLimit {
					t.Fatalf("a %d-byte frame reached the client", len(f))
				}
			}
			if n := len(p.Frames); n > 0 && frameType(p.Frames[n-1]) == "disconnect" {
				if !bytes.Contains(p.Frames[n-1], []byte("upstream_lost")) {
					t.Errorf("last frame %s, want the upstream_lost disconnect", p.Frames[n-1])
				}
				break
			}
			if p.Ended {
				t.Fatal("the session ended without telling the client")
			}
			if ctx.Err() != nil {
				t.Fatal(ctx.Err())
			}
		}
	})

	t.Run("endless flood", func(t *testing.T) {
		s, up := e.create(t, ctx)
		stop := make(chan struct{})
		var maxHeld atomic.Int64
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				if b := e.bridge.Stats().BufferedBytes; b > maxHeld.Load() {
					maxHeld.Store(b)
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		// Flood until a write waits a second (the bridge holds the socket
		// back) or 20000 frames (4 MB) were written.
		written := 0
		pad := strings.Repeat("p", 180)
		for ; written < 20000; written++ {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			err := up.Broadcast(wctx, ident, map[string]any{"n": written + 1, "pad": pad})
			cancel()
			if err != nil {
				break
			}
		}
		close(stop)
		<-watched
		bound := int64(queueBytes + windowBytes + frameLimit)
		if m := maxHeld.Load(); m > bound {
			t.Errorf("the bridge held %d bytes of frames during the flood, bound %d", m, bound)
		}
		t.Logf("flood: %d frames written before the bridge held the upstream back; at most %d bytes held", written, maxHeld.Load())
		// What was written reaches the client in order, without a gap.
		var after uint64 = 1 // the welcome
		next := 1
		for next <= written && ctx.Err() == nil {
			p := pollOnce(t, ctx, e, s, after)
			after = p.Next
			for _, f := range p.Frames {
				tf, _ := parseFrame(f)
				if tf.kind() != "message" {
					continue
				}
				var m struct{ N int }
				json.Unmarshal(tf.Message, &m)
				if m.N != next {
					t.Fatalf("frame n=%d, want %d", m.N, next)
				}
				next++
			}
			if p.Ended {
				break
			}
		}
		if next <= written && written < 20000 {
			// The last write timed out and dropped the connection: the
			// frames the bridge took before are delivered, the rest is
			// the upstream's own loss, reported as upstream_lost.
			t.Logf("%d of %d frames delivered before upstream_lost", next-1, written)
		} else if next <= written {
			t.Errorf("%d of %d frames delivered", next-1, written)
		}
	})

	t.Run("invalid frames at full speed", func(t *testing.T) {
		s, up := e.create(t, ctx)
		before, beforeLines := logged.n.Load(), logged.lines.Load()
		start := time.Now()
		garbage := [][]byte{
			[]byte("not json at all"),
			[]byte(`{"type":`),
			[]byte(`{"identifier":42,"message":"x"}`),
			[]byte(`["an","array"]`),
			bytes.Repeat([]byte("{"), 1000),
		}
		sent := 0
		for time.Since(start) < 2*time.Second && sent < 200000 {
			var err error
			if sent%7 == 6 {
				err = up.WriteBinary(ctx, []byte{0xc1, 0xff, 0x00})
			} else {
				err = up.WriteText(ctx, garbage[sent%len(garbage)])
			}
			if err != nil {
				t.Fatalf("after %d invalid frames: %v", sent, err)
			}
			sent++
		}
		elapsed := time.Since(start)
		if err := up.Broadcast(ctx, ident, map[string]string{"t": "still here"}); err != nil {
			t.Fatal(err)
		}
		var after uint64 = 1
		for found := false; !found; {
			p := pollOnce(t, ctx, e, s, after)
			after = p.Next
			for _, f := range p.Frames {
				found = found || bytes.Contains(f, []byte("still here"))
			}
			if p.Ended || ctx.Err() != nil {
				t.Fatalf("the session ended: %+v", p)
			}
		}
		n, lines := logged.n.Load()-before, logged.lines.Load()-beforeLines
		t.Logf("%d invalid frames in %v: %d log lines, %d bytes logged", sent, elapsed.Round(time.Millisecond), lines, n)
		// One line a second at most, and a few for the session.
		if maxLines := int64(elapsed.Seconds()) + 1 + 10; lines > maxLines || n > maxLines*2048 {
			t.Errorf("%d invalid frames in %v logged %d lines, %d bytes: want at most %d lines", sent, elapsed, lines, n, maxLines)
		}
	})
}
