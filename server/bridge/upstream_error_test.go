package bridge_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

// The 502 a client gets when Rails cannot be reached says so without the
// upstream's address: the bridge's clients must not learn the internal
// network.
func TestUnavailableUpstreamNotRevealed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: the dial is refused
	b := bridge.New("ws://"+addr+"/cable", bridge.WithCreateTimeout(10*time.Second))
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close(context.Background())
	resp, err := http.Post(srv.URL+"/sessions", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d %s, want 502", resp.StatusCode, body)
	}
	_, port, _ := net.SplitHostPort(addr)
	for _, secret := range []string{addr, port, "/cable", "127.0.0.1"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("the 502 body reveals %q: %s", secret, body)
		}
	}
	if !strings.Contains(string(body), "upstream_unavailable") {
		t.Errorf("the 502 body does not say why: %s", body)
	}
}
