//go:build linux

// Command bridgeload measures the Cableway bridge under load, as an
// operator runs it: the cableway binary (built from this checkout's
// server/cmd/cableway, "cableway bridge" at its defaults) in a process of
// its own, in front of a Go feeder upstream (a minimal ActionCable server
// in this process that broadcasts numbered frames
// {"seq","ts","pad":64 B}), with K SSE sessions opened through it for each
// K given:
//
//	go run ./internal/bench/bridgeload -k 100,500,5000
//
// For each K, on a fresh bridge process, it reports:
//
//   - open: the time to create K sessions (POST /sessions: the bridge dials
//     the feeder and answers after its welcome) and then to attach their
//     SSE streams and subscribe (POST /send, until confirm_subscription
//     has come through the stream), -conc at a time;
//   - idle: the bridge process's growth per idle session (subscribed,
//     stream attached, nothing flowing): VmRSS from /proc/PID/status, and
//     heap in use, goroutine stacks and goroutines from the bridge's own
//     GET /metrics (Go runtime figures; heap in use includes garbage not
//     yet collected);
//   - paced: broadcasts at -rate frames/s in total (rate/K broadcasts/s,
//     each to every session) for -paced: frames lost and duplicated,
//     delivered frames/s, p50/p99/max latency (publish to SSE line read),
//     the bridge's CPU per delivered frame (utime+stime from
//     /proc/PID/stat), and this process's (feeder and clients) for scale;
//   - blast: -blast broadcasts published at once, every session's written
//     by the feeder as fast as its socket takes them: lost (frames a
//     session never received: after a reset, the rest of the phase),
//     duplicated, sessions reset (and why), delivered frames/s, bridge CPU
//     per frame, the bridge's peak RSS (VmHWM) and its
//     cableway_bridge_frames_evicted_total.
//
// With -open N (default 1000) it first measures opening N sessions on a
// fresh bridge alone, in each way -open-mode names: "two-step" (POST
// /sessions, then the SSE stream and a subscribe by POST /send),
// "one-request" (GET /sessions/sse?subscribe=…: create, subscribe and
// stream at once) and "direct" (no bridge: WebSockets straight to the
// feeder, the floor of anything that dials an upstream per session). An
// open is done when the client has read the confirmation of its
// subscription; each reports its wall time, the bridge's CPU per session
// (and its system share), its read and write system calls per session
// (/proc/PID/io), and this process's CPU per session. With -profile it
// also writes CPU profiles of the bridge and of this process, and the
// bridge's allocations, over the open phase. Every broadcast frame of every session is checked:
// each session must receive every seq of a phase once, in order. Loss is a
// measurement here, not an error; -fail-on-loss makes it one (exit 1).
//
// Clients come from source addresses 127.0.0.10, .11, … with at most
// -per-ip sessions each, so that the bridge's default per-IP session limit
// (100) holds; SSE clients acknowledge their cursor every -ack (POST
// /sessions/{sid}/ack, as the Go client does). Everything runs on
// loopback, every process started is stopped, and the whole run is
// bounded (about 2 to 3 minutes with the defaults).
//
// -soak D instead holds the one -k K sessions open through one bridge for
// D under a steady broadcast (one every -soak-every to every session; a
// -longpoll share of them long-polling, the rest on SSE), prints a line
// every -interval (RSS, goroutines, descriptors, upstream sockets, frames
// delivered, lost, duplicated, p99 latency) and, once every session is
// closed, checks the bridge is back at its baseline; its verdict and the
// exit status (1 on any failed check) are described in soak.go:
//
//	go run ./internal/bench/bridgeload -soak 10m -k 1000 -longpoll 0.2
//
// -profile DIR runs the bridge instead as this program in its internal
// -serve-bridge mode (the same server/bridge at its defaults, plus a CPU
// profile control) and writes a CPU profile of the paced and of the blast
// phase to DIR, printing the top functions of each.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	ks          []int
	blast       int
	blastTotal  int
	rate        float64
	paced       time.Duration
	pad         int
	open        int
	openModes   []string // "two-step", "one-request", "direct"
	kMode       string   // how the K phases open their sessions: "two-step" or "one-request"
	conc        int
	perIP       int
	ack         time.Duration
	ackWorkers  int
	bridgeBin   string
	bridgeLog   string
	coalesce    bool
	bridgeArgs  []string
	stall       time.Duration
	profileDir  string
	queueSize   int // -serve-bridge and -profile: the bridge's queue in frames (0: default)
	failOnLoss  bool
	serveBridge bool
	listen      string
	upstream    string

	// The soak (soak.go).
	soak      time.Duration // 0: no soak
	soakEvery time.Duration
	interval  time.Duration
	longpoll  float64
	settle    time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("bridgeload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ks := fs.String("k", "100,500,5000", "session counts to measure, comma separated")
	fs.IntVar(&o.blast, "blast", 2000, "broadcasts per session in the blast phase")
	fs.IntVar(&o.blastTotal, "blast-total", 0, "if > 0, cap K×blast at this many frames (fewer broadcasts at large K)")
	fs.Float64Var(&o.rate, "rate", 10000, "paced phase: frames per second in total, over all sessions")
	fs.DurationVar(&o.paced, "paced", 5*time.Second, "paced phase duration")
	fs.IntVar(&o.pad, "pad", 64, "bytes of padding in each broadcast")
	fs.IntVar(&o.open, "open", 1000, "sessions of the open-time phase (0: skip it)")
	modes := fs.String("open-mode", "two-step,one-request,direct", `how the open phase opens sessions, comma separated: "two-step" (POST /sessions, then GET …/sse and POST …/send subscribe), "one-request" (GET /sessions/sse?subscribe=…), "direct" (no bridge: a WebSocket to the feeder, welcome, subscribe, confirmation; the floor of anything that dials an upstream per session)`)
	fs.StringVar(&o.kMode, "k-open-mode", modeTwoStep, `how the K phases open their sessions: "two-step" or "one-request"`)
	fs.IntVar(&o.conc, "conc", 64, "sessions opened concurrently")
	fs.IntVar(&o.perIP, "per-ip", 100, "sessions per client source address (the bridge's --max-sessions-per-ip)")
	fs.DurationVar(&o.ack, "ack", time.Second, "SSE clients acknowledge their cursor this often while it moves (0: never)")
	fs.IntVar(&o.ackWorkers, "ack-workers", 4, "acknowledgements sent at a time (each round of -ack goes through every session)")
	fs.StringVar(&o.bridgeBin, "bridge-bin", "", "a built cableway binary (default: go build ./server/cmd/cableway)")
	fs.StringVar(&o.bridgeLog, "bridge-log", "", "append the bridge processes' logs (stderr) to this file")
	fs.BoolVar(&o.coalesce, "coalesce", true, "the feeder writes a connection's pending frames in one write (up to 64 KiB); false: one write per frame, as Rails does")
	bargs := fs.String("bridge-args", "", `extra flags for "cableway bridge", space separated (e.g. "--queue-size 4096")`)
	fs.DurationVar(&o.stall, "stall", 10*time.Second, "a phase ends when no frame has arrived for this long")
	fs.StringVar(&o.profileDir, "profile", "", "write CPU profiles of the paced and blast phases to this directory (runs the bridge in -serve-bridge mode)")
	fs.IntVar(&o.queueSize, "profile-queue", 0, "with -profile: the profiled bridge's queue size in frames, as --queue-size (0: its default)")
	fs.BoolVar(&o.failOnLoss, "fail-on-loss", false, "exit 1 if any frame was lost or duplicated")
	fs.BoolVar(&o.serveBridge, "serve-bridge", false, "internal: serve server/bridge at its defaults with a CPU profile control (for -profile)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "internal, with -serve-bridge")
	fs.StringVar(&o.upstream, "upstream", "", "internal, with -serve-bridge")
	fs.DurationVar(&o.soak, "soak", 0, "soak for this long instead: one bridge, the one -k sessions held open under a steady broadcast (see -soak-every), a line every -interval, then every session closed and the bridge checked back at its baseline; exit 1 on any failed check")
	fs.DurationVar(&o.soakEvery, "soak-every", time.Second, "soak: one broadcast to every session this often")
	fs.DurationVar(&o.interval, "interval", 30*time.Second, "soak: print a line this often")
	fs.Float64Var(&o.longpoll, "longpoll", 0, "soak: the share of sessions that long-poll instead of reading SSE (0…1)")
	fs.DurationVar(&o.settle, "settle", time.Minute, "soak: how long the bridge may take to go back to its baseline once every session is closed")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.serveBridge {
		return o, nil
	}
	for _, f := range strings.Split(*ks, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			return o, fmt.Errorf("-k: %q is not a positive integer", f)
		}
		o.ks = append(o.ks, k)
	}
	o.bridgeArgs = strings.Fields(*bargs)
	if o.soak != 0 {
		switch {
		case o.soak < 0 || o.soakEvery <= 0 || o.interval <= 0 || o.settle <= 0:
			return o, errors.New("-soak, -soak-every, -interval and -settle must be positive")
		case len(o.ks) != 1:
			return o, fmt.Errorf("-soak takes one session count (-k), not %d", len(o.ks))
		case !(o.longpoll >= 0 && o.longpoll <= 1):
			return o, errors.New("-longpoll must be in 0…1")
		case o.profileDir != "":
			return o, errors.New("-soak cannot be used with -profile")
		case o.stall <= 0 || o.conc < 1 || o.perIP < 1 || o.ackWorkers < 1 || o.pad < 0 || o.pad > 1<<20:
			return o, errors.New("-stall, -conc, -per-ip and -ack-workers must be positive, -pad in 0…1 MiB")
		}
		return o, nil
	}
	if o.kMode != modeTwoStep && o.kMode != modeOneRequest {
		return o, fmt.Errorf("-k-open-mode: %q is neither %q nor %q", o.kMode, modeTwoStep, modeOneRequest)
	}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if m != modeTwoStep && m != modeOneRequest && m != modeDirect {
			return o, fmt.Errorf("-open-mode: %q is not %q, %q or %q", m, modeTwoStep, modeOneRequest, modeDirect)
		}
		o.openModes = append(o.openModes, m)
	}
	switch {
	case o.blast < 0 || o.blastTotal < 0 || o.open < 0:
		return o, errors.New("-blast, -blast-total and -open must not be negative")
	case o.rate <= 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate):
		return o, errors.New("-rate must be positive")
	case o.paced < 0 || o.stall <= 0 || o.ack < 0:
		return o, errors.New("-paced, -stall and -ack must be positive (or 0 for -paced and -ack)")
	case o.pad < 0 || o.pad > 1<<20:
		return o, errors.New("-pad must be in 0…1 MiB")
	case o.queueSize < 0:
		return o, errors.New("-profile-queue must not be negative")
	case o.conc < 1 || o.perIP < 1 || o.ackWorkers < 1:
		return o, errors.New("-conc, -per-ip and -ack-workers must be positive")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bridgeload:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.serveBridge {
		if err := serveBridge(ctx, o.listen, o.upstream, o.queueSize, stderr); err != nil {
			fmt.Fprintln(stderr, "bridgeload -serve-bridge:", err)
			return 1
		}
		return 0
	}
	if o.soak > 0 {
		if err := raiseNoFile(o.ks[0]); err != nil {
			fmt.Fprintln(stderr, "bridgeload:", err)
			return 1
		}
		r, err := soak(ctx, o, stdout, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "bridgeload:", err)
			return 1
		}
		if !r.ok() {
			return 1
		}
		return 0
	}
	lossy, err := bench(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bridgeload:", err)
		return 1
	}
	if lossy && o.failOnLoss {
		fmt.Fprintln(stderr, "bridgeload: frames were lost or duplicated (-fail-on-loss)")
		return 1
	}
	return 0
}

// raiseNoFile lifts the soft file limit to the hard one and checks that
// the descriptors of k sessions fit (two per session, plus some, in each
// process: the bridge inherits the limit). A hard limit below four per
// session (room for the clients' keep-alive and long-poll connections) is
// raised when the process may (root: CAP_SYS_RESOURCE, up to fs.nr_open).
func raiseNoFile(k int) error {
	need := uint64(2*k + 512)
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	var raiseErr error
	if want := uint64(4*k + 1024); r.Max < want {
		up := syscall.Rlimit{Cur: want, Max: want}
		if raiseErr = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); raiseErr == nil {
			r = up
		}
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return err
		}
	}
	if r.Cur < need {
		why := ""
		if raiseErr != nil {
			why = fmt.Sprintf(" (raising the hard limit: %v; it needs CAP_SYS_RESOURCE)", raiseErr)
		}
		return fmt.Errorf("RLIMIT_NOFILE is %d%s; %d sessions need about %d descriptors here and in the bridge (ulimit -Hn)", r.Cur, why, k, need)
	}
	return nil
}

// phase is the figures of one paced or blast phase.
type phase struct {
	broadcasts      int
	expected        uint64 // sessions × broadcasts
	got, lost, dup  uint64
	resets          int
	reconnects      uint64         // streams resumed at their last event id
	ended           map[string]int // why streams ended, by reason
	dur             time.Duration  // publish start to last frame received
	bridgeCPU       time.Duration
	selfCPU         time.Duration
	lat             []int64
	stalled         bool
	evicted         float64 // bridge counter delta (-1: unknown)
	framesIn        float64 // frames the bridge read from upstream (-1: unknown)
	peakRSSKiB      int64
	framesPerSecond float64
}

// kResult is everything measured at one K.
type kResult struct {
	k               int
	create, attach  time.Duration
	idleRSS         float64 // KiB per session
	idleHeap        float64 // KiB per session (-1: unknown)
	idleStack       float64
	idleGoroutines  float64
	paced, blast    phase
	acks, ackFailed uint64
	threads         int64
	blastPerSession int
	bridgeLog       []string // notable bridge log lines, counted
}

func bench(ctx context.Context, o options, stdout, stderr io.Writer) (lossy bool, err error) {
	rs, err := benchResults(ctx, o, stdout, stderr)
	if err != nil {
		return false, err
	}
	for _, r := range rs {
		if r.paced.lost+r.paced.dup+r.blast.lost+r.blast.dup > 0 {
			lossy = true
		}
	}
	return lossy, nil
}

// benchResults runs every phase, prints the report to stdout and returns
// the figures.
func benchResults(ctx context.Context, o options, stdout, stderr io.Writer) ([]kResult, error) {
	maxK := slices.Max(append(slices.Clone(o.ks), o.open))
	if err := raiseNoFile(maxK); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "bridgeload-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	var argv0 []string // the bridge command before --listen/--upstream
	desc := ""
	if o.profileDir != "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, err
		}
		argv0 = []string{self, "-serve-bridge"}
		desc = "server/bridge at defaults in -serve-bridge mode (profiling)"
		if o.queueSize > 0 {
			argv0 = append(argv0, "-profile-queue", strconv.Itoa(o.queueSize))
			desc = fmt.Sprintf("server/bridge with a queue of %d frames in -serve-bridge mode (profiling)", o.queueSize)
		}
		if len(o.bridgeArgs) > 0 {
			return nil, errors.New("-bridge-args cannot be used with -profile")
		}
	} else {
		bin := o.bridgeBin
		if bin == "" {
			fmt.Fprintln(stderr, "building ./server/cmd/cableway …")
			if bin, err = buildBridge(ctx, tmp); err != nil {
				return nil, err
			}
		}
		argv0 = []string{bin, "bridge", "--log-level", "info"}
		desc = "cableway bridge (defaults)"
		if len(o.bridgeArgs) > 0 {
			desc = "cableway bridge " + strings.Join(o.bridgeArgs, " ")
		}
	}
	t0 := time.Now()
	start := time.Now().UTC()

	var opens []openResult
	for _, mode := range o.openModes {
		if o.open == 0 {
			break
		}
		fmt.Fprintf(stderr, "open: %d sessions, %s …\n", o.open, mode)
		r, err := measureOpen(ctx, o, argv0, t0, mode, stderr)
		if err != nil {
			return nil, fmt.Errorf("open %d, %s: %w", o.open, mode, err)
		}
		fmt.Fprintf(stderr, "open %s: %v\n", mode, r.total().Round(time.Millisecond))
		opens = append(opens, r)
	}
	var results []kResult
	for _, k := range o.ks {
		fmt.Fprintf(stderr, "K=%d …\n", k)
		r, err := measureK(ctx, o, argv0, t0, k, stderr)
		if err != nil {
			return nil, fmt.Errorf("K=%d: %w", k, err)
		}
		results = append(results, r)
	}
	report(stdout, o, desc, start, time.Since(t0), opens, results)
	return results, nil
}

// world is one fresh feeder and bridge process.
type world struct {
	f *feeder
	b *bridgeProc
}

func newWorld(ctx context.Context, o options, argv0 []string, t0 time.Time) (*world, error) {
	f, err := newFeeder(t0, o.pad, o.coalesce)
	if err != nil {
		return nil, err
	}
	argv := append(slices.Clone(argv0), "--listen", "127.0.0.1:0", "--upstream", f.url)
	if len(argv0) > 1 && argv0[1] == "-serve-bridge" {
		argv = append(slices.Clone(argv0), "-listen", "127.0.0.1:0", "-upstream", f.url)
	}
	argv = append(argv, o.bridgeArgs...)
	b, err := startBridge(ctx, argv, o.bridgeLog)
	if err != nil {
		f.close()
		return nil, err
	}
	return &world{f: f, b: b}, nil
}

func (w *world) close() {
	w.b.stop()
	w.f.close()
}

// Ways of opening a session (-open-mode).
const (
	modeTwoStep    = "two-step"
	modeOneRequest = "one-request"
	modeDirect     = "direct" // no bridge: WebSockets straight to the feeder
)

// openResult is the figures of the open phase.
type openResult struct {
	mode               string
	create, attach     time.Duration // the two steps (attach is 0 with -one-request)
	bridgeCPU, selfCPU time.Duration // CPU of the bridge process and of this one (feeder and clients) during both
	bridgeSys          time.Duration // the system (kernel) part of bridgeCPU
	reads, writes      int64         // the bridge's read and write system calls during both (-1: unknown)
}

func (r openResult) total() time.Duration { return r.create + r.attach }

func measureOpen(ctx context.Context, o options, argv0 []string, t0 time.Time, mode string, stderr io.Writer) (r openResult, err error) {
	r.mode = mode
	w, err := newWorld(ctx, o, argv0, t0)
	if err != nil {
		return r, err
	}
	defer w.close()
	c, err := newClient(w.b.base, t0, o.perIP, o.open)
	if err != nil {
		return r, err
	}
	defer c.close()
	sessions := make([]*session, o.open)
	for i := range sessions {
		sessions[i] = c.newSession(i)
	}
	defer closeAll(sessions)
	if o.profileDir != "" {
		if err := fetchAllocs(w.b, filepath.Join(o.profileDir, fmt.Sprintf("open-%s-%d-allocs-before.pprof", mode, o.open))); err != nil {
			return r, err
		}
		if err := profileStart(w.b); err != nil {
			return r, err
		}
	}
	u0, s0, err := w.b.cpuSplit()
	if err != nil {
		return r, err
	}
	var selfProf bytes.Buffer
	if o.profileDir != "" {
		// This process too: the clients and the feeder.
		if err := pprof.StartCPUProfile(&selfProf); err != nil {
			return r, err
		}
	}
	r0, w0, ioErr := w.b.procIO()
	self0 := selfCPU()
	switch mode {
	case modeOneRequest:
		r.create, err = openOneRequest(ctx, sessions, o.conc, (*session).openOne)
	case modeDirect:
		r.create, err = openOneRequest(ctx, sessions, o.conc, func(s *session, ctx context.Context) error { return s.openDirect(ctx, w.f.url) })
	default:
		r.create, r.attach, err = openSessions(ctx, sessions, o.conc)
	}
	if err != nil {
		return r, fmt.Errorf("%w\nbridge log tail:\n%s", err, w.b.stderrTail)
	}
	u1, s1, err := w.b.cpuSplit()
	if err != nil {
		return r, err
	}
	r.bridgeCPU, r.bridgeSys, r.selfCPU = u1+s1-u0-s0, s1-s0, selfCPU()-self0
	r.reads, r.writes = -1, -1
	if r1, w1, err := w.b.procIO(); err == nil && ioErr == nil {
		r.reads, r.writes = r1-r0, w1-w0
	}
	if o.profileDir != "" {
		pprof.StopCPUProfile()
		path := filepath.Join(o.profileDir, fmt.Sprintf("open-%s-%d-bench.pprof", mode, o.open))
		if err := os.WriteFile(path, selfProf.Bytes(), 0o644); err != nil {
			return r, err
		}
		fmt.Fprintf(stderr, "== %s: the bench process (feeder and clients)\n", path)
		if err := profileStop(w.b, filepath.Join(o.profileDir, fmt.Sprintf("open-%s-%d.pprof", mode, o.open)), stderr); err != nil {
			return r, err
		}
		if err := fetchAllocs(w.b, filepath.Join(o.profileDir, fmt.Sprintf("open-%s-%d-allocs.pprof", mode, o.open))); err != nil {
			return r, err
		}
	}
	return r, nil
}

func closeAll(sessions []*session) {
	for _, s := range sessions {
		s.close()
	}
}

// openSessions creates every session, then attaches and subscribes every
// one; it returns the time of each step.
func openSessions(ctx context.Context, sessions []*session, conc int) (create, attach time.Duration, err error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(len(sessions))*30*time.Millisecond)
	defer cancel()
	st := time.Now()
	if err := openAll(octx, sessions, conc, func(ctx context.Context, s *session) error { return s.create(ctx) }); err != nil {
		return 0, 0, err
	}
	create = time.Since(st)
	st = time.Now()
	err = openAll(octx, sessions, conc, func(ctx context.Context, s *session) error {
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return s.attach(actx)
	})
	return create, time.Since(st), err
}

// openOneRequest opens every session with a single request each
// (openOne) and returns the time it took.
func openOneRequest(ctx context.Context, sessions []*session, conc int, open func(*session, context.Context) error) (time.Duration, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(len(sessions))*30*time.Millisecond)
	defer cancel()
	st := time.Now()
	err := openAll(octx, sessions, conc, func(ctx context.Context, s *session) error {
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return open(s, actx)
	})
	return time.Since(st), err
}

// memSample is the bridge's memory figures at one moment.
type memSample struct {
	rssKiB                  int64
	heap, stack, goroutines float64 // -1 when the bridge has no metrics
}

func sampleMem(b *bridgeProc) (memSample, error) {
	st, err := b.procStatus()
	if err != nil {
		return memSample{}, err
	}
	m, err := b.metrics("go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines")
	if err != nil {
		return memSample{}, err
	}
	get := func(k string) float64 {
		if v, ok := m[k]; ok {
			return v
		}
		return -1
	}
	return memSample{rssKiB: st["VmRSS"], heap: get("go_memstats_heap_inuse_bytes"),
		stack: get("go_memstats_stack_inuse_bytes"), goroutines: get("go_goroutines")}, nil
}

func measureK(ctx context.Context, o options, argv0 []string, t0 time.Time, k int, stderr io.Writer) (kResult, error) {
	r := kResult{k: k}
	w, err := newWorld(ctx, o, argv0, t0)
	if err != nil {
		return r, err
	}
	defer w.close()
	c, err := newClient(w.b.base, t0, o.perIP, k)
	if err != nil {
		return r, err
	}
	defer c.close()

	w.b.metrics() // the first scrape allocates; measure from the second
	base, err := sampleMem(w.b)
	if err != nil {
		return r, err
	}
	sessions := make([]*session, k)
	for i := range sessions {
		sessions[i] = c.newSession(i)
	}
	defer closeAll(sessions)
	if o.kMode == modeOneRequest {
		r.create, err = openOneRequest(ctx, sessions, o.conc, (*session).openOne)
	} else {
		r.create, r.attach, err = openSessions(ctx, sessions, o.conc)
	}
	if err != nil {
		return r, fmt.Errorf("%w\nbridge log tail:\n%s", err, w.b.stderrTail)
	}
	if n := w.f.subscribers(); n != k {
		return r, fmt.Errorf("the feeder has %d subscribed connections, want %d", n, k)
	}
	fmt.Fprintf(stderr, "K=%d: opened (create %v, attach+subscribe %v)\n", k, r.create.Round(time.Millisecond), r.attach.Round(time.Millisecond))

	// Idle: the welcome and the confirmation acknowledged (as a client does
	// within -ack), then no connection but the SSE streams: the HTTP
	// clients' idle keep-alive connections are closed, and the bridge is
	// given a moment to end their goroutines.
	if o.ack > 0 {
		ackAll(ctx, sessions)
	}
	c.close()
	if err := sleepCtx(ctx, time.Second); err != nil {
		return r, err
	}
	idle, err := sampleMem(w.b)
	if err != nil {
		return r, err
	}
	per := func(a, b float64) float64 {
		if a < 0 || b < 0 {
			return -1
		}
		return (b - a) / float64(k)
	}
	r.idleRSS = float64(idle.rssKiB-base.rssKiB) / float64(k)
	r.idleHeap = per(base.heap, idle.heap) / 1024
	r.idleStack = per(base.stack, idle.stack) / 1024
	r.idleGoroutines = per(base.goroutines, idle.goroutines)
	if r.idleHeap < 0 && base.heap < 0 {
		r.idleHeap, r.idleStack = -1, -1
	}
	if st, err := w.b.procStatus(); err == nil {
		r.threads = st["Threads"]
	}

	actx, stopAcks := context.WithCancel(ctx)
	ackDone := make(chan struct{})
	go func() {
		r.acks, r.ackFailed = acker(actx, sessions, o.ack, o.ackWorkers)
		close(ackDone)
	}()
	var stopOnce sync.Once
	stopAcker := func() { stopOnce.Do(func() { stopAcks(); <-ackDone }) }
	defer stopAcker()

	// Warm-up, unmeasured.
	if _, err := runPhase(ctx, o, w, c, sessions, 3, false, nil); err != nil {
		return r, err
	}
	if o.paced > 0 {
		n := max(1, int(math.Round(o.rate*o.paced.Seconds()/float64(k))))
		r.paced, err = runPhase(ctx, o, w, c, sessions, n, true, func(n int) { pace(ctx, w.f, n, o.rate/float64(k)) })
		if err != nil {
			return r, err
		}
		if o.profileDir != "" {
			if err := profileStop(w.b, filepath.Join(o.profileDir, fmt.Sprintf("paced-k%d.pprof", k)), stderr); err != nil {
				return r, err
			}
		}
		fmt.Fprintf(stderr, "K=%d: paced done: %d/%d frames, %d lost\n", k, r.paced.got, r.paced.expected, r.paced.lost)
	}
	if o.blast > 0 {
		n := o.blast
		if o.blastTotal > 0 {
			n = max(1, min(n, o.blastTotal/k))
		}
		r.blastPerSession = n
		r.blast, err = runPhase(ctx, o, w, c, sessions, n, false, func(n int) { w.f.publish(n) })
		if err != nil {
			return r, err
		}
		if o.profileDir != "" {
			if err := profileStop(w.b, filepath.Join(o.profileDir, fmt.Sprintf("blast-k%d.pprof", k)), stderr); err != nil {
				return r, err
			}
		}
		fmt.Fprintf(stderr, "K=%d: blast done: %d/%d frames, %d lost, %d resets\n", k, r.blast.got, r.blast.expected, r.blast.lost, r.blast.resets)
	}
	stopAcker()
	r.bridgeLog = w.b.logSummary()
	return r, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pace publishes n broadcasts at perSecond.
func pace(ctx context.Context, f *feeder, n int, perSecond float64) {
	interval := max(time.Millisecond, time.Duration(float64(time.Second)/perSecond))
	t := time.NewTicker(interval)
	defer t.Stop()
	start := time.Now()
	sent := 0
	for sent < n {
		due := min(n, int(time.Since(start).Seconds()*perSecond)+1)
		if due > sent {
			f.publish(due - sent)
			sent = due
		}
		if sent == n {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runPhase publishes n broadcasts with publish (nil: at once), waits until
// every live session has the last one (or no frame came for -stall), and
// returns the figures. With measure false it is a warm-up.
func runPhase(ctx context.Context, o options, w *world, c *client, sessions []*session, n int, record bool, publish func(int)) (phase, error) {
	p := phase{broadcasts: n, ended: map[string]int{}, evicted: -1}
	measure := publish != nil
	if publish == nil {
		publish = w.f.publish
	}
	from := w.f.published.Load() + 1
	to := from + uint64(n) - 1
	for _, s := range sessions {
		s.startPhase(from, to, record)
	}
	ev0, _ := w.b.metrics("cableway_bridge_frames_evicted_total", "cableway_bridge_frames_in_total")
	if measure && o.profileDir != "" {
		if err := profileStart(w.b); err != nil {
			return p, err
		}
	}
	cpu0, err := w.b.cpu()
	if err != nil {
		return p, err
	}
	self0 := selfCPU()
	pubStart := int64(time.Since(c.t0))
	publish(n)
	if ctx.Err() != nil {
		return p, ctx.Err()
	}
	p.stalled = waitSettled(ctx, c, sessions, o.stall)
	if ctx.Err() != nil {
		return p, ctx.Err()
	}
	cpu1, err := w.b.cpu()
	if err != nil {
		return p, err
	}
	p.bridgeCPU, p.selfCPU = cpu1-cpu0, selfCPU()-self0
	p.framesIn = -1
	if ev1, err := w.b.metrics("cableway_bridge_frames_evicted_total", "cableway_bridge_frames_in_total"); err == nil {
		if a, ok := ev0["cableway_bridge_frames_evicted_total"]; ok {
			p.evicted = ev1["cableway_bridge_frames_evicted_total"] - a
		}
		if a, ok := ev0["cableway_bridge_frames_in_total"]; ok {
			p.framesIn = ev1["cableway_bridge_frames_in_total"] - a
		}
	}
	if st, err := w.b.procStatus(); err == nil {
		p.peakRSSKiB = st["VmHWM"]
	}
	var last int64
	for _, s := range sessions {
		res := s.result()
		p.got += res.got
		p.lost += res.lost
		p.dup += res.dup
		p.reconnects += res.reconnects
		p.lat = append(p.lat, res.lat...)
		last = max(last, res.lastRecv)
		if res.dead != "" {
			reason := res.dead
			if strings.HasPrefix(reason, "reset") {
				p.resets++
			}
			p.ended[reason]++
		}
	}
	p.expected = uint64(n) * uint64(len(sessions))
	p.dur = time.Duration(last - pubStart)
	if p.dur > 0 {
		p.framesPerSecond = float64(p.got) / p.dur.Seconds()
	}
	return p, nil
}

// waitSettled waits until every session has its phase's last broadcast or
// its stream is over; it gives up (true) when no frame has arrived for
// stall.
func waitSettled(ctx context.Context, c *client, sessions []*session, stall time.Duration) (stalled bool) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	lastCount, lastMove := c.frames.Load(), time.Now()
	i := 0
	for {
		for i < len(sessions) && sessions[i].settled() {
			i++
		}
		if i == len(sessions) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if n := c.frames.Load(); n != lastCount {
			lastCount, lastMove = n, time.Now()
		} else if time.Since(lastMove) > stall {
			return true
		}
	}
}

// percentile of sorted samples (nearest rank).
func percentile(sorted []int64, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return time.Duration(sorted[max(0, min(i, len(sorted)-1))])
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func gitRevision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func report(w io.Writer, o options, desc string, start time.Time, took time.Duration, opens []openResult, rs []kResult) {
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(w, "bridgeload %s  nproc=%d  cpu=%q  %s  git=%s  load=%s  took=%v\n",
		start.Format(time.RFC3339), runtime.NumCPU(), cpuModel(), runtime.Version(), gitRevision(), load, took.Round(time.Second))
	fmt.Fprintf(w, "bridge: %s, its own process; upstream: Go feeder in the bench process, frames {\"seq\",\"ts\",\"pad\":%d B}\n", desc, o.pad)
	ack := "never"
	if o.ack > 0 {
		ack = "every " + o.ack.String()
	}
	coalesce := "coalesced into writes of up to 64 KiB per connection"
	if !o.coalesce {
		coalesce = "one write per frame"
	}
	fmt.Fprintf(w, "feeder writes: %s; paced: %.0f frames/s in total for %v; blast: all broadcasts published at once\n", coalesce, o.rate, o.paced)
	fmt.Fprintf(w, "clients: SSE (HTTP/1.1, raw reads, every seq checked) from 127.0.0.10+ at ≤%d sessions per address; ack %s; open concurrency %d; K phases open %s\n", o.perIP, ack, o.conc, o.kMode)
	if len(opens) > 0 {
		fmt.Fprintf(w, "open limits: the bridge's per-client ones (%d sessions and a creation burst of 100 at 10/s per address, unless -bridge-args says otherwise) never refuse or delay a create here: the %d sessions come from %d source addresses, as a load test from many clients would (a refusal fails the run)\n",
			o.perIP, o.open, (o.open+o.perIP-1)/o.perIP)
	}
	for _, open := range opens {
		steps := "GET /sessions/sse?subscribe=…, until the confirmation is read from the stream"
		switch open.mode {
		case modeDirect:
			steps = "no bridge: WebSocket to the feeder, welcome, subscribe, confirmation; the bridge process idles"
		case modeTwoStep:
			steps = fmt.Sprintf("create %.3f s + attach SSE and subscribe %.3f s", open.create.Seconds(), open.attach.Seconds())
		}
		n := float64(o.open)
		fmt.Fprintf(w, "open %d sessions, %s: %.3f s (%s); per session: bridge CPU %.0f µs (%.0f %% system), %.1f reads + %.1f writes (syscalls); bench CPU (feeder+clients) %.0f µs\n",
			o.open, open.mode, open.total().Seconds(), steps,
			float64(open.bridgeCPU.Microseconds())/n, 100*open.bridgeSys.Seconds()/max(open.bridgeCPU.Seconds(), 1e-9), float64(open.reads)/n, float64(open.writes)/n, float64(open.selfCPU.Microseconds())/n)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	row := func(name string, f func(r kResult) string) {
		fmt.Fprintf(tw, "%s", name)
		for _, r := range rs {
			fmt.Fprintf(tw, "\t %s", f(r))
		}
		fmt.Fprintln(tw, "\t")
	}
	opt := func(v float64, format string) string {
		if v < 0 {
			return "n/a"
		}
		return fmt.Sprintf(format, v)
	}
	us := func(d time.Duration, frames uint64) string {
		if frames == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(d.Microseconds())/float64(frames))
	}
	lossy := func(p phase) string {
		s := fmt.Sprintf("%d / %d of %d", p.lost, p.dup, p.expected)
		if p.stalled {
			s += " (stalled)"
		}
		return s
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	for _, r := range rs {
		slices.Sort(r.paced.lat)
	}
	row("K (sessions)", func(r kResult) string { return strconv.Itoa(r.k) })
	row("open: create / attach+subscribe s", func(r kResult) string {
		return fmt.Sprintf("%.2f / %.2f", r.create.Seconds(), r.attach.Seconds())
	})
	row("idle KiB/session: RSS", func(r kResult) string { return fmt.Sprintf("%.1f", r.idleRSS) })
	row("idle KiB/session: heap in use / stacks", func(r kResult) string {
		return opt(r.idleHeap, "%.1f") + " / " + opt(r.idleStack, "%.1f")
	})
	row("idle goroutines/session", func(r kResult) string { return opt(r.idleGoroutines, "%.2f") })
	row("bridge OS threads (idle)", func(r kResult) string { return strconv.FormatInt(r.threads, 10) })
	if o.paced > 0 {
		row("paced: broadcasts × sessions", func(r kResult) string { return fmt.Sprintf("%d × %d", r.paced.broadcasts, r.k) })
		row("paced: lost / dup", func(r kResult) string { return lossy(r.paced) })
		row("paced: sessions reset / streams resumed", func(r kResult) string {
			return fmt.Sprintf("%d / %d", r.paced.resets, r.paced.reconnects)
		})
		row("paced: delivered frames/s", func(r kResult) string { return fmt.Sprintf("%.0f", r.paced.framesPerSecond) })
		row("paced: latency p50 / p99 / max ms", func(r kResult) string {
			l := r.paced.lat
			return ms(percentile(l, 0.5)) + " / " + ms(percentile(l, 0.99)) + " / " + ms(percentile(l, 1))
		})
		row("paced: bridge CPU µs/frame", func(r kResult) string { return us(r.paced.bridgeCPU, r.paced.got) })
		row("paced: bench CPU µs/frame (feeder+clients)", func(r kResult) string { return us(r.paced.selfCPU, r.paced.got) })
	}
	if o.blast > 0 {
		row("blast: broadcasts × sessions", func(r kResult) string { return fmt.Sprintf("%d × %d", r.blastPerSession, r.k) })
		row("blast: lost / dup", func(r kResult) string { return lossy(r.blast) })
		row("blast: sessions reset / streams resumed", func(r kResult) string {
			return fmt.Sprintf("%d / %d", r.blast.resets, r.blast.reconnects)
		})
		row("blast: bridge frames_evicted_total", func(r kResult) string { return opt(r.blast.evicted, "%.0f") })
		row("blast: delivered frames/s", func(r kResult) string { return fmt.Sprintf("%.0f", r.blast.framesPerSecond) })
		row("blast: duration s", func(r kResult) string { return fmt.Sprintf("%.2f", r.blast.dur.Seconds()) })
		row("blast: bridge CPU µs/frame delivered", func(r kResult) string { return us(r.blast.bridgeCPU, r.blast.got) })
		row("blast: bridge CPU µs/frame read upstream", func(r kResult) string {
			if r.blast.framesIn < 0 {
				return "n/a"
			}
			return us(r.blast.bridgeCPU, uint64(r.blast.framesIn))
		})
		row("blast: bench CPU µs/frame (feeder+clients)", func(r kResult) string { return us(r.blast.selfCPU, r.blast.got) })
		row("bridge peak RSS MiB (VmHWM)", func(r kResult) string { return fmt.Sprintf("%.0f", float64(r.blast.peakRSSKiB)/1024) })
	}
	row("acks sent / failed", func(r kResult) string { return fmt.Sprintf("%d / %d", r.acks, r.ackFailed) })
	tw.Flush()
	for _, r := range rs {
		for i, l := range r.bridgeLog {
			if i == 8 {
				fmt.Fprintf(w, "K=%d bridge log: … %d more kinds\n", r.k, len(r.bridgeLog)-i)
				break
			}
			fmt.Fprintf(w, "K=%d bridge log: %s\n", r.k, l)
		}
		for name, p := range map[string]phase{"paced": r.paced, "blast": r.blast} {
			if len(p.ended) == 0 {
				continue
			}
			reasons := make([]string, 0, len(p.ended))
			for why := range p.ended {
				reasons = append(reasons, why)
			}
			sort.Strings(reasons)
			for _, why := range reasons {
				fmt.Fprintf(w, "K=%d %s: %d streams ended: %s\n", r.k, name, p.ended[why], why)
			}
		}
	}
}
