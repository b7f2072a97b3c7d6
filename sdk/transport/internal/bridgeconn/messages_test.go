//go:build !js

package bridgeconn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/transport"
)

// TestNotABridgeSaysSo: a bridge URL that points at something else (here
// a server answering 404 with a plain body) gets an error that says the
// answer is not a bridge's, with what it said; not "HTTP 404: bridge: ".
func TestNotABridgeSaysSo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Create(ctx, HTTPDoer{}, srv.URL, nil)
	var he *transport.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != 404 {
		t.Fatalf("err = %v, want a HandshakeError with 404", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "not from a Cableway bridge") || !strings.Contains(msg, "404 page not found") {
		t.Fatalf("err = %q, want it to say the answer is not a bridge's, and what it said", msg)
	}
	if strings.Count(err.Error(), "bridge: bridge:") != 0 {
		t.Fatalf("doubled prefix: %q", err)
	}
}

// TestResetSaysWhy: each reset reason the bridge sends reaches the error,
// which matches transport.ErrSessionReset.
func TestResetSaysWhy(t *testing.T) {
	for reason, want := range map[string]string{
		"evicted":    "trimmed from the bridge's resume window",
		"ended":      "session ended on the bridge",
		"bad_cursor": "cursor is not of this session",
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/sessions":
				w.WriteHeader(201)
				fmt.Fprint(w, `{"sid":"s1","token":"t","epoch":7}`)
			case "/sessions/s1/sse":
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprintf(w, "id: 7:1\ndata: {\"type\":\"welcome\"}\n\nevent: reset\ndata: {\"reason\":%q}\n\n", reason)
			default:
				w.WriteHeader(204)
			}
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := Create(ctx, HTTPDoer{}, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := Open(s, SSE{})
		var buf []byte
		buf, err = c.ReadFrame(ctx, buf)
		if err != nil || string(buf) != `{"type":"welcome"}` {
			t.Fatalf("%s: first frame %s %v", reason, buf, err)
		}
		_, err = c.ReadFrame(ctx, buf)
		if !errors.Is(err, transport.ErrSessionReset) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrSessionReset saying %q", reason, err, want)
		}
		if strings.Contains(err.Error(), "bridge: bridge:") {
			t.Errorf("doubled prefix: %q", err)
		}
		c.Close()
		cancel()
		srv.Close()
	}
}
