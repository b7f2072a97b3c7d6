package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBridgeTLS serves HTTPS (--tls-cert/--tls-key) in front of a wss://
// upstream whose certificate only --upstream-ca makes trusted.
func TestBridgeTLS(t *testing.T) {
	certFile, keyFile := testCert(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(fakeCable))
	upstream.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	upstream.StartTLS()
	defer upstream.Close()
	wss := "wss://" + strings.TrimPrefix(upstream.URL, "https://") + "/cable"

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, base := startBridge(t, ctx, "--upstream", wss, "--tls-cert", certFile, "--tls-key", keyFile,
		"--upstream-ca", certFile, "--shutdown-timeout", "2s")
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("bridge URL %s, want https", base)
	}
	pem, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}

	resp, body := do(t, ctx, client, "POST", base+"/sessions", nil, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /sessions over TLS to a wss upstream: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, ctx, client, "GET", base+"/healthz", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, `"sessions":1`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	p.cancel()
	if code := p.wait(t, ctx); code != exitOK {
		t.Fatalf("exit %d", code)
	}

	// Without --upstream-ca the upstream's certificate is not trusted:
	// session creation fails (the dial is retried until the create
	// timeout).
	_, base = startBridge(t, ctx, "--upstream", wss, "--create-timeout", "300ms")
	if resp, body := do(t, ctx, noKeepAlive(), "POST", base+"/sessions", nil, ""); resp.StatusCode < 500 {
		t.Fatalf("untrusted upstream certificate: %d %s, want a 5xx", resp.StatusCode, body)
	}
	// A CA file without certificates is refused at start.
	empty := t.TempDir() + "/empty.pem"
	os.WriteFile(empty, []byte("nothing\n"), 0o600)
	q := start(t, nil, "bridge", "--listen", "127.0.0.1:0", "--upstream", wss, "--upstream-ca", empty)
	if code := q.wait(t, ctx); code != exitFailure || !strings.Contains(q.stderr.String(), "no PEM certificate") {
		t.Fatalf("empty CA file: exit %d, %s", code, q.stderr.String())
	}
}

// TestBridgeTrustedProxyHeader: with --trusted-proxy-header the per-IP
// limit counts the forwarded address, not the proxy's.
func TestBridgeTrustedProxyHeader(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(fakeCable))
	defer upstream.Close()
	ws := "ws://" + strings.TrimPrefix(upstream.URL, "http://") + "/cable"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, base := startBridge(t, ctx, "--upstream", ws, "--max-sessions-per-ip", "1",
		"--trusted-proxy-header", "X-Forwarded-For", "--shutdown-timeout", "2s")
	client := noKeepAlive()
	post := func(xff string) int {
		resp, _ := do(t, ctx, client, "POST", base+"/sessions", http.Header{"X-Forwarded-For": {xff}}, "")
		return resp.StatusCode
	}
	if got := post("198.51.100.1, 203.0.113.1"); got != http.StatusCreated {
		t.Fatalf("first session: %d", got)
	}
	if got := post("203.0.113.2"); got != http.StatusCreated {
		t.Fatalf("another client IP: %d, want 201", got)
	}
	// The forged left part differs but the proxy-appended address repeats.
	if got := post("192.0.2.99, 203.0.113.1"); got != http.StatusTooManyRequests {
		t.Fatalf("same client IP again: %d, want 429", got)
	}
}

// TestBridgeListenFails: a port already taken is a start failure, exit 1.
func TestBridgeListenFails(t *testing.T) {
	taken := httptest.NewServer(http.NotFoundHandler())
	defer taken.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := start(t, nil, "bridge", "--listen", strings.TrimPrefix(taken.URL, "http://"))
	if code := p.wait(t, ctx); code != exitFailure || !strings.Contains(p.stderr.String(), "address already in use") {
		t.Fatalf("exit %d\n%s", code, p.stderr.String())
	}
}
