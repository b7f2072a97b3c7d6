//go:build unix

package bridge_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

// Same-origin compares scheme, host and port with the bridge's own
// origin: the request's scheme (TLS or not) and Host by default, the
// configured public origin when there is one, X-Forwarded-Proto only when
// trusted.
func TestSameOriginComparesScheme(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	type check struct {
		host, origin string
		header       http.Header
		ok           bool
	}
	run := func(t *testing.T, h http.Handler, checks []check) {
		srv := httptest.NewServer(h)
		defer srv.Close()
		for _, c := range checks {
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/healthz", nil)
			req.Host = c.host
			req.Header.Set("Origin", c.origin)
			for k, v := range c.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.StatusCode == http.StatusOK; got != c.ok {
				t.Errorf("Host %q, Origin %q, %v: %d, want allowed=%v", c.host, c.origin, c.header, resp.StatusCode, c.ok)
			}
		}
	}
	newBridge := func(opts ...bridge.Option) *bridge.Bridge {
		b := bridge.New("ws://127.0.0.1:1/cable", opts...)
		t.Cleanup(func() { b.Close(context.Background()) })
		return b
	}
	xfp := http.Header{"X-Forwarded-Proto": {"https"}}
	t.Run("default", func(t *testing.T) {
		run(t, newBridge(), []check{
			{"cable.example:8080", "http://cable.example:8080", nil, true},
			{"Cable.Example:8080", "http://cable.example:8080", nil, true},
			{"cable.example", "http://cable.example:80", nil, true}, // default port
			{"cable.example:8080", "https://cable.example:8080", nil, false},
			{"cable.example", "https://cable.example", nil, false}, // plain HTTP: not the https origin
			{"cable.example", "https://cable.example", xfp, false}, // X-Forwarded-Proto not trusted
			{"cable.example:8080", "http://cable.example:8081", nil, false},
			{"cable.example", "null", nil, false},
		})
	})
	t.Run("trusted X-Forwarded-Proto", func(t *testing.T) {
		run(t, newBridge(bridge.WithTrustForwardedProto(true)), []check{
			{"cable.example", "https://cable.example", xfp, true},
			{"cable.example", "https://cable.example:443", http.Header{"X-Forwarded-Proto": {"http, https"}}, true},
			{"cable.example", "http://cable.example", xfp, false},
			{"cable.example", "https://cable.example", nil, false},
			{"cable.example", "https://cable.example", http.Header{"X-Forwarded-Proto": {"gopher"}}, false},
		})
	})
	t.Run("public origin", func(t *testing.T) {
		run(t, newBridge(bridge.WithPublicOrigin("https://Cable.Example.com:443/"), bridge.WithTrustForwardedProto(true)), []check{
			{"internal:8080", "https://cable.example.com", nil, true},
			{"cable.example.com", "http://cable.example.com", xfp, false},
			{"evil.example", "https://evil.example", xfp, false}, // the Host header decides nothing
		})
	})
	t.Run("TLS", func(t *testing.T) {
		b := newBridge()
		srv := httptest.NewTLSServer(b)
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "https://")
		for origin, ok := range map[string]bool{"https://" + host: true, "http://" + host: false} {
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/healthz", nil)
			req.Header.Set("Origin", origin)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.StatusCode == http.StatusOK; got != ok {
				t.Errorf("over TLS, Origin %q: %d, want allowed=%v", origin, resp.StatusCode, ok)
			}
		}
	})
}

func TestPublicOriginMustBeAnOrigin(t *testing.T) {
	for _, o := range []string{"cable.example.com", "ftp://cable.example.com", "https://cable.example.com/path", "https://u@cable.example.com"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("WithPublicOrigin(%q) accepted", o)
				}
			}()
			bridge.WithPublicOrigin(o)
		}()
	}
}
