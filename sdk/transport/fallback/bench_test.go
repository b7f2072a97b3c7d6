//go:build unix

package fallback_test

// Time from Dial to the first confirmed subscription, per obstacle, and
// the time to move back to a WebSocket once one gets through. Medians over
// the iterations are reported as p50-ms. Run with:
//
//	CABLEWAY_REQUIRE_RAILS=1 go test -run='^$' -bench=Fallback -benchtime=15x ./sdk/transport/fallback/

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport/fallback"
)

func reportMedian(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2])/float64(time.Millisecond), "p50-ms")
	b.ReportMetric(float64(d[len(d)-1])/float64(time.Millisecond), "max-ms")
}

func BenchmarkFallbackOpen(b *testing.B) {
	cases := []struct {
		name string
		conf string // nginx configuration; "" for the direct cases
		url  func(b *testing.B, p *proxied) string
		want string
	}{
		{"refused", confOpen, func(b *testing.B, _ *proxied) string { return refusedURL(b) }, "sse"},
		{"black-holed", confOpen, func(b *testing.B, _ *proxied) string { return blackHoleURL(b) }, "sse"},
		{"nginx-strips-upgrade", confNoUpgrade, func(_ *testing.B, p *proxied) string { return p.nginx.WSURL("/cable") }, "sse"},
		{"nginx-buffers-sse", confBuffered, func(_ *testing.B, p *proxied) string { return p.nginx.WSURL("/cable") }, "longpoll"},
		{"nginx-open", confOpen, func(_ *testing.B, p *proxied) string { return p.nginx.WSURL("/cable") }, "websocket"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			p := newProxied(b, tc.conf)
			url := tc.url(b, p)
			id := protocol.MustIdentifier("ChatChannel", "room", "bench")
			var times []time.Duration
			for range b.N {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				via := make(chan string, 4)
				start := time.Now()
				c, err := cable.Dial(ctx, url,
					cable.WithTransport(fallback.Bridged(p.nginx.URL("/bridge"), fallback.WithProbeInterval(-1))),
					cable.WithHeader("Authorization", "Bearer secret-bench"),
					cable.WithEventHandler(func(e cable.Event) {
						if e.Kind == cable.EventConnected {
							via <- e.Transport
						}
					}))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Subscribe(ctx, id); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
				if v := <-via; v != tc.want {
					b.Fatalf("connected via %s, want %s", v, tc.want)
				}
				c.Close()
				cancel()
			}
			reportMedian(b, times)
		})
	}
}

// BenchmarkFallbackBackToWebSocket: on SSE behind a proxy that strips
// Upgrade, the proxy starts passing WebSockets; how long until the
// connection runs over one (probe interval 250 ms)?
func BenchmarkFallbackBackToWebSocket(b *testing.B) {
	p := newProxied(b, confNoUpgrade)
	var times []time.Duration
	for range b.N {
		p.reload(b, confNoUpgrade)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		changes := make(chan fallback.Change, 8)
		c, err := cable.Dial(ctx, p.nginx.WSURL("/cable"),
			cable.WithTransport(fallback.Bridged(p.nginx.URL("/bridge"),
				fallback.WithProbeInterval(250*time.Millisecond),
				fallback.WithOnChange(func(ch fallback.Change) { changes <- ch }))),
			cable.WithHeader("Authorization", "Bearer secret-bench"))
		if err != nil {
			b.Fatal(err)
		}
		if ch := <-changes; ch.To != "sse" {
			b.Fatalf("first change to %s, want sse", ch.To)
		}
		start := time.Now()
		p.reload(b, confOpen)
		for ch := range changes {
			if ch.To == "websocket" {
				break
			}
		}
		times = append(times, time.Since(start))
		c.Close()
		cancel()
	}
	reportMedian(b, times)
}
