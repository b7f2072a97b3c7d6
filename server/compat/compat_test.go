//go:build unix

package compat_test

// Conformance tests of the actioncable-to-eventsource API (server/COMPAT.md)
// against the example Rails app. Helpers here are prefixed with "ce" so as
// not to collide with the other tests of the package.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/server/bridge"
)

const (
	ceLobby   = `{"channel":"ChatChannel","room":"lobby"}`
	ceNumbers = `{"channel":"NumbersChannel","stream":"s1"}`
)

// ceEnv is Rails with a bridge in front of it.
type ceEnv struct {
	t      *testing.T
	rails  *railstest.Server
	bridge *bridge.Bridge
	srv    *httptest.Server
	client *http.Client
	// skipConnCheck skips the check, at cleanup, that Rails counts no
	// open connection.
	skipConnCheck bool
}

// ceClientIP is the bridge's clientIP in these tests: the X-Test-IP header
// stands for a client on another machine.
func ceClientIP(r *http.Request) string {
	if ip := r.Header.Get("X-Test-IP"); ip != "" {
		return ip
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return host
}

func newCEEnv(t *testing.T, railsOpts []railstest.Option, opts ...bridge.Option) *ceEnv {
	t.Helper()
	rails := railstest.Start(t, railsOpts...)
	opts = append([]bridge.Option{
		bridge.WithUpstreamBackoff(backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}),
		bridge.WithClientIP(ceClientIP),
	}, opts...)
	b := bridge.New(rails.CableURL(), opts...)
	srv := httptest.NewServer(b)
	e := &ceEnv{t: t, rails: rails, bridge: b, srv: srv, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bridge.Close: %v", err)
		}
		if e.skipConnCheck {
			return
		}
		if _, err := rails.Stats(ctx); err != nil {
			return
		}
		if st, err := rails.WaitStats(ctx, func(s railstest.Stats) bool { return s.Connections == 0 }); err != nil {
			t.Errorf("upstream sockets left open after Close: %+v (%v)", st, err)
		}
	})
	return e
}

func ceCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// ceNewID makes an events id as a client should: 128 random bits, base64url.
func ceNewID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ceClient is one seed client: an events id and the headers it sends.
type ceClient struct {
	e      *ceEnv
	id     string
	header http.Header
}

func (e *ceEnv) newClient(user string) *ceClient {
	return &ceClient{e: e, id: ceNewID(), header: http.Header{"Cookie": {"user=" + user}}}
}

// open opens the client's session with a GET, as a seed client does
// before it subscribes: a POST does not open one.
func (c *ceClient) open(ctx context.Context) {
	c.e.t.Helper()
	resp, b := c.request(ctx, "GET", "timeout=0", http.Header{"Accept": {"application/json"}}, "")
	if resp.StatusCode != http.StatusOK {
		c.e.t.Fatalf("open: %d %s", resp.StatusCode, b)
	}
}

// as is the same events id used with other headers (another client).
func (c *ceClient) as(header http.Header) *ceClient {
	return &ceClient{e: c.e, id: c.id, header: header}
}

func (c *ceClient) request(ctx context.Context, method, query string, header http.Header, body string) (*http.Response, []byte) {
	c.e.t.Helper()
	resp, b, err := c.tryRequest(ctx, method, query, header, body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return resp, b
}

// tryRequest is request without t.Fatal, for goroutines.
func (c *ceClient) tryRequest(ctx context.Context, method, query string, header http.Header, body string) (*http.Response, []byte, error) {
	u := c.e.srv.URL + "/events/" + c.id
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.e.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading: %w", method, u, err)
	}
	return resp, b, nil
}

// ceResult is one POST answer entry, kept raw to check JSON types.
type ceResult map[string]json.RawMessage

func (r ceResult) str(k string) string {
	var s string
	json.Unmarshal(r[k], &s)
	return s
}

// post sends a request array and expects 200 with one answer per request.
func (c *ceClient) post(ctx context.Context, body string) []ceResult {
	c.e.t.Helper()
	resp, b := c.request(ctx, "POST", "", http.Header{"Content-Type": {"application/json"}}, body)
	if resp.StatusCode != http.StatusOK {
		c.e.t.Fatalf("POST %s: %d %s", body, resp.StatusCode, b)
	}
	var out []ceResult
	if err := json.Unmarshal(b, &out); err != nil {
		c.e.t.Fatalf("POST answer %s: %v", b, err)
	}
	return out
}

// subscribe subscribes to identifier and returns the answer entry, which
// must carry no error.
func (c *ceClient) subscribe(ctx context.Context, identifier string) ceResult {
	c.e.t.Helper()
	res := c.post(ctx, `[{"identifier":`+identifier+`,"subscribe":true}]`)
	if len(res) != 1 || res[0]["error"] != nil {
		c.e.t.Fatalf("subscribe %s: %v", identifier, res)
	}
	return res[0]
}

// cePolled is a long-poll answer.
type cePolled struct {
	Messages    []json.RawMessage `json:"messages"`
	SessionID   string            `json:"session_id"`
	Dropped     uint64            `json:"dropped"`
	QueueLength int               `json:"queue_length"`
	events      []ceEvent
}

func (c *ceClient) poll(ctx context.Context, query string) cePolled {
	c.e.t.Helper()
	resp, b := c.request(ctx, "GET", query, http.Header{"Accept": {"application/json"}}, "")
	if resp.StatusCode != http.StatusOK {
		c.e.t.Fatalf("poll ?%s: %d %s", query, resp.StatusCode, b)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		c.e.t.Fatalf("poll answer %s: %v", b, err)
	}
	for _, k := range []string{"messages", "session_id", "dropped", "queue_length"} {
		if keys[k] == nil {
			c.e.t.Fatalf("poll answer %s: no %q", b, k)
		}
	}
	var p cePolled
	if err := json.Unmarshal(b, &p); err != nil || p.Messages == nil {
		c.e.t.Fatalf("poll answer %s: %v (messages must be an array)", b, err)
	}
	for _, m := range p.Messages {
		ev := ceParse(c.e.t, m)
		if ev.SessionID != nil {
			c.e.t.Fatalf("long-poll message has a session_id: %s", m)
		}
		p.events = append(p.events, ev)
	}
	return p
}

// ceEvent is one seed event.
type ceEvent struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"` // joined
	SessionID  *string         `json:"session_id"`
	ChanID     string          `json:"chan_id"`
	MsgID      string          `json:"msg_id"`
	Time       string          `json:"time"`
	Identifier json.RawMessage `json:"identifier"`
	Message    json.RawMessage `json:"message"`

	raw   string
	sseID string
}

func (ev ceEvent) msgID() uint64 {
	n, _ := strconv.ParseUint(ev.MsgID, 10, 64)
	return n
}

// number is the "n" of a NumbersChannel message, -1 otherwise.
func (ev ceEvent) number() int {
	var m struct{ N *int }
	if ev.Type != "received" || json.Unmarshal(ev.Message, &m) != nil || m.N == nil {
		return -1
	}
	return *m.N
}

func ceParse(t *testing.T, raw []byte) ceEvent {
	t.Helper()
	var ev ceEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("event %s: %v", raw, err)
	}
	ev.raw = string(raw)
	if ev.Type == "joined" {
		return ev
	}
	switch ev.Type {
	case "connected", "rejected", "received", "disconnected":
	default:
		t.Fatalf("event of unknown type: %s", raw)
	}
	if ev.ChanID == "" || ev.msgID() == 0 || ev.Identifier == nil || ev.Message == nil {
		t.Fatalf("event lacks chan_id, msg_id, identifier or message: %s", raw)
	}
	at, err := time.Parse(time.RFC3339Nano, ev.Time)
	if err != nil || !strings.HasSuffix(ev.Time, "Z") || time.Since(at).Abs() > time.Minute {
		t.Fatalf("event time %q: not a current RFC 3339 UTC time (%v)", ev.Time, err)
	}
	return ev
}

// ceStream is an open EventSource.
type ceStream struct {
	t        *testing.T
	resp     *http.Response
	events   chan ceSSE
	comments atomic.Int64
	cancel   context.CancelFunc
	done     chan struct{}

	mu   sync.Mutex
	data []string // every data field seen
}

type ceSSE struct {
	event, id, data string
	hasID           bool
}

func (c *ceClient) openSSE(ctx context.Context, header http.Header) *ceStream {
	t := c.e.t
	t.Helper()
	rctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(rctx, "GET", c.e.srv.URL+"/events/"+c.id, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.e.client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("EventSource: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("EventSource: %d %s", resp.StatusCode, b)
	}
	st := &ceStream{t: t, resp: resp, events: make(chan ceSSE, 4096), cancel: cancel, done: make(chan struct{})}
	go st.read()
	t.Cleanup(st.close)
	return st
}

func (st *ceStream) close() {
	st.cancel()
	<-st.done
	st.resp.Body.Close()
}

func (st *ceStream) read() {
	defer close(st.done)
	defer close(st.events)
	br := bufio.NewReader(st.resp.Body)
	var ev ceSSE
	var has bool
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if has {
				st.events <- ev
			}
			ev, has = ceSSE{}, false
		case strings.HasPrefix(line, ":"):
			st.comments.Add(1)
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				ev.event, has = value, true
			case "id":
				ev.id, ev.hasID, has = value, true, true
			case "data":
				st.mu.Lock()
				st.data = append(st.data, value)
				st.mu.Unlock()
				if ev.data != "" {
					ev.data += "\n"
				}
				ev.data += value
				has = true
			}
		}
	}
}

// next returns the next message event, failing the test at ctx's end.
func (st *ceStream) next(ctx context.Context) ceEvent {
	st.t.Helper()
	for {
		select {
		case ev, ok := <-st.events:
			if !ok {
				st.t.Fatal("EventSource: the stream ended")
			}
			if ev.data == "" {
				continue // retry: only
			}
			if ev.event != "message" {
				st.t.Fatalf("SSE event %q, want \"message\": %s", ev.event, ev.data)
			}
			e := ceParse(st.t, []byte(ev.data))
			e.sseID = ev.id
			if e.Type != "joined" {
				if e.SessionID == nil || *e.SessionID == "" {
					st.t.Fatalf("SSE event without session_id: %s", ev.data)
				}
				if !ev.hasID || ev.id != e.MsgID {
					st.t.Fatalf("SSE id %q, want the msg_id of %s", ev.id, ev.data)
				}
			}
			return e
		case <-ctx.Done():
			st.t.Fatalf("EventSource: no event before the deadline")
		}
	}
}

// collect reads n events.
func (st *ceStream) collect(ctx context.Context, n int) []ceEvent {
	st.t.Helper()
	out := make([]ceEvent, n)
	for i := range out {
		out[i] = st.next(ctx)
	}
	return out
}

// until reads events until one satisfies ok, returning all it read.
func (st *ceStream) until(ctx context.Context, ok func(ceEvent) bool) []ceEvent {
	st.t.Helper()
	var out []ceEvent
	for {
		ev := st.next(ctx)
		out = append(out, ev)
		if ok(ev) {
			return out
		}
	}
}

// find returns the event of the given type for chanID.
func ceFind(t *testing.T, evs []ceEvent, typ, chanID string) ceEvent {
	t.Helper()
	for _, ev := range evs {
		if ev.Type == typ && ev.ChanID == chanID {
			return ev
		}
	}
	t.Fatalf("no %s event for chan %s in %v", typ, chanID, evs)
	return ceEvent{}
}

func ceJSONEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestCompatSSE: the EventSource side of the seed API, end to end.
func TestCompatSSE(t *testing.T) {
	e := newCEEnv(t, nil, bridge.WithKeepAlive(50*time.Millisecond))
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")

	st := c.openSSE(ctx, nil)
	h := st.resp.Header
	if h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache, no-transform" || h.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("SSE headers: %v", h)
	}
	joined := st.next(ctx)
	if want := `{"type":"joined","id":"` + c.id + `"}`; joined.raw != want {
		t.Fatalf("first event %s, want %s", joined.raw, want)
	}

	// The identifier's key order and spacing: sent compact, order kept.
	rejectIdent := `{"room": "x", "channel": "RejectChannel"}`
	res := c.post(ctx, `[{"identifier":`+ceLobby+`,"subscribe":true},{"identifier":`+rejectIdent+`,"subscribe":true}]`)
	if len(res) != 2 {
		t.Fatalf("POST answered %d entries, want 2", len(res))
	}
	sid := res[0].str("session_id")
	lobbyChan, rejectChan := res[0].str("chan_id"), res[1].str("chan_id")
	for _, r := range res {
		if _, has := r["error"]; has || r.str("session_id") != sid || sid == "" || r.str("chan_id") == "" {
			t.Fatalf("POST answers %v: want no error, one session_id and a chan_id each", res)
		}
	}
	if lobbyChan == rejectChan {
		t.Fatalf("two identifiers share chan_id %s", lobbyChan)
	}
	evs := st.collect(ctx, 2)
	conn, rej := ceFind(t, evs, "connected", lobbyChan), ceFind(t, evs, "rejected", rejectChan)
	if string(conn.Identifier) != ceLobby || string(rej.Identifier) != `{"room":"x","channel":"RejectChannel"}` {
		t.Fatalf("identifiers %s and %s: key order not kept", conn.Identifier, rej.Identifier)
	}
	if string(conn.Message) != "null" || string(rej.Message) != "null" {
		t.Fatalf("connected/rejected messages %s %s, want null", conn.Message, rej.Message)
	}

	// Broadcasts: an object, and values that are not objects, pass
	// through unchanged.
	for _, msg := range []any{map[string]any{"text": "hi", "n": 1}, "plain text", 42, []any{1, "a"}, true} {
		if err := e.rails.Broadcast(ctx, "chat:lobby", msg); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(msg)
		ev := st.next(ctx)
		if ev.Type != "received" || ev.ChanID != lobbyChan || string(ev.Identifier) != ceLobby || !ceJSONEqual(ev.Message, want) {
			t.Fatalf("broadcast %s: got %s", want, ev.raw)
		}
		if _, isObj := msg.(map[string]any); !isObj && string(ev.Message) != string(want) {
			t.Fatalf("message %s, want %s byte for byte", ev.Message, want)
		}
	}

	// send → the channel's action runs in Rails as alice.
	res = c.post(ctx, `[{"identifier":`+ceLobby+`,"send":{"action":"speak","text":"via compat"}}]`)
	if len(res) != 1 || res[0]["error"] != nil || res[0].str("chan_id") != lobbyChan || res[0].str("session_id") != sid {
		t.Fatalf("send: %v", res)
	}
	ev := st.next(ctx)
	if ev.Type != "received" || !ceJSONEqual(ev.Message, []byte(`{"user":"alice","text":"via compat","room":"lobby"}`)) {
		t.Fatalf("speak: got %s", ev.raw)
	}

	// Pings are not message events. Rails pings every connection from
	// one timer: once a second upstream of the same bridge has seen a
	// ping, so has this session's; a broadcast after that comes behind it.
	e.waitRailsPing(ctx)
	if err := e.rails.Broadcast(ctx, "chat:lobby", map[string]any{"marker": true}); err != nil {
		t.Fatal(err)
	}
	st.until(ctx, func(ev ceEvent) bool { return strings.Contains(string(ev.Message), "marker") })
	st.mu.Lock()
	for _, d := range st.data {
		if strings.Contains(d, `"ping"`) {
			t.Errorf("a ping reached the EventSource: %s", d)
		}
	}
	st.mu.Unlock()
	if err := waitCE(ctx, func() bool { return st.comments.Load() > 0 }); err != nil {
		t.Fatalf("no keep-alive comment: %v", err)
	}

	// Every event so far carried this session's id and a growing msg_id.
	all := append(append([]ceEvent{}, evs...), ev)
	var last uint64
	for _, ev := range all {
		if *ev.SessionID != sid {
			t.Fatalf("event %s: session_id, want %s", ev.raw, sid)
		}
	}
	slices.SortFunc(all, func(a, b ceEvent) int { return int(a.msgID()) - int(b.msgID()) })
	for _, ev := range all {
		if ev.msgID() <= last {
			t.Fatalf("msg_id %d repeated", ev.msgID())
		}
		last = ev.msgID()
	}
}

// waitRailsPing opens a session of the bridge's own protocol and waits
// for a Rails ping on it.
func (e *ceEnv) waitRailsPing(ctx context.Context) {
	e.t.Helper()
	do := func(method, path string, header http.Header) []byte {
		req, _ := http.NewRequestWithContext(ctx, method, e.srv.URL+path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := e.client.Do(req)
		if err != nil {
			e.t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	var s struct{ SID, Token string }
	json.Unmarshal(do("POST", "/sessions", http.Header{"Cookie": {"user=pinger"}}), &s)
	defer do("DELETE", "/sessions/"+s.SID+"?token="+s.Token, nil)
	after := "0"
	for ctx.Err() == nil {
		var p struct {
			Frames []json.RawMessage
			Next   uint64
		}
		json.Unmarshal(do("GET", "/sessions/"+s.SID+"/poll?timeout=5&after="+after+"&token="+s.Token, nil), &p)
		for _, f := range p.Frames {
			if strings.Contains(string(f), `"type":"ping"`) {
				return
			}
		}
		after = strconv.FormatUint(p.Next, 10)
	}
	e.t.Fatal("no Rails ping before the deadline")
}

// waitCE polls cond until it holds or ctx ends.
func waitCE(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

type ceReq struct {
	body    string
	wantErr bool
	chanOf  string // identifier whose chan_id the answer carries
}

// TestCompatPost: answers per request, in order, with string errors.
func TestCompatPost(t *testing.T) {
	e := newCEEnv(t, nil, bridge.WithBodyLimit(4096))
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	c.open(ctx)

	// Refusals of the whole body.
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`[{"identifier":`, http.StatusBadRequest},
		{`{"identifier":` + ceLobby + `,"subscribe":true}`, http.StatusBadRequest},
		{`[{"identifier":` + ceLobby + `,"subscribe":"yes"}]`, http.StatusBadRequest},
		{`[` + strings.Repeat(`{"identifier":`+ceLobby+`,"subscribe":true},`, 100) + `{}]`, http.StatusRequestEntityTooLarge},
	} {
		resp, b := c.request(ctx, "POST", "", nil, tc.body)
		var apiErr struct{ Error string }
		if resp.StatusCode != tc.status || json.Unmarshal(b, &apiErr) != nil || apiErr.Error == "" {
			t.Errorf("POST %.40s…: %d %s, want %d with a JSON error", tc.body, resp.StatusCode, b, tc.status)
		}
	}

	// Rails runs a connection's commands on a worker pool, in no fixed
	// order: subscribe in one batch, use the subscriptions in the next.
	echo := `{"channel":"EchoChannel","k":2,"a":1}`
	other := `{"channel":"ChatChannel","room":"other"}`
	chanIDs := map[string]string{}
	var sid string
	check := func(reqs []ceReq) {
		t.Helper()
		var body []string
		for _, r := range reqs {
			body = append(body, r.body)
		}
		res := c.post(ctx, "["+strings.Join(body, ",")+"]")
		if len(res) != len(reqs) {
			t.Fatalf("%d answers to %d requests: %v", len(res), len(reqs), res)
		}
		if sid == "" {
			sid = res[0].str("session_id")
		}
		for i, r := range reqs {
			got := res[i]
			if got.str("session_id") != sid || sid == "" {
				t.Errorf("answer %d: session_id %s, want %s", i, got["session_id"], sid)
			}
			errRaw, hasErr := got["error"]
			switch {
			case r.wantErr && (!hasErr || errRaw[0] != '"' || got.str("error") == ""):
				t.Errorf("answer %d to %s: %v, want a string error", i, r.body, got)
			case !r.wantErr && hasErr:
				t.Errorf("answer %d to %s: unexpected error %s", i, r.body, errRaw)
			}
			if r.chanOf == "" {
				continue
			}
			ch := got.str("chan_id")
			if ch == "" {
				t.Errorf("answer %d: no chan_id", i)
			} else if prev, seen := chanIDs[r.chanOf]; seen && prev != ch {
				t.Errorf("answer %d: chan_id %s for %s, earlier %s", i, ch, r.chanOf, prev)
			}
			chanIDs[r.chanOf] = ch
		}
	}
	check([]ceReq{
		{`{"identifier":` + ceLobby + `,"subscribe":true}`, false, ceLobby},
		{`{"subscribe":true}`, true, ""},
		{`{"identifier":42,"subscribe":true}`, true, ""},
		{`{"identifier":{"room":"lobby"},"subscribe":true}`, true, ""},
		{`{"identifier":` + ceLobby + `}`, true, ceLobby},
		{`{"identifier":` + ceLobby + `,"subscribe":true,"unsubscribe":true}`, true, ceLobby},
		{`{"identifier":` + ceLobby + `,"send":"speak"}`, true, ceLobby},
		{`{"identifier":` + other + `,"send":{"action":"speak"}}`, true, other},
		{`{"identifier":` + echo + `,"subscribe":true}`, false, echo},
	})
	if chanIDs[ceLobby] == chanIDs[echo] || chanIDs[ceLobby] == chanIDs[other] {
		t.Errorf("chan_id not per identifier: %v", chanIDs)
	}
	echoChan := chanIDs[echo]
	// EchoChannel's params transmit (keys in the order sent) and both
	// confirmations, read by long-poll.
	var evs []ceEvent
	for len(evs) < 3 {
		evs = append(evs, c.poll(ctx, "timeout=5").events...)
	}
	ceFind(t, evs, "connected", echoChan)
	ceFind(t, evs, "connected", chanIDs[ceLobby])
	if params := ceFind(t, evs, "received", echoChan); string(params.Message) != `{"params":{"k":2,"a":1}}` {
		t.Errorf("EchoChannel params %s", params.Message)
	}

	check([]ceReq{
		{`{"identifier":` + echo + `,"send":{"action":"echo","text":"<b>&"}}`, false, echo},
		{`{"identifier":` + ceLobby + `,"unsubscribe":true}`, false, ceLobby},
		{`{"identifier":` + ceLobby + `,"send":{"action":"speak","text":"gone"}}`, true, ceLobby},
		// The identifier may also be given as the identifier string.
		{`{"identifier":` + strconv.Quote(echo) + `,"send":{"action":"echo","text":"again"}}`, false, echo},
	})
	evs = nil
	for len(evs) < 2 {
		evs = append(evs, c.poll(ctx, "timeout=5").events...)
	}
	var echoed []string
	for _, ev := range evs {
		if ev.Type != "received" || ev.ChanID != echoChan || string(ev.Identifier) != echo {
			t.Errorf("got %s, want an echo", ev.raw)
		}
		echoed = append(echoed, string(ev.Message))
	}
	// Rails escapes <, > and & as \u003c…; that text arrives as it is.
	slices.Sort(echoed)
	if want := []string{`{"text":"\u003cb\u003e\u0026","user":"alice"}`, `{"text":"again","user":"alice"}`}; !reflect.DeepEqual(echoed, want) {
		t.Errorf("EchoChannel messages %q, want %q", echoed, want)
	}

	// Subscribing again is idempotent and answered with connected.
	c.subscribe(ctx, echo)
	p := c.poll(ctx, "timeout=5")
	if len(p.events) != 1 || p.events[0].Type != "connected" || p.events[0].ChanID != echoChan {
		t.Errorf("second subscribe: %v", p.Messages)
	}
}

// TestCompatLongPoll: fields, parameters, acknowledgement and bounds.
func TestCompatLongPoll(t *testing.T) {
	e := newCEEnv(t, []railstest.Option{railstest.WithOrderedDelivery()})
	ctx := ceCtx(t, 60*time.Second)
	c := e.newClient("alice")
	now := func(q string) cePolled {
		t.Helper()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return c.poll(qctx, q)
	}

	// timeout=0 answers at once, and the first poll opens the session.
	p := now("timeout=0")
	if len(p.Messages) != 0 || p.SessionID == "" || p.Dropped != 0 || p.QueueLength != 0 {
		t.Fatalf("first poll: %+v", p)
	}
	sid := p.SessionID
	for _, q := range []string{"timeout=abc", "timeout=-1", "timeout=NaN", "poll-queue=0", "poll-queue=x", "after=-3"} {
		resp, b := c.request(ctx, "GET", q, http.Header{"Accept": {"application/json"}}, "")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"error"`) {
			t.Errorf("?%s: %d %s, want 400 with a JSON error", q, resp.StatusCode, b)
		}
	}

	c.subscribe(ctx, ceNumbers)
	p = c.poll(ctx, "timeout=10")
	if len(p.events) != 1 || p.events[0].Type != "connected" || string(p.events[0].Identifier) != ceNumbers || p.SessionID != sid {
		t.Fatalf("after subscribe: %+v", p)
	}
	cur := p.events[0].msgID()

	broadcast := func(from, to int) {
		t.Helper()
		var msgs []any
		for n := from; n <= to; n++ {
			msgs = append(msgs, map[string]int{"n": n})
		}
		if err := e.rails.BroadcastMany(ctx, "numbers:s1", msgs); err != nil {
			t.Fatal(err)
		}
	}
	numbers := func(evs []ceEvent) []int {
		var out []int
		for _, ev := range evs {
			out = append(out, ev.number())
		}
		return out
	}

	// Observer is another client on the same stream: once it has a
	// broadcast, so has c's queue (Rails writes to c first, with one
	// worker, in order), so c's queue can be filled while c hands nothing
	// out.
	observer := e.newClient("bob")
	observer.open(ctx)
	observer.subscribe(ctx, ceNumbers)
	for op := (cePolled{}); len(op.events) == 0 || op.events[0].Type != "connected"; {
		op = observer.poll(ctx, "timeout=10")
	}
	observe := func(n int) {
		t.Helper()
		for {
			for _, ev := range observer.poll(ctx, "timeout=10").events {
				if ev.number() == n {
					return
				}
			}
		}
	}

	// Messages queued: a poll answers at once, even with the longest
	// timeout, and acknowledges what it returns.
	broadcast(1, 3)
	observe(3)
	p = now("timeout=60")
	if !reflect.DeepEqual(numbers(p.events), []int{1, 2, 3}) || p.QueueLength != 0 || p.Dropped != 0 {
		t.Fatalf("poll with queued messages: %+v", p)
	}
	cur = p.events[2].msgID()
	if p = now("timeout=0"); len(p.Messages) != 0 {
		t.Fatalf("poll after acknowledgement: %v", p.Messages)
	}

	// With "after", nothing is acknowledged past it: the same events come
	// again, at once.
	broadcast(4, 6)
	observe(6)
	for i := 0; i < 2; i++ {
		if p = now(fmt.Sprintf("after=%d&timeout=60", cur)); !reflect.DeepEqual(numbers(p.events), []int{4, 5, 6}) {
			t.Fatalf("after=%d, poll %d: %v", cur, i, p.Messages)
		}
	}
	// Without it, the poll starts after what was handed out.
	if p = now("timeout=0"); len(p.Messages) != 0 {
		t.Fatalf("poll after messages handed out: %v", p.Messages)
	}

	// A waiting poll answers when a message arrives (a huge timeout is capped).
	got := make(chan cePolled, 1)
	go func() {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, b, err := c.tryRequest(qctx, "GET", "timeout=1e9", http.Header{"Accept": {"application/json"}}, "")
		var p cePolled
		if err == nil && resp.StatusCode == http.StatusOK {
			json.Unmarshal(b, &p)
		}
		got <- p
	}()
	broadcast(7, 7)
	if p = <-got; len(p.Messages) != 1 || !strings.Contains(string(p.Messages[0]), `"n":7`) {
		t.Fatalf("waiting poll: %+v", p)
	}

	// Bounds: every message is either handed out or counted as dropped,
	// once.
	account := func(from, to int, last []int) {
		t.Helper()
		seen := map[int]bool{}
		var dropped uint64
		for {
			p = c.poll(ctx, fmt.Sprintf("after=%d&timeout=10", cur))
			dropped += p.Dropped
			for _, ev := range p.events {
				seen[ev.number()] = true
			}
			if got := numbers(p.events); len(got) >= len(last) && reflect.DeepEqual(got[:len(last)], last) {
				break
			}
		}
		held := len(p.Messages) + p.QueueLength
		gone := 0
		for n := from; n < last[0]; n++ {
			if seen[n] {
				gone++
			}
		}
		if want := last[0] - from; gone+int(dropped) != want || held != to-last[0]+1 {
			t.Fatalf("%d..%d: %d held, %d dropped, %d of the evicted seen; want %d held and %d evicted", from, to, held, dropped, gone, to-last[0]+1, want)
		}
	}

	// A small queue: the oldest go, and "dropped" counts them.
	if p = now("timeout=0&poll-queue=3"); len(p.Messages) != 0 {
		t.Fatalf("poll-queue=3: %v", p.Messages)
	}
	cur = ceLastID(t, c, ctx)
	broadcast(101, 110)
	observe(110)
	account(101, 110, []int{108, 109, 110})
	cur = p.events[2].msgID()
	if p = now("timeout=0"); len(p.Messages) != 0 || p.Dropped != 0 {
		t.Fatalf("dropped counted twice or messages handed out twice: %+v", p)
	}

	// poll-queue is capped at 1024.
	now("timeout=0&poll-queue=5000")
	broadcast(1, 1030)
	observe(1030)
	first := make([]int, 256)
	for i := range first {
		first[i] = 7 + i
	}
	account(1, 1030, first)
	// Drain it in order, acknowledging with after.
	want := 7
	for want <= 1030 {
		p = c.poll(ctx, fmt.Sprintf("after=%d&timeout=10", cur))
		for _, ev := range p.events {
			if ev.number() != want || ev.msgID() <= cur {
				t.Fatalf("draining: got #%d (msg_id %s), want #%d after msg_id %d", ev.number(), ev.MsgID, want, cur)
			}
			want++
			cur = ev.msgID()
		}
		if p.QueueLength != 1030-want+1 {
			t.Fatalf("queue_length %d, want %d", p.QueueLength, 1030-want+1)
		}
	}
	if p.SessionID != sid {
		t.Fatalf("session_id changed from %s to %s", sid, p.SessionID)
	}
}

// ceLastID returns the latest msg_id of an idle session, read from the
// connected event that a repeated subscribe produces.
func ceLastID(t *testing.T, c *ceClient, ctx context.Context) uint64 {
	t.Helper()
	c.post(ctx, `[{"identifier":`+ceNumbers+`,"subscribe":true}]`) // duplicate: answered with connected
	p := c.poll(ctx, "timeout=10")
	if len(p.events) != 1 || p.events[0].Type != "connected" {
		t.Fatalf("probe: %v", p.Messages)
	}
	return p.events[0].msgID()
}

// TestCompatEventsID: the rule for client-chosen ids.
func TestCompatEventsID(t *testing.T) {
	e := newCEEnv(t, nil)
	ctx := ceCtx(t, 30*time.Second)
	hex32 := hex.EncodeToString([]byte("0123456789abcdef"))
	for _, tc := range []struct {
		id     string
		status int
	}{
		{ceNewID()[:21], http.StatusBadRequest},       // 126 bits
		{ceNewID(), http.StatusOK},                    // 22 base64url characters
		{hex32[:31], http.StatusBadRequest},           // hex: 124 bits
		{hex32, http.StatusOK},                        // 32 hex digits
		{"3f2504e0-4f89-11d3-9a0c-0305e82c3301", 200}, // a UUID
		{strings.Repeat("a", 129), http.StatusBadRequest},
		{ceNewID() + ".x", http.StatusBadRequest},
		{ceNewID() + "~", http.StatusBadRequest},
	} {
		c := &ceClient{e: e, id: tc.id, header: http.Header{"Cookie": {"user=alice"}}}
		resp, b := c.request(ctx, "GET", "timeout=0", http.Header{"Accept": {"application/json"}}, "")
		var apiErr struct{ Error string }
		if resp.StatusCode != tc.status {
			t.Errorf("id %q: %d %s, want %d", tc.id, resp.StatusCode, b, tc.status)
		} else if tc.status == http.StatusBadRequest && (json.Unmarshal(b, &apiErr) != nil || apiErr.Error != "bad_events_id") {
			t.Errorf("id %q: body %s, want a bad_events_id JSON error", tc.id, b)
		}
	}
	c := &ceClient{e: e, id: "", header: nil}
	if resp, b := c.request(ctx, "POST", "", nil, "[]"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no id: %d %s", resp.StatusCode, b)
	}
}

// TestCompatBoundToClient: an events id belongs to the client that opened
// it, for GET and POST alike.
func TestCompatBoundToClient(t *testing.T) {
	e := newCEEnv(t, nil)
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	sid := c.poll(ctx, "timeout=0").SessionID

	others := map[string]*ceClient{
		"other cookie": c.as(http.Header{"Cookie": {"user=bob"}}),
		"no cookie":    c.as(http.Header{}),
		"other IP":     c.as(http.Header{"Cookie": {"user=alice"}, "X-Test-IP": {"192.0.2.7"}}),
	}
	for name, o := range others {
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
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `"error"`) {
				t.Errorf("%s: %s %v: %d %s, want 403", name, r.method, r.header, resp.StatusCode, b)
			}
		}
	}
	if p := c.poll(ctx, "timeout=0"); p.SessionID != sid {
		t.Fatalf("owner: session_id %s, want %s", p.SessionID, sid)
	}
	if st := e.bridge.Stats(); st.Sessions != 1 {
		t.Fatalf("%d sessions, want 1: refused clients must not open any", st.Sessions)
	}
}

// TestCompatCORS: preflights and credentials for browser origins.
func TestCompatCORS(t *testing.T) {
	const origin = "http://localhost:1" // Rails accepts any localhost origin
	e := newCEEnv(t, nil, bridge.WithAllowedOrigins(origin))
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	c.open(ctx)

	pre := http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type"}}
	resp, b := c.request(ctx, "OPTIONS", "", pre, "")
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin ||
		h.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") || !strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") ||
		!slices.Contains(h.Values("Vary"), "Origin") {
		t.Fatalf("preflight from %s: %d %v %s", origin, resp.StatusCode, h, b)
	}
	pre.Set("Origin", "http://evil.example")
	resp, b = c.request(ctx, "OPTIONS", "", pre, "")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from a foreign origin: %d %v %s", resp.StatusCode, resp.Header, b)
	}

	// The actual requests carry the CORS answer too, and the Origin goes
	// on to Rails with the cookie.
	withOrigin := http.Header{"Origin": {origin}, "Content-Type": {"application/json"}}
	resp, b = c.request(ctx, "POST", "", withOrigin, `[{"identifier":`+ceLobby+`,"subscribe":true}]`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("POST from %s: %d %v %s", origin, resp.StatusCode, resp.Header, b)
	}
	withOrigin.Set("Accept", "application/json")
	resp, b = c.request(ctx, "GET", "timeout=10", withOrigin, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin || !strings.Contains(string(b), `"connected"`) {
		t.Fatalf("long-poll from %s: %d %v %s", origin, resp.StatusCode, resp.Header, b)
	}
	withOrigin.Set("Origin", "http://evil.example")
	if resp, b = c.request(ctx, "GET", "timeout=0", withOrigin, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("long-poll from a foreign origin: %d %s", resp.StatusCode, b)
	}
}

// TestCompatUpstreamLoss: the bridge reports a lost or restarted upstream
// as disconnected, subscribes again on the new connection, and the
// session (and its session_id) goes on.
func TestCompatUpstreamLoss(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cause  func(context.Context, *railstest.Server) error
		reason string
	}{
		{"RemoteDisconnect", func(ctx context.Context, r *railstest.Server) error { return r.Disconnect(ctx, "alice", true) }, "connection_lost"},
		{"ServerRestart", func(ctx context.Context, r *railstest.Server) error { return r.RestartCable(ctx) }, "server_restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCEEnv(t, nil)
			if tc.name == "ServerRestart" {
				// ActionCable.server.restart in Rails 6.1 closes each
				// socket and then halts the worker pool its close
				// handling is queued on: the socket is gone (the bridge
				// closed it) but Rails may never count it closed.
				e.skipConnCheck = true
			}
			ctx := ceCtx(t, 60*time.Second) // Rails restarts and redials on a loaded machine
			c := e.newClient("alice")
			st := c.openSSE(ctx, nil)
			st.next(ctx) // joined
			lobbyChan := c.subscribe(ctx, ceLobby).str("chan_id")
			first := st.next(ctx)
			if first.Type != "connected" {
				t.Fatalf("got %s, want connected", first.raw)
			}
			sid := *first.SessionID

			if err := tc.cause(ctx, e.rails); err != nil {
				t.Fatal(err)
			}
			lost := st.next(ctx)
			var m struct {
				Reason    string
				Reconnect bool
			}
			json.Unmarshal(lost.Message, &m)
			if lost.Type != "disconnected" || lost.ChanID != lobbyChan || string(lost.Identifier) != ceLobby || m.Reason != tc.reason || !m.Reconnect {
				t.Fatalf("got %s, want disconnected (%s)", lost.raw, tc.reason)
			}
			if back := st.next(ctx); back.Type != "connected" || back.ChanID != lobbyChan {
				t.Fatalf("got %s, want connected again", back.raw)
			}
			if err := e.rails.Broadcast(ctx, "chat:lobby", tc.name); err != nil {
				t.Fatal(err)
			}
			if ev := st.next(ctx); ev.Type != "received" || string(ev.Message) != strconv.Quote(tc.name) || *ev.SessionID != sid {
				t.Fatalf("got %s, want the broadcast in session %s", ev.raw, sid)
			}
		})
	}
}

// TestCompatSessionRecreated: an expired session is replaced by a new one
// under the same events id, with a new session_id; events queued while no
// listener was attached are delivered when one attaches, and a newer
// listener replaces the older.
func TestCompatSessionRecreated(t *testing.T) {
	e := newCEEnv(t, nil, bridge.WithSessionTTL(time.Second))
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	c.open(ctx)
	lobbyChan := c.subscribe(ctx, ceLobby).str("chan_id")
	if err := waitCE(ctx, func() bool {
		p := c.poll(ctx, "timeout=0")
		return len(p.events) == 1 && p.events[0].Type == "connected"
	}); err != nil {
		t.Fatal(err)
	}
	// Queued without a listener, delivered to the first EventSource.
	if err := e.rails.Broadcast(ctx, "chat:lobby", "queued"); err != nil {
		t.Fatal(err)
	}
	st := c.openSSE(ctx, nil)
	evs := st.collect(ctx, 2)
	if evs[0].Type != "joined" || evs[1].Type != "received" || string(evs[1].Message) != `"queued"` {
		t.Fatalf("first listener: %v", evs)
	}
	sid := *evs[1].SessionID

	// A second listener takes over; the first stream ends.
	st2 := c.openSSE(ctx, nil)
	if ev := st2.next(ctx); ev.Type != "joined" {
		t.Fatalf("second listener: %s", ev.raw)
	}
	select {
	case _, ok := <-st.events:
		if ok {
			t.Fatal("the replaced listener got an event")
		}
	case <-ctx.Done():
		t.Fatal("the replaced listener's stream did not end")
	}
	st2.close()

	// Left alone past its TTL, the session expires.
	if err := waitCE(ctx, func() bool { return e.bridge.Stats().Sessions == 0 }); err != nil {
		t.Fatalf("session not expired: %v", err)
	}
	// The next request gets a new session.
	p := c.poll(ctx, "timeout=0")
	if p.SessionID == sid || len(p.Messages) != 0 {
		t.Fatalf("after expiry: %+v, want a new, empty session", p)
	}
	res := c.subscribe(ctx, ceLobby)
	if res.str("session_id") != p.SessionID || res.str("chan_id") != lobbyChan {
		t.Fatalf("subscribe in the new session: %v (session %s)", res, p.SessionID)
	}
	if p = c.poll(ctx, "timeout=10"); len(p.events) != 1 || p.events[0].Type != "connected" {
		t.Fatalf("new session: %+v", p)
	}
}

// TestCompatLastEventID: an EventSource that reconnects with Last-Event-ID
// gets what follows that event, and what precedes it is acknowledged.
func TestCompatLastEventID(t *testing.T) {
	e := newCEEnv(t, []railstest.Option{railstest.WithOrderedDelivery()})
	ctx := ceCtx(t, 30*time.Second)
	c := e.newClient("alice")
	c.open(ctx)
	c.subscribe(ctx, ceNumbers)
	p := c.poll(ctx, "timeout=10")
	if len(p.events) != 1 || p.events[0].Type != "connected" {
		t.Fatalf("after subscribe: %v", p.Messages)
	}
	cur := p.events[0].msgID()
	if err := e.rails.BroadcastMany(ctx, "numbers:s1", []any{map[string]int{"n": 1}, map[string]int{"n": 2}, map[string]int{"n": 3}}); err != nil {
		t.Fatal(err)
	}
	// Polled with "after": returned but not acknowledged.
	for len(p.events) != 3 {
		p = c.poll(ctx, fmt.Sprintf("after=%d&timeout=10", cur))
	}
	st := c.openSSE(ctx, http.Header{"Last-Event-ID": {p.events[0].MsgID}})
	evs := st.collect(ctx, 3)
	if evs[0].Type != "joined" || evs[1].number() != 2 || evs[2].number() != 3 || evs[1].MsgID != p.events[1].MsgID {
		t.Fatalf("after Last-Event-ID %s: %v", p.events[0].MsgID, evs)
	}
}
