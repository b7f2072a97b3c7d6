package clients_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cableway/cableway/internal/bench/clients"
	"github.com/cableway/cableway/internal/bench/feeder"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/transport/sse"
	"github.com/cableway/cableway/server/bridge"
)

// TestMain: a run leaves no goroutine behind (its consumer or socket closed).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *feeder.Server {
	t.Helper()
	f, err := feeder.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestEveryKind: each client takes a flood and a paced run off the real
// feeder, every message counted (Run checks every seq but Raw's).
func TestEveryKind(t *testing.T) {
	f := start(t)
	for _, kind := range clients.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			res, err := clients.Run(ctx(t), clients.Config{Kind: kind, URL: f.URL(), N: 3000})
			if err != nil {
				t.Fatal(err)
			}
			if res.Count != 3000 || res.Rate() <= 0 || res.Latencies != nil {
				t.Fatalf("flood: %d messages, rate %v, %d latencies", res.Count, res.Rate(), len(res.Latencies))
			}
			res, err = clients.Run(ctx(t), clients.Config{Kind: kind, URL: f.URL(), N: 200, Rate: 4000})
			if err != nil {
				t.Fatal(err)
			}
			if res.Count != 200 || len(res.Latencies) != 200 {
				t.Fatalf("paced: %d messages, %d latencies", res.Count, len(res.Latencies))
			}
			for i, l := range res.Latencies {
				if l < 0 || l > time.Minute {
					t.Fatalf("paced: latency %d is %v", i, l)
				}
			}
			if p50, p99 := res.Percentile(0.5), res.Percentile(0.99); p50 > p99 {
				t.Fatalf("p50 %v > p99 %v", p50, p99)
			}
		})
	}
}

// TestThroughTheBridge: a cable kind over SSE through server/bridge.
func TestThroughTheBridge(t *testing.T) {
	f := start(t)
	b := bridge.New(f.URL())
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Close(c)
		srv.Close()
	})
	res, err := clients.Run(ctx(t), clients.Config{
		Kind: clients.CableJSON, URL: f.URL(), N: 100, Rate: 2000,
		CableOptions: []cable.Option{cable.WithTransport(sse.New(srv.URL))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Latencies) != 100 {
		t.Fatalf("%d latencies", len(res.Latencies))
	}
}

func TestBadConfig(t *testing.T) {
	for name, cfg := range map[string]clients.Config{
		"no messages":   {Kind: clients.Raw, URL: "ws://127.0.0.1:1/cable", N: 0},
		"too many":      {Kind: clients.Raw, URL: "ws://127.0.0.1:1/cable", N: feeder.MaxCount + 1},
		"negative rate": {Kind: clients.Raw, URL: "ws://127.0.0.1:1/cable", N: 5, Rate: -1},
		"unknown kind":  {Kind: "telepathy", URL: "ws://127.0.0.1:1/cable", N: 5},
	} {
		if _, err := clients.Run(ctx(t), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := clients.Run(ctx(t), clients.Config{Kind: clients.Raw, URL: "ws://127.0.0.1:1/cable", N: 5}); err == nil {
		t.Error("nothing listening: no error")
	}
}
