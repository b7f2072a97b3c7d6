//go:build unix

package bridge_test

import (
	"bytes"
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

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/server/bridge"
)

// env is a Rails app with a bridge in front of it.
type env struct {
	t      *testing.T
	rails  *railstest.Server
	bridge *bridge.Bridge
	srv    *httptest.Server
	client *http.Client
}

func newEnv(t *testing.T, opts ...bridge.Option) *env {
	t.Helper()
	rails := railstest.Start(t)
	opts = append([]bridge.Option{bridge.WithUpstreamBackoff(backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond})}, opts...)
	b := bridge.New(rails.CableURL(), opts...)
	srv := httptest.NewServer(b)
	e := &env{t: t, rails: rails, bridge: b, srv: srv, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return e
}

// sessionInfo is the 201 body of POST /sessions.
type sessionInfo struct {
	SID   string `json:"sid"`
	Token string `json:"token"`
	Epoch uint32 `json:"epoch"`
}

// do sends a request to the bridge; origin "" sends none.
func (e *env) do(ctx context.Context, method, path string, header http.Header, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// create opens a session as user (Authorization: Bearer secret-user).
func (e *env) create(ctx context.Context, user string) sessionInfo {
	e.t.Helper()
	resp, body := e.do(ctx, "POST", "/sessions", http.Header{"Authorization": {"Bearer secret-" + user}}, "")
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var s sessionInfo
	if err := json.Unmarshal(body, &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

type pollResult struct {
	Epoch  uint32            `json:"epoch"`
	Frames []json.RawMessage `json:"frames"`
	Next   uint64            `json:"next"`
	Reset  bool              `json:"reset"`
	Ended  bool              `json:"ended"`
}

func (e *env) poll(ctx context.Context, s sessionInfo, after uint64, timeout string) pollResult {
	e.t.Helper()
	q := url.Values{"token": {s.Token}, "after": {fmt.Sprint(after)}, "timeout": {timeout}}
	resp, body := e.do(ctx, "GET", "/sessions/"+s.SID+"/poll?"+q.Encode(), nil, "")
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("poll: %d %s", resp.StatusCode, body)
	}
	var p pollResult
	if err := json.Unmarshal(body, &p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// send posts commands with consecutive cseqs from first.
func (e *env) send(ctx context.Context, s sessionInfo, first uint64, frames ...string) (int, []byte) {
	e.t.Helper()
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, f := range frames {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"cseq":%d,"frame":%s}`, first+uint64(i), f)
	}
	buf.WriteByte(']')
	resp, body := e.do(ctx, "POST", "/sessions/"+s.SID+"/send?token="+s.Token, http.Header{"Content-Type": {"application/json"}}, buf.String())
	return resp.StatusCode, body
}

// frameType returns a frame's "type", or "message".
func frameType(f json.RawMessage) string {
	var v struct{ Type string }
	json.Unmarshal(f, &v)
	if v.Type == "" {
		return "message"
	}
	return v.Type
}

// pollUntil polls from *after until a non-ping frame satisfying ok
// arrives, advancing *after; it returns that frame.
func (e *env) pollUntil(ctx context.Context, s sessionInfo, after *uint64, ok func(json.RawMessage) bool) json.RawMessage {
	e.t.Helper()
	for ctx.Err() == nil {
		p := e.poll(ctx, s, *after, "5")
		if p.Reset || p.Ended {
			e.t.Fatalf("poll: reset=%v ended=%v", p.Reset, p.Ended)
		}
		*after = p.Next
		for _, f := range p.Frames {
			if frameType(f) != "ping" && ok(f) {
				return f
			}
		}
	}
	e.t.Fatal("deadline passed while polling")
	return nil
}

func cmd(command, identifier, data string) string {
	c := map[string]string{"command": command, "identifier": identifier}
	if data != "" {
		c["data"] = data
	}
	b, _ := json.Marshal(c)
	return string(b)
}
