//go:build unix

package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/server/bridge"
)

// openOne sends the single-request open, GET /sessions/sse, with header
// and query. A non-200 answer is returned with its body.
func (e *env) openOne(ctx context.Context, header http.Header, query url.Values) (*sseStream, *http.Response, []byte, error) {
	rctx, cancel := context.WithCancel(context.Background())
	stopDial := context.AfterFunc(ctx, cancel)
	defer stopDial()
	req, err := http.NewRequestWithContext(rctx, "GET", e.srv.URL+bridgewire.OpenSSEPath+"?"+query.Encode(), nil)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp, body, fmt.Errorf("open: HTTP %d: %s", resp.StatusCode, body)
	}
	st := &sseStream{Resp: resp, events: make(chan sseEvent, 4096), stop: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go st.read(bufio.NewReader(resp.Body))
	return st, resp, nil, nil
}

// openedSession reads the first event of a single-request open: the
// session.
func openedSession(ctx context.Context, t *testing.T, st *sseStream) sessionInfo {
	t.Helper()
	for {
		ev, err := st.next(ctx)
		if err != nil {
			t.Fatalf("waiting for the session event: %v", err)
		}
		if ev.IsComment || !ev.HasData && ev.Event == "" {
			continue // the retry line
		}
		if ev.Event != bridgewire.SessionEvent || ev.HasID {
			t.Fatalf("first event %+v, want a %q event without an id", ev, bridgewire.SessionEvent)
		}
		c, err := bridgewire.ParseSession([]byte(ev.Data))
		if err != nil {
			t.Fatal(err)
		}
		if c.TTL <= 0 || c.MaxBody <= 0 {
			t.Errorf("session event %+v: want the ttl and max_body of POST /sessions", c)
		}
		return sessionInfo{SID: c.SID, Token: c.Token, Epoch: c.Epoch}
	}
}

// GET /sessions/sse opens a session in one request: the session's name
// first, then Rails' welcome and its answers to the subscriptions asked
// for, numbered as on GET /sessions/{sid}/sse. Those subscriptions are the
// session's commands 1…n, so the client's next command is n+1; and the
// stream resumes at the session's own URL.
func TestOpenSSEInOneRequest(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 60*time.Second)
	echo := identifier("EchoChannel", "who", "one")
	reject := identifier("RejectChannel", "for", "one")
	h := authHeader("alice")
	h.Set("Sec-Fetch-Site", "same-origin") // a same-origin page's request passes
	st, _, body, err := e.openOne(ctx, h, url.Values{bridgewire.SubscribeParam: {echo, reject}})
	if err != nil {
		t.Fatalf("%v %s", err, body)
	}
	defer st.Close()
	if ct := st.Resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	s := openedSession(ctx, t, st)

	welcome, err := st.nextData(ctx)
	if err != nil || welcome.kind() != "welcome" || welcome.ID != fmt.Sprintf("%d:1", s.Epoch) {
		t.Fatalf("after the session: %v %v, want the welcome with id %d:1", welcome, err, s.Epoch)
	}
	// Rails may answer the two subscriptions in any order; EchoChannel
	// sends its params before its confirmation.
	seen := map[string]bool{}
	last := welcome.Seq
	for len(seen) < 2 {
		f, err := st.nextData(ctx)
		if err != nil {
			t.Fatalf("waiting for the subscriptions' answers: %v (have %v)", err, seen)
		}
		if f.kind() == "ping" {
			continue
		}
		if f.Seq != last+1 {
			t.Errorf("frame %v after seq %d, want %d", f, last, last+1)
		}
		last = f.Seq
		switch {
		case f.kind() == "confirm_subscription" && f.Identifier == echo,
			f.kind() == "reject_subscription" && f.Identifier == reject:
			seen[f.kind()] = true
		case f.kind() == "message" && f.Identifier == echo:
		default:
			t.Fatalf("unexpected frame %v", f)
		}
	}

	// The subscriptions were commands 1 and 2: the client continues at 3.
	status, answer := e.send(ctx, s, 3, cmd("message", echo, `{"action":"echo","text":"one request"}`))
	if status != http.StatusOK || !strings.Contains(string(answer), `"acked":3`) {
		t.Fatalf("send cseq 3: %d %s, want 200 acked 3", status, answer)
	}
	got, err := nextMatch(ctx, &sseDown{st: st, s: s}, nil, func(f tframe) bool {
		return f.kind() == "message" && strings.Contains(string(f.Message), "one request")
	})
	var m struct{ User string }
	if err != nil || json.Unmarshal(got.Message, &m) != nil || m.User != "alice" {
		t.Fatalf("echo: %v %v, want alice's", got, err)
	}

	// A broken stream resumes at the session's URL from its last event.
	st.Close()
	again, body, err := e.openSSE(ctx, s, http.Header{bridgewire.LastEventID: {welcome.ID}}, nil)
	if err != nil {
		t.Fatalf("resume: %v %s", err, body)
	}
	defer again.Close()
	f, err := again.nextData(ctx)
	if err != nil || f.Seq != 2 {
		t.Fatalf("resumed after the welcome: %v %v, want frame 2", f, err)
	}
}

// What POST /sessions refuses, GET /sessions/sse refuses with the same
// answer before any stream starts, and a bad subscribe parameter is
// refused before Rails is dialled. An EventSource reconnecting to the
// open URL (with a Last-Event-ID) gets a reset, never a new session.
func TestOpenSSERefusals(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 60*time.Second)
	echo := identifier("EchoChannel", "who", "refused")

	_, resp, body, err := e.openOne(ctx, nil, url.Values{bridgewire.SubscribeParam: {echo}})
	if resp == nil || resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"unauthorized"`) {
		t.Errorf("without credentials: %v %s, want 401 unauthorized", err, body)
	}

	many := make([]string, bridgewire.MaxSubscribe+1)
	for i := range many {
		many[i] = identifier("EchoChannel", "who", fmt.Sprint(i))
	}
	for _, c := range []struct {
		name, query, reason string
	}{
		{"invalid UTF-8", bridgewire.SubscribeParam + "=%FF", "invalid_utf8"},
		{"an empty identifier", bridgewire.SubscribeParam + "=", "bad_command"},
		{"too many", url.Values{bridgewire.SubscribeParam: many}.Encode(), "bad_query"},
		{"a bad escape", bridgewire.SubscribeParam + "=%zz", "bad_query"},
	} {
		resp, body := e.do(ctx, "GET", bridgewire.OpenSSEPath+"?"+c.query, authHeader("alice"), "")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"`+c.reason+`"`) {
			t.Errorf("%s: %d %s, want 400 %s", c.name, resp.StatusCode, body, c.reason)
		}
	}

	// A link or an image on another site sends the victim's credentials
	// without an Origin: no session is opened for it.
	for _, c := range []struct {
		name   string
		header http.Header
	}{
		{"Sec-Fetch-Site: cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"Sec-Fetch-Site: same-site", http.Header{"Sec-Fetch-Site": {"same-site"}}},
		{"a foreign Referer", http.Header{"Referer": {"https://evil.example/page"}}},
	} {
		h := authHeader("alice")
		for k, v := range c.header {
			h[k] = v
		}
		resp, body := e.do(ctx, "GET", bridgewire.OpenSSEPath+"?"+url.Values{bridgewire.SubscribeParam: {echo}}.Encode(), h, "")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"cross_site_request"`) {
			t.Errorf("%s: %d %s, want 403 cross_site_request", c.name, resp.StatusCode, body)
		}
	}

	h := authHeader("alice")
	h.Set(bridgewire.LastEventID, "5:7")
	st, _, body, err := e.openOne(ctx, h, url.Values{bridgewire.SubscribeParam: {echo}})
	if err != nil {
		t.Fatalf("with a Last-Event-ID: %v %s", err, body)
	}
	defer st.Close()
	if _, err := st.nextData(ctx); err == nil || !strings.Contains(err.Error(), bridgewire.ReasonBadCursor) {
		t.Errorf("with a Last-Event-ID: %v, want a %s reset", err, bridgewire.ReasonBadCursor)
	}
	if n := e.bridge.Stats().SessionsCreated; n != 0 {
		t.Errorf("%d sessions created by refused opens, want 0", n)
	}
}

// The single-request open passes the client's query to Rails as POST
// /sessions does (the operator's parameters win), all but the subscribe
// parameters.
func TestOpenSSEQuery(t *testing.T) {
	rails := railstest.Start(t)
	ctx := testCtx(t, 60*time.Second)
	echo := identifier("EchoChannel", "who", "query")

	locked := railsBridge(t, rails.CableURL()+"?token=reject")
	_, resp, body, _ := locked.openOne(ctx, nil, url.Values{"token": {"secret-bob"}, bridgewire.SubscribeParam: {echo}})
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the client's token against the operator's: %s, want 401", body)
	}

	// More subscriptions than a new session's command bucket holds (twice
	// the rate) are refused before Rails is dialled.
	slow := bridge.New(rails.CableURL(), bridge.WithCommandRate(1))
	slowSrv := httptest.NewServer(slow)
	defer func() {
		slowSrv.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		slow.Close(cctx)
	}()
	three := url.Values{bridgewire.SubscribeParam: {echo, echo + " ", echo + "  "}, "token": {"secret-carol"}}
	resp, err := http.Get(slowSrv.URL + bridgewire.OpenSSEPath + "?" + three.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), `"rate_limited"`) {
		t.Errorf("3 subscriptions at 1 command/s: %d %s, want 429 rate_limited", resp.StatusCode, body)
	}
	if n := slow.Stats().SessionsCreated; n != 0 {
		t.Errorf("%d sessions created by a refused open, want 0", n)
	}

	open := railsBridge(t, rails.CableURL())
	st, _, body, err := open.openOne(ctx, nil, url.Values{"token": {"secret-carol"}, bridgewire.SubscribeParam: {echo}})
	if err != nil {
		t.Fatalf("%v %s", err, body)
	}
	defer st.Close()
	s := openedSession(ctx, t, st)
	if _, err := nextMatch(ctx, &sseDown{st: st, s: s}, nil, func(f tframe) bool { return f.kind() == "confirm_subscription" }); err != nil {
		t.Fatal(err)
	}
	if status, answer := open.send(ctx, s, 2, cmd("message", echo, `{"action":"echo","x":1}`)); status != http.StatusOK {
		t.Fatalf("send: %d %s", status, answer)
	}
	f, err := nextMatch(ctx, &sseDown{st: st, s: s}, nil, func(f tframe) bool { return strings.Contains(string(f.Message), `"x":1`) })
	var m struct{ User string }
	if err != nil || json.Unmarshal(f.Message, &m) != nil || m.User != "carol" {
		t.Fatalf("echo: %v %v, want carol's (the token reached Rails)", f, err)
	}
}
