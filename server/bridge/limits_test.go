//go:build unix

package bridge_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

// rawRequest writes req on a new connection to addr and returns the
// answer's status line and whether the server closed the connection after
// it, all within ctx.
func rawRequest(ctx context.Context, addr, req string) (status string, closed bool, err error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", false, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, req); err != nil {
		return "", false, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", false, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	return resp.Status, errors.Is(err, io.EOF), nil
}

// A request that needs no body but declares one it never sends is answered
// (408) and its connection closed, instead of holding the connection for
// ever; one whose body does arrive is served.
func TestDeclaredBodyNeverSent(t *testing.T) {
	e := newFakeEnv(t, nil)
	ctx := testCtx(t, 40*time.Second)
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	var wg sync.WaitGroup
	for _, req := range []string{"GET /healthz", "GET /nowhere", "GET /sessions/x/sse", "DELETE /sessions/x"} {
		wg.Go(func() {
			status, closed, err := rawRequest(ctx, addr, req+" HTTP/1.1\r\nHost: b\r\nContent-Length: 10\r\n\r\n")
			if err != nil {
				t.Errorf("%s with a body that never comes: %v (want an answer within about 10 s)", req, err)
				return
			}
			if !strings.HasPrefix(status, "408") || !closed {
				t.Errorf("%s with a body that never comes: %q, closed %v; want 408 and the connection closed", req, status, closed)
			}
		})
	}
	wg.Wait()
	status, _, err := rawRequest(ctx, addr, "GET /healthz HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
	if err != nil || !strings.HasPrefix(status, "200") {
		t.Errorf("GET /healthz with a body that arrives: %q %v, want 200", status, err)
	}
}

// Session creation is rate limited per client, before Rails is dialled,
// with a Retry-After.
func TestSessionCreationRate(t *testing.T) {
	e := newFakeEnv(t, nil, bridge.WithSessionRate(0.001, 3)) // no refill within the test
	ctx := testCtx(t, 20*time.Second)
	for range 3 {
		e.create(t, ctx)
	}
	resp, body := e.do(t, ctx, "POST", "/sessions", nil, "")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "create_rate_limited") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th creation: %d %q %s, want 429 create_rate_limited with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// The proxy creates sessions too.
	h := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	if resp, body := e.do(t, ctx, "GET", "/", h, ""); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("proxy upgrade beyond the rate: %d %s, want 429", resp.StatusCode, body)
	}
	if n := e.up.Handshakes(); n != 3 {
		t.Errorf("the upstream saw %d handshakes, want 3", n)
	}
}

// The per-client limits count an IPv6 /64 as one client: the session cap
// and the creation rate alike.
func TestPerClientLimitsKeyOnIPv6Slash64(t *testing.T) {
	e := newFakeEnv(t, nil,
		bridge.WithSessionLimits(100, 2),
		bridge.WithSessionRate(0.001, 4),
		bridge.WithClientIP(func(r *http.Request) string { return r.Header.Get("X-Test-IP") }),
	)
	ctx := testCtx(t, 20*time.Second)
	create := func(ip string) (int, string) {
		resp, body := e.do(t, ctx, "POST", "/sessions", http.Header{"X-Test-IP": {ip}}, "")
		if resp.StatusCode == http.StatusCreated {
			if _, err := e.up.NextConn(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, string(body)
	}
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"} {
		if code, body := create(ip); code != http.StatusCreated {
			t.Fatalf("create from %s: %d %s", ip, code, body)
		}
	}
	if code, body := create("2001:db8:1:2::abcd"); code != http.StatusTooManyRequests || !strings.Contains(body, "too_many_sessions_for_ip") {
		t.Errorf("3rd session from the same /64: %d %s, want 429 too_many_sessions_for_ip", code, body)
	}
	// Another /64 and an IPv4 client have their own counts.
	for _, ip := range []string{"2001:db8:1:3::1", "192.0.2.1", "192.0.2.2"} {
		if code, body := create(ip); code != http.StatusCreated {
			t.Errorf("create from %s: %d %s, want 201", ip, code, body)
		}
	}
	// The refused creation above took the /64's 3rd token; the 4th is its
	// last, the 5th is refused by the rate whatever the session count.
	create("2001:db8:1:2::abcd")
	if code, body := create("2001:db8:1:2::5"); code != http.StatusTooManyRequests || !strings.Contains(body, "create_rate_limited") {
		t.Errorf("5th creation from the same /64: %d %s, want 429 create_rate_limited", code, body)
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":             "192.0.2.7",
		"::ffff:192.0.2.7":      "192.0.2.7",
		"2001:db8:a:b:c:d:e:f":  "2001:db8:a:b::/64",
		"2001:db8:a:b::1%eth0":  "2001:db8:a:b::/64",
		"::1":                   "::/64",
		"not an address":        "not an address",
		"2001:db8:a:b:1::/64+x": "2001:db8:a:b:1::/64+x",
	} {
		if got := bridge.ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// LimitListener holds at most n connections per client open: one beyond
// is closed before it is read, and a slot freed is usable again.
func TestLimitListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	srv.Listener.Close()
	limited := bridge.LimitListener(ln, 2)
	srv.Listener = limited
	srv.Start()
	defer srv.Close()
	ctx := testCtx(t, 20*time.Second)
	addr := ln.Addr().String()

	// served sends a request on c and says whether it was answered.
	served := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	var d net.Dialer
	var open []net.Conn
	for i := range 2 {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !served(c) {
			t.Fatalf("connection %d within the cap not served", i+1)
		}
		open = append(open, c)
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if served(c) {
		t.Fatal("a 3rd connection from the same client was served, cap 2")
	}
	c.Close()
	if n := limited.Refused(); n != 1 {
		t.Errorf("Refused() = %d, want 1", n)
	}
	open[0].Close()
	// The freed slot: the server notices the close on its own time, so
	// try until a connection is served.
	err = waitFor(ctx, "a connection served after one closed", func() bool {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		return served(c)
	})
	if err != nil {
		t.Fatal(err)
	}
}
