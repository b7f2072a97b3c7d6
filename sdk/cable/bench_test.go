package cable_test

// The receive benchmarks compare, in one run, ways of taking the same feed
// (internal/bench/feeder: ~170 B channel messages {seq, ts, pad}) off a
// loopback WebSocket. Every client but the limit decodes each message into
// {Seq, Ts int64} and checks seq, as a user would (internal/bench/clients):
//
//	(a) raw:        coder/websocket reads into a reused buffer, no decode
//	                (the limit)
//	(b) naive:      raw read + encoding/json.Unmarshal of each frame into an
//	                envelope struct, what a hand-rolled client does
//	(c) json:       Consumer → Subscription.Messages → Payload.Decode,
//	                actioncable-v1-json
//	(d) msgpack:    the same over actioncable-v1-msgpack
//	(e) node:       the official @rails/actioncable under Node, reading
//	                seq and ts of each parsed message
//
// The feeder writes prebuilt frames, so it allocates nothing per message
// and allocs/op is the client's. Compare ratios within one run; absolute
// figures vary with the machine. Run with:
//
//	go test -run='^$' -bench=Receive -benchmem ./sdk/cable/
//
// `go run ./internal/bench/table` measures the same clients in separate
// processes (rate, latency, RSS) beside the browser and the bridge.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/bench/clients"
	"github.com/cableway/cableway/internal/bench/feeder"
)

func BenchmarkReceive(b *testing.B) {
	b.Run("a-raw-websocket", func(b *testing.B) { benchClient(b, clients.Raw) })
	b.Run("b-naive-json-unmarshal", func(b *testing.B) { benchClient(b, clients.RawJSON) })
	b.Run("c-consumer-json", func(b *testing.B) { benchClient(b, clients.CableJSON) })
	b.Run("d-consumer-msgpack", func(b *testing.B) { benchClient(b, clients.CableMsgPack) })
	b.Run("e-node-official-actioncable", benchOfficial)
}

func startFeeder(b *testing.B) *feeder.Server {
	f, err := feeder.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

func benchClient(b *testing.B, kind clients.Kind) {
	f := startFeeder(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	res, err := clients.Run(ctx, clients.Config{Kind: kind, URL: f.URL(), N: max(b.N, 2)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Rate(), "msgs/s")
}

// benchOfficial runs the official @rails/actioncable client under Node on
// the same feed (js/bench/official-receive.mjs). It needs node and the npm
// dev dependencies (npm ci); without them it is skipped.
func benchOfficial(b *testing.B) {
	root, err := filepath.Abs("../..")
	if err != nil {
		b.Fatal(err)
	}
	script := filepath.Join(root, "js", "bench", "official-receive.mjs")
	if _, err := os.Stat(filepath.Join(root, "node_modules", "@rails", "actioncable")); err != nil {
		b.Skip("npm dev dependencies missing (run npm ci)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		b.Skip("node not installed")
	}
	f := startFeeder(b)
	b.ResetTimer()
	cmd := exec.Command(node, script, f.URL(), strconv.Itoa(max(b.N, 2)))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var r struct{ Rate float64 }
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("node printed %q: %v", out, err)
	}
	b.ReportMetric(r.Rate, "msgs/s")
	b.ReportMetric(1e9/r.Rate, "ns/msg")
}
