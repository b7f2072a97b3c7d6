package main

// Attacks on the "cableway bridge" server as a whole (issue #12, item 4):
// what the HTTP server's own limits stop, on every endpoint.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// cutOff writes req on a new connection to addr, then trickle (if any)
// one byte every 100 ms for ever, and reports whether the server closed
// the connection before ctx ended (an answer before the close is fine).
func cutOff(ctx context.Context, addr, req, trickle string) (bool, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	if _, err := io.WriteString(c, req); err != nil {
		return true, nil
	}
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, c)
		closed <- err
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case err := <-closed:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, nil // our own deadline: still open
			}
			return true, nil
		case <-tick.C:
			if trickle == "" {
				continue
			}
			if _, err := c.Write([]byte{trickle[i%len(trickle)]}); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return false, nil
				}
				return true, nil // reset by the server
			}
		}
	}
}

// Slowloris on every endpoint of "cableway bridge": headers sent one byte
// at a time, a request that needs no body declaring one it never sends,
// and a POST body trickled one byte at a time. Every connection is cut
// off (within the documented limits: 10 s for headers and for an unwanted
// body, --create-timeout plus 30 s for a POST body); the test asserts the
// cut, not its time. Defences: http.Server.ReadHeaderTimeout,
// withBodyDeadline and the bridge's drainBody.
func TestAttackSlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("takes the POST body deadline: about 31 s")
	}
	upstream := httptest.NewServer(http.HandlerFunc(fakeCable))
	defer upstream.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, base := startBridge(t, ctx, "--upstream", "ws"+strings.TrimPrefix(upstream.URL, "http")+"/cable",
		"--create-timeout", "1s", "--shutdown-timeout", "2s")
	addr := strings.TrimPrefix(base, "http://")
	resp, body := do(t, ctx, noKeepAlive(), "POST", base+"/sessions", nil, "")
	var s struct{ SID, Token string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	q := "?token=" + s.Token
	const eventsID = "SlowSlowSlowSlowSlowSlow0"
	paths := []string{
		"/", "/sessions", "/sessions/sse", "/sessions/" + s.SID + "/sse" + q, "/sessions/" + s.SID + "/poll" + q,
		"/sessions/" + s.SID + "/ws" + q, "/sessions/" + s.SID + "/send" + q, "/sessions/" + s.SID + "/ack" + q,
		"/sessions/" + s.SID + q, "/events/" + eventsID, "/healthz", "/metrics",
	}
	type attack struct{ name, req, trickle string }
	var attacks []attack
	for _, p := range paths {
		// Headers one byte at a time: the request line and all.
		attacks = append(attacks, attack{"headers byte by byte, " + p, "", "GET " + p + " HTTP/1.1\r\nHost: b\r\nX-Slow: " + strings.Repeat("x", 1000)})
	}
	upgrade := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, r := range []struct{ method, path, extra string }{
		{"GET", "/", upgrade},
		{"GET", "/sessions/sse", ""},
		{"GET", "/sessions/" + s.SID + "/sse" + q, ""},
		{"GET", "/sessions/" + s.SID + "/poll" + q, ""},
		{"GET", "/sessions/" + s.SID + "/ws" + q + "&after=0", upgrade},
		{"DELETE", "/sessions/" + s.SID + q, ""},
		{"GET", "/events/" + eventsID, "Accept: text/event-stream\r\n"},
		{"GET", "/events/" + eventsID, "Accept: application/json\r\n"},
		{"OPTIONS", "/sessions", "Origin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\n"},
		{"GET", "/healthz", ""},
		{"GET", "/metrics", ""},
		{"GET", "/nowhere", ""},
	} {
		req := r.method + " " + r.path + " HTTP/1.1\r\nHost: b\r\n" + r.extra + "Content-Length: 100\r\n\r\n"
		attacks = append(attacks, attack{"a declared body never sent, " + r.method + " " + r.path, req, ""})
	}
	for _, p := range []string{"/sessions", "/sessions/" + s.SID + "/send" + q, "/sessions/" + s.SID + "/ack" + q + "&after=0", "/events/" + eventsID, "/nowhere"} {
		req := "POST " + p + " HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
		attacks = append(attacks, attack{"a POST body byte by byte, " + p, req, "[" + strings.Repeat(" ", 50)})
	}
	var wg sync.WaitGroup
	for _, a := range attacks {
		wg.Go(func() {
			cut, err := cutOff(ctx, addr, a.req, a.trickle)
			if err != nil {
				t.Errorf("%s: %v", a.name, err)
			} else if !cut {
				t.Errorf("%s: the connection is still open after %v", a.name, 90*time.Second)
			}
		})
	}
	wg.Wait()
	// The bridge still serves.
	if resp, body := do(t, ctx, noKeepAlive(), "GET", base+"/healthz", nil, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz after the attack: %d %s", resp.StatusCode, body)
	}
}

// Oversized request heads: a header block or a URL beyond the server's
// limit is refused (431) before any handler runs, and the bridge goes on
// serving. Defence: http.Server.MaxHeaderBytes (maxHeaderBytes).
func TestAttackOversizedHeaders(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(fakeCable))
	defer upstream.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, base := startBridge(t, ctx, "--upstream", "ws"+strings.TrimPrefix(upstream.URL, "http")+"/cable", "--shutdown-timeout", "2s")
	addr := strings.TrimPrefix(base, "http://")
	huge := strings.Repeat("a", 2*maxHeaderBytes)
	for name, req := range map[string]string{
		"a huge header":        "POST /sessions HTTP/1.1\r\nHost: b\r\nCookie: " + huge + "\r\nContent-Length: 0\r\n\r\n",
		"many headers":         "POST /sessions HTTP/1.1\r\nHost: b\r\n" + strings.Repeat("X-A: b\r\n", maxHeaderBytes/4) + "Content-Length: 0\r\n\r\n",
		"a huge URL":           "GET /sessions/sse?subscribe=" + huge + " HTTP/1.1\r\nHost: b\r\n\r\n",
		"a huge compat events": "GET /events/" + huge + " HTTP/1.1\r\nHost: b\r\n\r\n",
	} {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		dl, _ := ctx.Deadline()
		c.SetDeadline(dl)
		go io.WriteString(c, req) // the server may answer before it has read it all
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Errorf("%s: %v, want an answer", name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: %s, want 431", name, resp.Status)
		}
	}
	if resp, body := do(t, ctx, noKeepAlive(), "POST", base+"/sessions", nil, ""); resp.StatusCode != http.StatusCreated {
		t.Errorf("create after the attack: %d %s", resp.StatusCode, body)
	}

}
