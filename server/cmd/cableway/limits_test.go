package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// servedOn sends a request on c and reports whether it was answered; the
// connection stays open (keep-alive).
func servedOn(c net.Conn, br *bufio.Reader, path string) bool {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: b\r\n\r\n"); err != nil {
		return false
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// "cableway bridge" holds at most --max-conns-per-ip connections from one
// peer: one more is closed unanswered, and a slot freed serves again.
func TestBridgeMaxConnsPerIP(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(fakeCable))
	defer upstream.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, base := startBridge(t, ctx, "--upstream", "ws"+strings.TrimPrefix(upstream.URL, "http")+"/cable",
		"--max-conns-per-ip", "2", "--shutdown-timeout", "2s")
	addr := strings.TrimPrefix(base, "http://")
	var d net.Dialer
	var open []net.Conn
	for i := range 2 {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !servedOn(c, bufio.NewReader(c), "/healthz") {
			t.Fatalf("connection %d within the cap not served", i+1)
		}
		open = append(open, c)
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if servedOn(c, bufio.NewReader(c), "/healthz") {
		t.Fatal("a 3rd connection from the same peer was served with --max-conns-per-ip 2")
	}
	c.Close()
	open[0].Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		ok := servedOn(c, bufio.NewReader(c), "/healthz")
		c.Close()
		if ok {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("no connection served after one of the two closed")
		}
	}
	// The refusals are counted. The connections just closed may still
	// count against the cap until the server has seen them go: close the
	// last one too and ask until a connection is served.
	open[1].Close()
	var metrics string
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
		resp, err := noKeepAlive().Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			metrics = string(b)
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("GET /metrics never served after every connection closed: %v", err)
		}
	}
	m := regexp.MustCompile(`(?m)^cableway_bridge_connections_refused_total (\d+)$`).FindStringSubmatch(metrics)
	if m == nil || m[1] == "0" {
		t.Errorf("metrics: connections_refused_total %v, want at least 1", m)
	}
}

// Requests that declare a body and never send it are cut off, on the
// bridge's routes and on /metrics alike, instead of holding their
// connection for ever.
func TestBridgeDeclaredBodyNeverSent(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(fakeCable))
	defer upstream.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	_, base := startBridge(t, ctx, "--upstream", "ws"+strings.TrimPrefix(upstream.URL, "http")+"/cable", "--shutdown-timeout", "2s")
	addr := strings.TrimPrefix(base, "http://")
	var wg sync.WaitGroup
	for _, req := range []string{"GET /metrics", "GET /healthz", "DELETE /sessions/x", "OPTIONS /sessions"} {
		wg.Go(func() {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			dl, _ := ctx.Deadline()
			c.SetDeadline(dl)
			io.WriteString(c, req+" HTTP/1.1\r\nHost: b\r\nContent-Length: 100\r\n\r\n")
			// Whatever the answer, the connection must end well before
			// the test's deadline.
			_, err = io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s with a body that never comes: the connection is still open after %v", req, 40*time.Second)
			}
		})
	}
	// Headers trickled one line every 200 ms never end the request: the
	// connection is cut once readHeaderTimeout has passed.
	wg.Go(func() {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: b\r\n"); err != nil {
			t.Error(err)
			return
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Errorf("trickled headers: the connection is still open after %v", 40*time.Second)
				return
			}
			if _, err := fmt.Fprintf(c, "X-Trickle-%d: x\r\n", i); err != nil {
				return // cut off
			}
		}
	})
	wg.Wait()
}

func TestBridgeLimitFlags(t *testing.T) {
	cfg, err := parseBridgeFlags([]string{"--max-conns-per-ip", "0", "--session-rate", "0", "--session-burst", "7",
		"--public-origin", "HTTPS://Cable.Example.com:443/", "--trust-forwarded-proto"}, mapEnv(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.maxConnsPerIP != 0 || !cfg.maxConnsPerIPSet || cfg.sessionRate != 0 || cfg.sessionBurst != 7 ||
		cfg.publicOrigin != "https://cable.example.com" || !cfg.trustForwardedProto {
		t.Fatalf("parsed %+v", cfg)
	}
	cfg, err = parseBridgeFlags(nil, mapEnv(map[string]string{"CABLEWAY_MAX_CONNS_PER_IP": "9", "CABLEWAY_SESSION_RATE": "2.5"}), io.Discard)
	if err != nil || cfg.maxConnsPerIP != 9 || !cfg.maxConnsPerIPSet || cfg.sessionRate != 2.5 {
		t.Fatalf("from the environment: %+v %v", cfg, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-conns-per-ip", "-1"}, "must be 0 or more"},
		{[]string{"--session-rate", "NaN"}, "not a number"},
		{[]string{"--session-burst", "0"}, "must be positive"},
		{[]string{"--public-origin", "cable.example.com"}, "want http(s)://host[:port]"},
		{[]string{"--public-origin", "https://cable.example.com/app"}, "want http(s)://host[:port]"},
	} {
		code, stdout, stderr := runSync(t, nil, append([]string{"bridge"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("bridge %v: exit %d, stderr %q; want exit 2 with %q", tc.args, code, stderr, tc.want)
		}
	}
}

// Behind a reverse proxy (--trusted-proxy-header) the per-peer connection
// cap would cap the proxy: it is off unless given.
func TestBridgeConnCapBehindProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	capRE := regexp.MustCompile(`msg="bridge listening" .*max_conns_per_ip=(\d+)`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "256"},
		{[]string{"--trusted-proxy-header", "X-Forwarded-For"}, "0"},
		{[]string{"--trusted-proxy-header", "X-Forwarded-For", "--max-conns-per-ip", "5000"}, "5000"},
	} {
		p := start(t, nil, append([]string{"bridge", "--listen", "127.0.0.1:0", "--shutdown-timeout", "1s"}, tc.args...)...)
		if got := p.stderr.waitFor(t, ctx, capRE)[1]; got != tc.want {
			t.Errorf("bridge %v: max_conns_per_ip=%s, want %s", tc.args, got, tc.want)
		}
	}
}
