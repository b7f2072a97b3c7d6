//go:build unix

package compat_test

// Attacks on the compat API (issue #12, item 4). The cross-site test runs
// against the example Rails app; the SSE injection test needs an upstream
// that misbehaves as Rails cannot, an in-process ActionCable server.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cableway/cableway/internal/cabletest"
	"github.com/cableway/cableway/server/bridge"
)

// Cross-site hijacking of the compat API: a page on a foreign origin makes
// the victim's browser open, read and write events ids with the victim's
// cookie, a fresh id and the victim's own alike. Every request is refused
// with 403 and no CORS grant, Rails sees no connection for them, and the
// victim's session gets no subscription. Defence: the bridge's origin
// policy in front of the compat API (withOrigin).
func TestCompatAttackCrossSiteFromForeignOrigin(t *testing.T) {
	const allowed = "http://localhost:1"
	e := newCEEnv(t, nil, bridge.WithAllowedOrigins(allowed))
	ctx := ceCtx(t, 60*time.Second)
	victim := e.newClient("victim")
	st := victim.openSSE(ctx, nil)
	defer st.close()
	st.next(ctx) // joined
	fresh := e.newClient("victim")
	host := strings.TrimPrefix(e.srv.URL, "http://")
	for _, origin := range []string{"http://evil.example", "null", "https://" + host, "http://" + host + ".evil.example", allowed + ".evil.example"} {
		for _, c := range []*ceClient{victim, fresh} {
			for _, r := range []struct {
				method string
				header http.Header
				body   string
			}{
				{"GET", http.Header{"Accept": {"text/event-stream"}}, ""},
				{"GET", http.Header{"Accept": {"application/json"}}, ""},
				{"POST", http.Header{"Content-Type": {"text/plain"}}, `[{"identifier":` + ceLobby + `,"subscribe":true}]`},
				{"POST", http.Header{"Content-Type": {"application/json"}}, `[{"identifier":` + ceLobby + `,"send":{"action":"speak","text":"forged"}}]`},
				{"OPTIONS", http.Header{"Access-Control-Request-Method": {"POST"}}, ""},
			} {
				h := r.header.Clone()
				h.Set("Origin", origin)
				h.Set("Sec-Fetch-Site", "cross-site")
				resp, b := attempt(t, ctx, c, r.method, h, r.body)
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `"origin_not_allowed"`) {
					t.Errorf("%s from %s (%v): %d %s, want 403 origin_not_allowed", r.method, origin, r.header, resp.StatusCode, b)
				}
				if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
					t.Errorf("%s from %s: Access-Control-Allow-Origin %q", r.method, origin, v)
				}
			}
		}
	}
	if n := e.railsConnects(ctx); n != 1 {
		t.Errorf("Rails saw %d connections, want 1 (the victim's own)", n)
	}
	// The victim's session received no subscription: its first event
	// after joined is the confirmation of its own marker subscription.
	marker := victim.subscribe(ctx, ceNumbers).str("chan_id")
	if ev := st.next(ctx); ev.Type != "connected" || ev.ChanID != marker {
		t.Errorf("the victim's first event after the attack: %s, want its own subscription's", ev.raw)
	}
}

// attempt sends a request for c's events id with c's headers and h, as
// an attacker's page would, and returns the answer; an event stream that
// was accepted is read no further than its first bytes.
func attempt(t *testing.T, ctx context.Context, c *ceClient, method string, h http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, c.e.srv.URL+"/events/"+c.id+"?timeout=0", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		return resp, buf[:n]
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// browserEvents reads an event stream as a browser does (CR, LF and CRLF
// all end a line) and sends each event's type and data on the channel.
func browserEvents(r io.Reader, out chan<- [3]string) {
	defer close(out)
	br := bufio.NewReader(r)
	var line []byte
	var typ, id string
	var data []string
	for {
		c, err := br.ReadByte()
		if err != nil {
			return
		}
		if c != '\r' && c != '\n' {
			line = append(line, c)
			continue
		}
		if c == '\r' {
			if next, err := br.Peek(1); err == nil && next[0] == '\n' {
				br.ReadByte()
			}
		}
		l := string(line)
		line = line[:0]
		switch {
		case l == "":
			if data != nil {
				out <- [3]string{typ, id, strings.Join(data, "\n")}
			}
			typ, id, data = "", "", nil
		case strings.HasPrefix(l, ":"):
		default:
			f, v, _ := strings.Cut(l, ":")
			v = strings.TrimPrefix(v, " ")
			switch f {
			case "event":
				typ = v
			case "id":
				id = v
			case "data":
				data = append(data, v)
			}
		}
	}
}

// A malicious upstream's frames holding line ends in their JSON
// whitespace, or SSE fields in invalid JSON, or bytes that are not UTF-8,
// must not split, forge or corrupt a compat event: a browser reads each
// frame as exactly one "message" event of valid JSON and UTF-8 with
// consecutive ids. Defence: bridgewire.AppendData, and the events being
// built from the decoded frame.
func TestCompatAttackSSEInjection(t *testing.T) {
	up := cabletest.Start(t)
	b := bridge.New(up.URL)
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	ctx := ceCtx(t, 60*time.Second)
	id := ceNewID()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events/"+id, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan [3]string, 64)
	go browserEvents(resp.Body, events)
	next := func() [3]string {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the stream ended")
			}
			return ev
		case <-ctx.Done():
			t.Fatal("no event before the deadline")
		}
		return [3]string{}
	}
	next() // joined
	conn, err := up.NextConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const ident = `{"channel":"X"}`
	preq, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/events/"+id, strings.NewReader(`[{"identifier":`+ident+`,"subscribe":true}]`))
	presp, err := client.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, presp.Body)
	presp.Body.Close()
	if presp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe: %d", presp.StatusCode)
	}
	frames := []string{
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\r\n\r\n\"message\":{\"n\":1}}",
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\"message\":\n\n{\"n\":2,\r\n\r\n\"t\":\"\\r\\n\\r\\nevent: reset\\nid: 99\",\n\n\"u\":\r\r1}\r\r}",
		"{\"type\":\"x\"}\n\nevent: reset\ndata: {\"n\":666}\n\n",                               // not JSON: skipped
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\"message\":{\"n\":3,\"t\":\"\xff\"}}", // not UTF-8
		"{\"identifier\":\"{\\\"channel\\\":\\\"X\\\"}\",\"message\":{\"n\":4}}",
	}
	for _, f := range frames {
		if err := conn.WriteText(ctx, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	var lastID uint64
	for want := 1; want <= 4; {
		ev := next()
		if ev[0] != "message" {
			t.Fatalf("an event %q appeared: %q", ev[0], ev[2])
		}
		if !utf8.ValidString(ev[2]) {
			t.Errorf("event data is not UTF-8: %q", ev[2])
		}
		var m struct {
			Type    string `json:"type"`
			MsgID   string `json:"msg_id"`
			Message struct {
				N int `json:"n"`
			} `json:"message"`
		}
		if err := json.Unmarshal([]byte(ev[2]), &m); err != nil {
			t.Fatalf("event data %q is not one JSON event: %v", ev[2], err)
		}
		if ev[1] != m.MsgID || ev[1] != fmt.Sprint(lastID+1) && lastID != 0 {
			t.Errorf("event id %q (msg_id %q) after %d", ev[1], m.MsgID, lastID)
		}
		fmt.Sscan(ev[1], &lastID)
		if m.Type != "received" {
			continue // connected
		}
		if m.Message.N != want {
			t.Fatalf("message n=%d, want %d: %q", m.Message.N, want, ev[2])
		}
		want++
	}
}
