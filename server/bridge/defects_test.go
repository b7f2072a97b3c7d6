//go:build unix

package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/cabletest"
	"github.com/cableway/cableway/server/bridge"
)

// fakeEnv is a bridge in front of an in-process ActionCable server, for
// upstream behaviour Rails cannot produce and for counting what reaches
// the upstream.
type fakeEnv struct {
	up     *cabletest.Server
	bridge *bridge.Bridge
	srv    *httptest.Server
	client *http.Client
}

func newFakeEnv(t *testing.T, upOpts []cabletest.Option, opts ...bridge.Option) *fakeEnv {
	t.Helper()
	up := cabletest.Start(t, upOpts...)
	return newFakeEnvFor(t, up, up.URL, opts...)
}

func newFakeEnvFor(t *testing.T, up *cabletest.Server, upstream string, opts ...bridge.Option) *fakeEnv {
	t.Helper()
	b := bridge.New(upstream, opts...)
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return &fakeEnv{up: up, bridge: b, srv: srv, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
}

func (e *fakeEnv) do(t *testing.T, ctx context.Context, method, path string, header http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// create opens a session and returns it with its upstream connection.
func (e *fakeEnv) create(t *testing.T, ctx context.Context) (sessionInfo, *cabletest.Conn) {
	t.Helper()
	resp, body := e.do(t, ctx, "POST", "/sessions", nil, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var s sessionInfo
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	c, err := e.up.NextConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// sseLines splits an event stream into lines as a browser does: CR, LF and
// CRLF all end a line.
func sseLines(r *bufio.Reader, line func(string) bool) error {
	var cur []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return err
		}
		switch c {
		case '\r':
			if next, err := r.Peek(1); err == nil && next[0] == '\n' {
				r.ReadByte()
			}
			fallthrough
		case '\n':
			if !line(string(cur)) {
				return nil
			}
			cur = cur[:0]
		default:
			cur = append(cur, c)
		}
	}
}

// A frame whose JSON whitespace holds a bare CR (or CRLF) reaches an SSE
// client whole: every line end is split into data lines, since a browser
// ends a line at CR as well as at LF.
func TestSSESplitsEveryLineEnd(t *testing.T) {
	e := newFakeEnv(t, nil)
	ctx := testCtx(t, 20*time.Second)
	s, up := e.create(t, ctx)
	frame := "{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\r\"message\":{\"a\":\r\n\"b\",\n\"c\":1}\r}"
	if err := up.WriteText(ctx, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/sessions/"+s.SID+"/sse?after=1&token="+s.Token, nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var data []string
	var got string
	err = sseLines(bufio.NewReader(resp.Body), func(line string) bool {
		switch {
		case line == "" && len(data) > 0:
			got = strings.Join(data, "\n")
			if strings.Contains(got, `"identifier"`) {
				return false
			}
			data = nil // a ping
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
		return true
	})
	if err != nil {
		t.Fatalf("reading the stream: %v (data so far %q)", err, data)
	}
	want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(frame)
	if got != want || !json.Valid([]byte(got)) {
		t.Fatalf("a browser reads the frame as %q, want %q", got, want)
	}
}

// A long-poll timeout far beyond the cap (1e10 s overflows a Duration)
// waits like the cap instead of answering at once.
func TestPollHugeTimeoutWaits(t *testing.T) {
	e := newFakeEnv(t, nil)
	ctx := testCtx(t, 20*time.Second)
	s, up := e.create(t, ctx)
	type answer struct {
		p    pollResult
		code int
		body []byte
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/sessions/"+s.SID+"/poll?after=1&timeout=1e10&token="+s.Token, nil)
		resp, err := e.client.Do(req)
		if err != nil {
			answered <- answer{code: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var p pollResult
		json.Unmarshal(body, &p)
		answered <- answer{p, resp.StatusCode, body}
	}()
	// Nothing is pending: the poll must still be waiting a while later. (A
	// slow machine can only hide the defect, never fail a correct bridge.)
	select {
	case a := <-answered:
		t.Fatalf("the poll answered before any frame: %d %s", a.code, a.body)
	case <-time.After(500 * time.Millisecond):
	}
	if err := up.Broadcast(ctx, `{"channel":"X"}`, map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	a := <-answered
	if a.code != http.StatusOK || len(a.p.Frames) != 1 || !bytes.Contains(a.p.Frames[0], []byte(`"n":1`)) {
		t.Fatalf("poll: %d %s, want the broadcast", a.code, a.body)
	}
}

// Every answer says X-Content-Type-Options: nosniff, error bodies (the
// bridge's JSON and the WebSocket library's text) and JSON answers alike.
func TestNoSniff(t *testing.T) {
	e := newFakeEnv(t, nil)
	ctx := testCtx(t, 20*time.Second)
	s, _ := e.create(t, ctx)
	for _, r := range []struct {
		method, path string
		header       http.Header
		status       int
	}{
		{"GET", "/nowhere", nil, 404},
		{"GET", "/sessions/" + s.SID + "/poll?token=wrong", nil, 403},
		{"GET", "/sessions/nope/poll", nil, 404},
		{"GET", "/sessions/" + s.SID + "/poll?timeout=x&token=" + s.Token, nil, 400},
		{"GET", "/sessions/" + s.SID + "/poll?timeout=0&after=1&token=" + s.Token, nil, 200},
		{"POST", "/sessions/" + s.SID + "/send?token=" + s.Token, nil, 400},
		{"GET", "/sessions/" + s.SID + "/ws?after=1&token=" + s.Token, nil, 426}, // not an upgrade: the library's own error
		{"GET", "/", http.Header{"Origin": {"https://evil.example"}}, 403},
		{"GET", "/healthz", nil, 200},
	} {
		resp, body := e.do(t, ctx, r.method, r.path, r.header, "")
		if resp.StatusCode != r.status {
			t.Errorf("%s %s: %d %s, want %d", r.method, r.path, resp.StatusCode, body, r.status)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s (%d): X-Content-Type-Options %q, want nosniff", r.method, r.path, resp.StatusCode, got)
		}
	}
	resp, _ := e.do(t, ctx, "POST", "/sessions", nil, "")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("POST /sessions: %d, X-Content-Type-Options %q", resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
	}
}

// A WebSocket upgrade on / that the upgrade would refuse is answered
// before anything reaches the upstream: Rails never authenticates it.
func TestProxyBadHandshakeNeverDialsUpstream(t *testing.T) {
	e := newFakeEnv(t, nil)
	ctx := testCtx(t, 20*time.Second)
	good := http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Authorization":         {"Bearer secret-alice"},
	}
	for _, c := range []struct {
		name   string
		method string
		edit   func(h http.Header)
		status int
	}{
		{"no Connection: Upgrade", "GET", func(h http.Header) { h.Set("Connection", "keep-alive") }, http.StatusUpgradeRequired},
		{"no key", "GET", func(h http.Header) { h.Del("Sec-Websocket-Key") }, http.StatusBadRequest},
		{"short key", "GET", func(h http.Header) { h.Set("Sec-Websocket-Key", "c2hvcnQ=") }, http.StatusBadRequest},
		{"version 8", "GET", func(h http.Header) { h.Set("Sec-Websocket-Version", "8") }, http.StatusBadRequest},
		{"POST", "POST", func(http.Header) {}, http.StatusMethodNotAllowed},
	} {
		h := good.Clone()
		c.edit(h)
		resp, body := e.do(t, ctx, c.method, "/", h, "")
		if resp.StatusCode != c.status || !strings.Contains(string(body), "bad_handshake") {
			t.Errorf("%s: %d %s, want %d bad_handshake", c.name, resp.StatusCode, body, c.status)
		}
	}
	if n := e.up.Handshakes(); n != 0 {
		t.Errorf("the upstream saw %d handshakes for refused upgrades, want 0", n)
	}
}
