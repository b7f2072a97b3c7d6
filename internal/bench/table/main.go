// Command table is `make bench`: it measures, in one run on this machine,
// every client Cableway is compared with, on one feed (package feeder), and
// prints one Markdown table with the date and the machine:
//
//   - receive in Go and Node: the raw coder/websocket reader without decoding
//     (the limit), raw + encoding/json, sdk/cable decoding every message into
//     a struct over JSON and over MessagePack, and the official
//     @rails/actioncable 8 under Node 20 with ws; msgs/s (a flood), p50/p99
//     latency (a paced run) and peak RSS, each client in a process of its own;
//   - the official client in headless Chromium on the native WebSocket and on
//     cableway's drop-in: receive, echo round trip, wasm load and instantiate
//     (js/bench/table-browser.mjs), plus js/bench/startup.mjs and
//     js/bench/rtt.mjs when they exist;
//   - the bridge against a direct WebSocket: the latency sdk/cable sees for a
//     paced message over SSE through server/bridge and directly.
//
// Figures are medians of -rounds rounds; each round runs every client once,
// in turn, so that the machine's drift hits all alike. Ratios compare
// figures of this run only. Run from the repository root, after
// `node js/build.mjs` (the wasm) and `npm ci`:
//
//	go run ./internal/bench/table [-rounds 5] [-n 200000] [-browser=false] …
//
// Progress goes to stderr, the table to stdout. The exit status is 1 if any
// measurement failed (the table then says which, in its place).
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cableway/cableway/internal/bench/clients"
	"github.com/cableway/cableway/internal/bench/feeder"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/bridge"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type settings struct {
	root          string
	rounds        int
	n             int
	pacedN        int
	rate          float64
	browser       bool
	browserFrames int
	echoes        int
	hooks         bool
	timeout       time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	var s settings
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.root, "root", ".", "the repository root")
	fs.IntVar(&s.rounds, "rounds", 5, "rounds; figures are their medians")
	fs.IntVar(&s.n, "n", 200000, "messages per flood (receive rate)")
	fs.IntVar(&s.pacedN, "paced-n", 4000, "messages per paced run (latency)")
	fs.Float64Var(&s.rate, "rate", 2000, "messages a second in a paced run")
	fs.BoolVar(&s.browser, "browser", true, "measure the drop-in in Chromium")
	fs.IntVar(&s.browserFrames, "browser-frames", 30000, "messages per receive run in Chromium")
	fs.IntVar(&s.echoes, "echoes", 2000, "echo round trips per run in Chromium")
	fs.BoolVar(&s.hooks, "hooks", true, "run js/bench/startup.mjs and js/bench/rtt.mjs if they exist")
	fs.DurationVar(&s.timeout, "timeout", 3*time.Minute, "the longest one measurement may take")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "table: unexpected arguments %q\n", fs.Args())
		return 2
	case s.rounds < 1, s.n < 2, s.pacedN < 2, s.browserFrames < 1, s.echoes < 1:
		fmt.Fprintln(stderr, "table: -rounds, -n, -paced-n, -browser-frames and -echoes must be positive (-n and -paced-n ≥ 2)")
		return 2
	case !(s.rate > 0 && s.rate <= 1e6):
		fmt.Fprintln(stderr, "table: -rate must be in (0, 1e6]")
		return 2
	}
	if err := measure(s, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "table:", err)
		return 1
	}
	return 0
}

// result is one process's run: what it printed and its peak RSS.
type result struct {
	Messages int     `json:"messages"`
	Rate     float64 `json:"rate"`
	P50us    float64 `json:"p50us"`
	P99us    float64 `json:"p99us"`
	// RSSKiB is the client's own peak resident set (VmHWM), as it reports
	// it: the rusage of a child started by vfork and exec counts the
	// parent's peak too.
	RSSKiB int64 `json:"peakRSSKiB"`
}

// client is one row of the receive table.
type client struct {
	name  string
	bold  bool
	flood func(ctx context.Context) (result, error)
	paced func(ctx context.Context) (result, error)
	// figures over the rounds
	rates, p50, p99, rss []float64
	errs                 []string
}

func measure(s settings, stdout, stderr io.Writer) error {
	root, err := filepath.Abs(s.root)
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.Contains(b, []byte("module github.com/cableway/cableway\n")) {
		return fmt.Errorf("%s is not the repository root (-root)", root)
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "table: "+format+"\n", a...) }
	started := time.Now().UTC()
	loadStart := loadAvg()

	tmp, err := os.MkdirTemp("", "cableway-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	goclient := filepath.Join(tmp, "goclient")
	logf("building the Go client")
	gocmd := cmp.Or(os.Getenv("GO"), "go") // as the Makefile's $(GO)
	build := exec.Command(gocmd, "build", "-o", goclient, "./internal/bench/clients/goclient")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build goclient: %v\n%s", err, out)
	}

	feed, err := feeder.Start()
	if err != nil {
		return err
	}
	defer feed.Close()
	br := bridge.New(feed.URL())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	bsrv := &http.Server{Handler: br, ReadHeaderTimeout: 10 * time.Second}
	go bsrv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		br.Close(ctx)
		bsrv.Close()
	}()
	bridgeURL := "http://" + ln.Addr().String()

	node, nodeErr := exec.LookPath("node")
	officialScript := filepath.Join(root, "js", "bench", "official-receive.mjs")
	officialVersion := "8"
	if nodeErr == nil {
		if b, err := os.ReadFile(filepath.Join(root, "node_modules", "@rails", "actioncable", "package.json")); err != nil {
			nodeErr = errors.New("node_modules/@rails/actioncable missing: run npm ci")
		} else {
			var p struct{ Version string }
			json.Unmarshal(b, &p)
			officialVersion = p.Version
		}
	}

	goRun := func(kind clients.Kind, paced bool, extra ...string) func(context.Context) (result, error) {
		return func(ctx context.Context) (result, error) {
			args := []string{"-kind", string(kind), "-url", feed.URL(), "-n", strconv.Itoa(s.n)}
			if paced {
				args = []string{"-kind", string(kind), "-url", feed.URL(), "-n", strconv.Itoa(s.pacedN), "-rate", fmt.Sprint(s.rate)}
			}
			return runJSON(ctx, root, goclient, append(args, extra...)...)
		}
	}
	nodeRun := func(paced bool) func(context.Context) (result, error) {
		return func(ctx context.Context) (result, error) {
			if nodeErr != nil {
				return result{}, nodeErr
			}
			if paced {
				return runJSON(ctx, root, node, officialScript, feed.URL(), strconv.Itoa(s.pacedN), fmt.Sprint(s.rate))
			}
			return runJSON(ctx, root, node, officialScript, feed.URL(), strconv.Itoa(s.n))
		}
	}
	rows := []*client{
		{name: "raw coder/websocket, no decode (the limit)", flood: goRun(clients.Raw, false), paced: goRun(clients.Raw, true)},
		{name: "raw coder/websocket + `encoding/json`", flood: goRun(clients.RawJSON, false), paced: goRun(clients.RawJSON, true)},
		{name: "Cableway `sdk/cable`, JSON, `msg.Decode` into a struct", bold: true, flood: goRun(clients.CableJSON, false), paced: goRun(clients.CableJSON, true)},
		{name: "Cableway `sdk/cable`, MessagePack, `msg.Decode` into a struct", flood: goRun(clients.CableMsgPack, false), paced: goRun(clients.CableMsgPack, true)},
		{name: "`@rails/actioncable` " + officialVersion + ", Node " + nodeVersion(node) + " + ws", flood: nodeRun(false), paced: nodeRun(true)},
	}
	official := rows[len(rows)-1]
	direct := rows[2]
	viaSSE := &client{name: "through the bridge over SSE", paced: goRun(clients.CableJSON, true, "-sse", bridgeURL)}

	// Rounds: every client once per round, in turn; floods, then paced runs.
	failed := false
	note := func(c *client, what string, err error) {
		failed = true
		msg := fmt.Sprintf("%s: %v", what, err)
		c.errs = append(c.errs, msg)
		logf("%s %s", c.name, msg)
	}
	for r := range s.rounds {
		for _, c := range rows {
			logf("round %d/%d: flood, %s", r+1, s.rounds, c.name)
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			res, err := c.flood(ctx)
			cancel()
			if err != nil {
				note(c, "flood", err)
				continue
			}
			c.rates = append(c.rates, res.Rate)
			if res.RSSKiB > 0 {
				c.rss = append(c.rss, float64(res.RSSKiB)/1024)
			}
		}
		for _, c := range append(slices.Clone(rows), viaSSE) {
			logf("round %d/%d: paced, %s", r+1, s.rounds, c.name)
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			res, err := c.paced(ctx)
			cancel()
			if err != nil {
				note(c, "paced", err)
				continue
			}
			c.p50 = append(c.p50, res.P50us)
			c.p99 = append(c.p99, res.P99us)
		}
	}

	var browser *browserResult
	var browserErr error
	if s.browser {
		logf("Chromium: %d rounds of receive (%d messages) and echo (%d)", s.rounds, s.browserFrames, s.echoes)
		browser, browserErr = runBrowser(root, node, nodeErr, feed.URL(), s)
		if browserErr != nil {
			failed = true
			logf("Chromium: %v", browserErr)
		}
	}
	var hooks []hookResult
	if s.hooks {
		hooks = runHooks(root, node, feed.URL(), s.rounds, s.timeout, logf)
		for _, h := range hooks {
			failed = failed || h.err != nil
		}
	}

	// ---- the table ----
	w := &bytes.Buffer{}
	fmt.Fprintf(w, "## `make bench` — %s\n\n", started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s, %d CPUs, %s/%s; load average %s at the start, %s at the end. Go %s, Node %s.\n\n",
		cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, loadStart, loadAvg(), strings.TrimPrefix(runtime.Version(), "go"), nodeVersion(node))
	jf, mf := frameSizes()
	fmt.Fprintf(w, "Feed: `internal/bench/feeder` on 127.0.0.1, every client subscribed to one channel; each message `{\"seq\",\"ts\",\"pad\"}` "+
		"in a %d B JSON frame (%d B MessagePack), every seq checked. Flood: %d messages as fast as the client reads. "+
		"Paced: %d messages at %g/s. Figures are medians of %d rounds; each round runs every client once, in turn. "+
		"Ratios compare figures of this run only.\n\n", jf, mf, s.n, s.pacedN, s.rate, s.rounds)

	fmt.Fprintf(w, "### Receive: each message decoded into `{Seq, Ts}` (Go, Node)\n\n")
	fmt.Fprintf(w, "| client | msgs/s | ÷ @rails/actioncable | latency p50 | latency p99 | peak RSS |\n|---|---|---|---|---|---|\n")
	base := median(official.rates)
	for _, c := range rows {
		name := c.name
		if c.bold {
			name = "**" + name + "**"
		}
		ratio := "—"
		if base > 0 && len(c.rates) > 0 {
			ratio = fmt.Sprintf("%.2f×", median(c.rates)/base)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, kfmt(c.rates), ratio, usfmt(c.p50), usfmt(c.p99), mibfmt(c.rss))
	}
	fmt.Fprintf(w, "\nmsgs/s: the flood, first message to last, in the client's own process. Latency: the paced run, from the feeder's write "+
		"to the message decoded (Raw: read), on the wall clock of this machine. Peak RSS: the client process's own peak (`VmHWM`, as it reports it) over a flood. "+
		"The raw clients do ActionCable's handshake by hand; the cable clients buffer up to 65536 messages per subscription, none dropped.\n\n")
	writeErrs(w, rows)

	if s.browser {
		writeBrowser(w, browser, browserErr, officialVersion)
	}
	for _, h := range hooks {
		fmt.Fprintf(w, "### From `node js/bench/%s` (its own feed and method)\n\n", h.script)
		if h.err != nil {
			fmt.Fprintf(w, "Failed: %v\n\n", h.err)
		}
		if h.out != "" {
			fmt.Fprintf(w, "```\n%s\n```\n\n", strings.TrimSpace(h.out))
		}
	}

	fmt.Fprintf(w, "### The bridge against a direct WebSocket: one message's latency (`sdk/cable`, JSON, paced)\n\n")
	fmt.Fprintf(w, "| path | p50 | p99 |\n|---|---|---|\n")
	fmt.Fprintf(w, "| direct WebSocket to the feed | %s | %s |\n", usfmt(direct.p50), usfmt(direct.p99))
	fmt.Fprintf(w, "| %s (`server/bridge` in-process, HTTP/1.1 on loopback) | %s | %s |\n", viaSSE.name, usfmt(viaSSE.p50), usfmt(viaSSE.p99))
	if len(direct.p50) > 0 && len(viaSSE.p50) > 0 {
		fmt.Fprintf(w, "| **added by the bridge** | **%+.0f µs** | **%+.0f µs** |\n", median(viaSSE.p50)-median(direct.p50), median(viaSSE.p99)-median(direct.p99))
	}
	fmt.Fprintln(w)
	writeErrs(w, []*client{viaSSE})

	fmt.Fprintf(w, "<details><summary>every round</summary>\n\n```\n")
	for _, c := range append(slices.Clone(rows), viaSSE) {
		fmt.Fprintf(w, "%s\n  msgs/s %s\n  p50 µs %s\n  p99 µs %s\n  RSS MiB %s\n", c.name, list(c.rates, 0), list(c.p50, 0), list(c.p99, 0), list(c.rss, 1))
	}
	if browser != nil {
		fmt.Fprintf(w, "Chromium receive msgs/s: native %s, drop-in %s\n", list(browser.Recv.Plain, 0), list(browser.Recv.Cable, 0))
		fmt.Fprintf(w, "Chromium echo p50 ms: native %s, drop-in %s\n", list(pick(browser.Echo.Plain, p50ms), 2), list(pick(browser.Echo.Cable, p50ms), 2))
		fmt.Fprintf(w, "Chromium echo p99 ms: native %s, drop-in %s\n", list(pick(browser.Echo.Plain, p99ms), 2), list(pick(browser.Echo.Cable, p99ms), 2))
	}
	fmt.Fprintf(w, "```\n</details>\n\nMeasured in %s by `go run ./internal/bench/table`.\n", time.Since(started).Round(time.Second))
	stdout.Write(w.Bytes())
	if failed {
		return errors.New("some measurements failed (see the table)")
	}
	return nil
}

func writeErrs(w io.Writer, rows []*client) {
	for _, c := range rows {
		for _, e := range c.errs {
			fmt.Fprintf(w, "- **failed**: %s: %s\n", c.name, e)
		}
	}
}

// runJSON runs a client process, which prints one JSON line.
func runJSON(ctx context.Context, dir, name string, args ...string) (result, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return result{}, fmt.Errorf("%s: %w: %s", filepath.Base(name), err, bytes.TrimSpace(stderr.Bytes()))
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, fmt.Errorf("%s printed %q: %w", filepath.Base(name), out, err)
	}
	return r, nil
}

type echoFigures struct {
	P50Ms  float64 `json:"p50Ms"`
	P99Ms  float64 `json:"p99Ms"`
	MeanMs float64 `json:"meanMs"`
}

func p50ms(e echoFigures) float64 { return e.P50Ms }
func p99ms(e echoFigures) float64 { return e.P99Ms }

func pick(es []echoFigures, f func(echoFigures) float64) []float64 {
	out := make([]float64, len(es))
	for i, e := range es {
		out[i] = f(e)
	}
	return out
}

// browserResult is what js/bench/table-browser.mjs prints.
type browserResult struct {
	Chromium          string  `json:"chromium"`
	ColdLoadMs        float64 `json:"coldLoadMs"`
	WarmInstantiateMs float64 `json:"warmInstantiateMs"`
	WasmBytes         int     `json:"wasmBytes"`
	WasmBrotliBytes   int     `json:"wasmBrotliBytes"`
	Recv              struct {
		Plain []float64 `json:"plain"`
		Cable []float64 `json:"cable"`
	} `json:"recv"`
	Echo struct {
		Plain []echoFigures `json:"plain"`
		Cable []echoFigures `json:"cable"`
	} `json:"echo"`
}

func runBrowser(root, node string, nodeErr error, feedURL string, s settings) (*browserResult, error) {
	if nodeErr != nil {
		return nil, nodeErr
	}
	if _, err := os.Stat(filepath.Join(root, "js", "dist", "cableway.wasm")); err != nil {
		return nil, errors.New("js/dist/cableway.wasm missing: run node js/build.mjs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout*time.Duration(s.rounds+1))
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("js", "bench", "table-browser.mjs"), feedURL,
		strconv.Itoa(s.browserFrames), strconv.Itoa(s.echoes), strconv.Itoa(s.rounds))
	cmd.Dir = root
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("table-browser.mjs: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var r browserResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("table-browser.mjs printed %q: %w", out, err)
	}
	if len(r.Recv.Plain) == 0 || len(r.Recv.Cable) == 0 || len(r.Echo.Plain) == 0 || len(r.Echo.Cable) == 0 {
		return nil, fmt.Errorf("table-browser.mjs printed no rounds: %q", out)
	}
	return &r, nil
}

func writeBrowser(w io.Writer, b *browserResult, err error, officialVersion string) {
	if err != nil {
		fmt.Fprintf(w, "### Browser\n\n- **failed**: %v\n\n", err)
		return
	}
	fmt.Fprintf(w, "### Browser: `@rails/actioncable` %s in headless Chromium %s, native WebSocket against cableway's drop-in\n\n", officialVersion, b.Chromium)
	fmt.Fprintf(w, "| | native | drop-in | drop-in ÷ native |\n|---|---|---|---|\n")
	rp, rc := median(b.Recv.Plain), median(b.Recv.Cable)
	fmt.Fprintf(w, "| receive, msgs/s | %s | %s | %.2f× |\n", kfmt(b.Recv.Plain), kfmt(b.Recv.Cable), rc/rp)
	for _, q := range []struct {
		name string
		f    func(echoFigures) float64
	}{{"echo round trip p50", p50ms}, {"echo round trip p99", p99ms}} {
		p, c := median(pick(b.Echo.Plain, q.f)), median(pick(b.Echo.Cable, q.f))
		fmt.Fprintf(w, "| %s | %.2f ms | %.2f ms | %.2f× |\n", q.name, p, c, c/p)
	}
	fmt.Fprintf(w, "| `cableway.load()`, the first page of a fresh profile (fetch + compile + start of the wasm, served uncached) | — | %.0f ms | |\n", b.ColdLoadMs)
	fmt.Fprintf(w, "| warm instantiate (a new Go instance from the compiled module, median of 5) | — | %.0f ms | |\n", b.WarmInstantiateMs)
	fmt.Fprintf(w, "| `js/dist/cableway.wasm`, raw / brotli (quality 11) | — | %s B / %s B | |\n\n", thousands(b.WasmBytes), thousands(b.WasmBrotliBytes))
	fmt.Fprintf(w, "Receive: the Go feed's flood through `js/test/harness.html`, from the subscription's connection to the last message. "+
		"Echo: round trips in a row, each waiting for the last. The time from ActionCable loading to the first `connected` is "+
		"`js/bench/startup.mjs`'s, below when it exists.\n\n")
}

type hookResult struct {
	script, out string
	err         error
}

// runHooks runs the browser start-up and round-trip scripts of issue #11
// (items 2 and 3) when they exist, and keeps what they print.
// HOOK: js/bench/startup.mjs and js/bench/rtt.mjs are another change's; each
// gets the number of rounds in BENCH_ROUNDS and the feed's URL in
// CABLEWAY_BENCH_FEED (they use their own feed today), and its stdout goes
// into the table as it is.
func runHooks(root, node, feedURL string, rounds int, timeout time.Duration, logf func(string, ...any)) []hookResult {
	var out []hookResult
	for _, script := range []string{"startup.mjs", "rtt.mjs"} {
		path := filepath.Join(root, "js", "bench", script)
		if _, err := os.Stat(path); err != nil {
			logf("no js/bench/%s: skipped", script)
			continue
		}
		logf("running node js/bench/%s", script)
		h := hookResult{script: script}
		if node == "" {
			h.err = errors.New("node not installed")
			out = append(out, h)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
		cmd := exec.CommandContext(ctx, node, path)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CABLEWAY_BENCH_FEED="+feedURL, "BENCH_ROUNDS="+strconv.Itoa(rounds))
		cmd.WaitDelay = 10 * time.Second
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		cancel()
		h.out = string(b)
		if err != nil {
			h.err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		out = append(out, h)
	}
	return out
}

// frameSizes returns the size of one feed message's frame payload in JSON
// and in MessagePack.
func frameSizes() (jsonSize, msgpackSize int) {
	m := &protocol.Message{Identifier: []byte(clients.Identifier), Body: protocol.RawJSON(feeder.Body(feeder.FirstSeq, time.Now().UnixNano()))}
	j, _ := protocol.JSONCodec{}.AppendMessage(nil, m)
	p, _ := protocol.MessagePackCodec{}.AppendMessage(nil, m)
	return len(j), len(p)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func kfmt(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	m := median(xs)
	if m >= 10000 {
		return fmt.Sprintf("%.0fk", m/1000)
	}
	return fmt.Sprintf("%.0f", m)
}

func usfmt(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	m := median(xs)
	if m >= 10000 {
		return fmt.Sprintf("%.1f ms", m/1000)
	}
	return fmt.Sprintf("%.0f µs", m)
}

func mibfmt(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB", median(xs))
}

func list(xs []float64, prec int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', prec, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// thousands writes n with commas: 990,815.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func nodeVersion(node string) string {
	if node == "" {
		return "(not installed)"
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return "(unknown)"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return "unknown"
	}
	return f[0]
}
