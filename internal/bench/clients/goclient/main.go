// Command goclient is one Go client of the bench table in a process of its
// own, so that its memory is measured alone: it makes one run of package
// clients against the feeder and prints the result as one JSON line.
//
//	goclient -kind cable-json -url ws://127.0.0.1:PORT/cable -n 200000
//	goclient -kind cable-json -url ws://… -n 4000 -rate 2000 -sse http://127.0.0.1:PORT2
//
// -rate asks for a paced run and adds the latency percentiles; -sse makes
// a cable kind connect over SSE through the bridge at that URL. Exit
// status 2 is a usage error, 1 a failed run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cableway/cableway/internal/bench/clients"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/transport/sse"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("goclient", flag.ContinueOnError)
	kind := fs.String("kind", string(clients.CableJSON), "the client: raw, raw-json, cable-json or cable-msgpack")
	url := fs.String("url", "", "the feeder's ws:// URL")
	n := fs.Int("n", 200000, "messages to receive")
	rate := fs.Float64("rate", 0, "a paced run at this many messages a second (0: a flood)")
	bridge := fs.String("sse", "", "connect a cable kind over SSE through the bridge at this URL")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *url == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "goclient: -url is required, and takes no arguments")
		return 2
	}
	cfg := clients.Config{Kind: clients.Kind(*kind), URL: *url, N: *n, Rate: *rate}
	if *bridge != "" {
		if cfg.Kind != clients.CableJSON && cfg.Kind != clients.CableMsgPack {
			fmt.Fprintln(os.Stderr, "goclient: -sse needs a cable kind")
			return 2
		}
		cfg.CableOptions = []cable.Option{cable.WithTransport(sse.New(*bridge))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := clients.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goclient:", err)
		return 1
	}
	out := map[string]any{"messages": res.Count, "seconds": res.Elapsed.Seconds(), "rate": res.Rate()}
	if kib, ok := peakRSSKiB(); ok {
		out["peakRSSKiB"] = kib
	}
	if cfg.Rate > 0 {
		out["p50us"] = float64(res.Percentile(0.50)) / 1e3
		out["p99us"] = float64(res.Percentile(0.99)) / 1e3
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// peakRSSKiB is this process's peak resident set, VmHWM in
// /proc/self/status (Linux). Not getrusage's ru_maxrss: after a vfork and
// exec, as os/exec starts a process, that starts from the parent's peak.
func peakRSSKiB() (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := bytes.Fields(v)
			if len(f) == 2 && string(f[1]) == "kB" {
				n, err := strconv.ParseInt(string(f[0]), 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}
