//go:build unix

package fallback_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// hostRecorder is an http.RoundTripper that notes the hosts it is asked for.
type hostRecorder struct {
	mu    sync.Mutex
	hosts map[string]int
}

func (r *hostRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	if r.hosts == nil {
		r.hosts = map[string]int{}
	}
	r.hosts[req.URL.Host]++
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *hostRecorder) saw(rawURL string) bool {
	u, _ := url.Parse(rawURL)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hosts[u.Host] > 0
}

// Bridged's transports take the user's settings: the WebSocket's reach
// both the dial to Rails and the probe's re-attach to the bridge, the
// SSE transport's its requests; and the consumer reports the moves
// through transport.ChangeNotifier.
func TestBridgedSettingsReachEveryTransport(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wsRec, sseRec, lpRec hostRecorder
	rails := refusedURL(t)
	tr := fallback.Bridged(s.bridge,
		fallback.WithWebSocket(websocket.WithHTTPClient(&http.Client{Transport: &wsRec})),
		fallback.WithSSE(sse.WithHTTPClient(&http.Client{Transport: &sseRec})),
		fallback.WithLongPoll(longpoll.WithHTTPClient(&http.Client{Transport: &lpRec})),
		fallback.WithProbeInterval(200*time.Millisecond))
	var _ transport.ChangeNotifier = tr
	c, events := dial(t, ctx, rails, tr)
	if c.Transport() != transport.NameSSE {
		t.Fatalf("connected over %q, want sse", c.Transport())
	}
	if !wsRec.saw(rails) || !sseRec.saw(s.bridge) || lpRec.saw(s.bridge) {
		t.Fatalf("requests: websocket client %v, sse client %v, long-poll client %v", wsRec.hosts, sseRec.hosts, lpRec.hosts)
	}
	for {
		select {
		case e := <-events:
			if e.Kind != cable.EventTransportChanged || !e.Upgrade {
				continue
			}
			if e.Transport != transport.NameWebSocket || e.From != transport.NameSSE {
				t.Fatalf("upgrade %v, want sse → websocket", e)
			}
			if !wsRec.saw(s.bridge) {
				t.Fatalf("the probe's WebSocket did not use the configured client: %v", wsRec.hosts)
			}
			roundTrip(t, ctx, c, "upgraded")
			return
		case <-ctx.Done():
			t.Fatal("no upgrade to the bridge's WebSocket")
		}
	}
}

// WithoutLongPoll leaves long-polling out of Bridged's set.
func TestBridgedWithoutLongPoll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bridgeURL := "http://" + strings.TrimPrefix(refusedURL(t), "ws://")
	tr := fallback.Bridged(bridgeURL, fallback.WithoutLongPoll(), fallback.WithHeadStart(time.Millisecond))
	_, err := tr.Dial(ctx, &transport.Request{URL: refusedURL(t)})
	if err == nil {
		t.Fatal("Dial through refusing servers succeeded")
	}
	for _, name := range []string{transport.NameWebSocket, transport.NameSSE} {
		if !strings.Contains(err.Error(), name+": ") {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), transport.NameLongPoll+": ") {
		t.Errorf("error %v names longpoll, which was left out", err)
	}
}
