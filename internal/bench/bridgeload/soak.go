//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The soak (-soak D): K sessions held open through one bridge process for
// D under a steady broadcast (one every -soak-every, to every session),
// a -longpoll share of them long-polling and the rest on SSE. It prints a
// line every -interval and, at the end, closes every session and checks
// that the bridge goes back to its baseline. Its verdict:
//
//   - delivery complete: every session received every broadcast published
//     while it was open, once and in order (0 lost, 0 duplicated), and no
//     stream ended;
//   - RSS flat: the bridge's VmRSS, sampled every second while the
//     broadcast runs, the first third left out as warm-up: the mean of the
//     last third is within ±10 % of the mean of the second third (or
//     within 4 MiB: the Go heap's step from one GC cycle to the next, more
//     than 10 % of a bridge with a few hundred sessions);
//   - back to baseline: after every session is closed (its stream, then
//     DELETE /sessions/{sid}) and the clients' keep-alive connections too,
//     within -settle the bridge's goroutines (go_goroutines) and open
//     descriptors (/proc/PID/fd) are at most their baseline, and it holds
//     no upstream connection (the feeder's count while waiting, then the
//     bridge's sockets to the feeder in /proc/PID/net/tcp) and no session. The baseline is taken on the
//     fresh bridge after a warm-up of a few sessions opened and closed (so
//     that what the first session starts for good is in it).

// soakResult is what the soak found.
type soakResult struct {
	k, polling       int
	from, to         uint64 // broadcasts from … to
	expected         uint64 // Σ over sessions of to-from+1
	got, lost, dup   uint64
	dead             map[string]int // streams that ended, by reason
	stalled          bool
	rssA, rssB       float64 // KiB, means of the second and last thirds
	rssN             int     // samples
	base, after      procSample
	settled          bool
	settleTook       time.Duration
	endFailed        int // DELETEs that failed
	acks, ackFailed  uint64
	p99, max         time.Duration
	lines            int
	bridgeLog        []string
	broadcastsPerSec float64
	openTook         time.Duration
	upstreamProc     int // the bridge's sockets to the feeder at the end, from /proc/PID/net/tcp
	createRetries    int64
}

// rssFloorKiB is the least growth the flatness rule counts: the Go
// runtime's heap moves by a few MiB from one GC cycle to the next, which
// is more than 10 % of a bridge holding a few hundred sessions.
const rssFloorKiB = 4 << 10

// rssWithin reports whether b is within tol of a, or within rssFloorKiB.
func rssWithin(a, b, tol float64) bool {
	return a > 0 && math.Abs(b-a) <= max(tol*a, rssFloorKiB)
}

// rssFlat applies the flatness rule to samples (KiB) taken at a steady
// rate: the first third is warm-up; the mean of the last third must be
// within tol (0.10) of the mean of the second third, or within 4 MiB. It
// needs 3 samples.
func rssFlat(samples []int64, tol float64) (a, b float64, ok bool) {
	n := len(samples) / 3
	if n == 0 {
		return 0, 0, false
	}
	mean := func(s []int64) float64 {
		sum := 0.0
		for _, v := range s {
			sum += float64(v)
		}
		return sum / float64(len(s))
	}
	a, b = mean(samples[n:2*n]), mean(samples[len(samples)-n:])
	return a, b, rssWithin(a, b, tol)
}

// atBaseline reports whether the bridge is back to its baseline (see the
// rule above).
func atBaseline(base, now procSample) bool {
	return now.goroutines >= 0 && now.goroutines <= base.goroutines && now.fds <= base.fds &&
		now.upstream == 0 && now.sessions == 0
}

func (r soakResult) deliveryOK() bool {
	return r.lost == 0 && r.dup == 0 && len(r.dead) == 0 && !r.stalled && r.got == r.expected
}

func (r soakResult) rssOK() bool {
	return r.rssN >= 3 && rssWithin(r.rssA, r.rssB, 0.10)
}

func (r soakResult) ok() bool { return r.deliveryOK() && r.rssOK() && r.settled && r.endFailed == 0 }

// procSample is the bridge process's state at one moment.
type procSample struct {
	rssKiB     int64
	goroutines float64 // go_goroutines (-1: no metrics)
	sessions   float64 // cableway_bridge_sessions (-1: no metrics)
	fds        int
	upstream   int // the feeder's open connections from the bridge
}

func (p procSample) String() string {
	return fmt.Sprintf("rss %.1f MiB, %.0f goroutines, %d fds, %d upstream sockets, %.0f sessions",
		float64(p.rssKiB)/1024, p.goroutines, p.fds, p.upstream, p.sessions)
}

// sample reads the bridge's RSS and descriptors (/proc), its goroutines
// and sessions (GET /metrics), and takes upstream, the feeder's count of
// its open connections: a socket the bridge leaked would hold its
// connection open. (Reading /proc/PID/net/tcp instead costs seconds of
// kernel time at 9k sessions, where it lists some 40 000 sockets: it is
// read once, at the end; see upstreamSockets.)
func (p *bridgeProc) sample(upstream func() int) (procSample, error) {
	var s procSample
	st, err := p.procStatus()
	if err != nil {
		return s, err
	}
	s.rssKiB = st["VmRSS"]
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	s.upstream = upstream()
	m, err := p.metrics("go_goroutines", "cableway_bridge_sessions")
	if err != nil {
		return s, err
	}
	s.goroutines, s.sessions = -1, -1
	if v, ok := m["go_goroutines"]; ok {
		s.goroutines = v
	}
	if v, ok := m["cableway_bridge_sessions"]; ok {
		s.sessions = v
	}
	return s, nil
}

// upstreamSockets counts the TCP sockets among the bridge's descriptors
// whose remote end is addr.
func (p *bridgeProc) upstreamSockets(addr string) (int, error) {
	inodes, err := p.socketInodes()
	if err != nil {
		return 0, err
	}
	return p.socketsTo(addr, inodes.sockets)
}

type fdSet struct {
	fds     int
	sockets map[string]bool // socket inodes
}

// socketInodes counts the process's open descriptors and collects the
// inodes of its sockets.
func (p *bridgeProc) socketInodes() (fdSet, error) {
	dir := fmt.Sprintf("/proc/%d/fd", p.pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fdSet{}, err
	}
	set := fdSet{fds: len(ents), sockets: map[string]bool{}}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			set.sockets[strings.TrimSuffix(in, "]")] = true
		}
	}
	return set, nil
}

// socketsTo counts the TCP sockets among inodes whose remote end is addr
// (IPv4 "a.b.c.d:port"), from /proc/PID/net/tcp.
func (p *bridgeProc) socketsTo(addr string, inodes map[string]bool) (int, error) {
	want, err := procNetAddr(addr)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", p.pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return countSockets(f, want, inodes)
}

// countSockets counts the lines of a /proc/net/tcp table whose
// rem_address is want and whose inode is in inodes.
func countSockets(r io.Reader, want string, inodes map[string]bool) (int, error) {
	n := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[0] == "sl" {
			continue
		}
		if f[2] == want && inodes[f[9]] {
			n++
		}
	}
	return n, sc.Err()
}

// procNetAddr writes "127.0.0.1:8080" as /proc/net/tcp does:
// "0100007F:1F90" (the address in host order on little-endian machines).
func procNetAddr(addr string) (string, error) {
	host, port, ok := strings.Cut(addr, ":")
	pn, err := strconv.ParseUint(port, 10, 16)
	parts := strings.Split(host, ".")
	if !ok || err != nil || len(parts) != 4 {
		return "", fmt.Errorf("not an IPv4 address and port: %q", addr)
	}
	var ip [4]byte
	for i, s := range parts {
		v, err := strconv.ParseUint(s, 10, 8)
		if err != nil {
			return "", fmt.Errorf("not an IPv4 address and port: %q", addr)
		}
		ip[i] = byte(v)
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], pn), nil
}

// latHist is a histogram of latencies in buckets of 1/8 of a power of
// two (12 % wide), safe for concurrent use.
type latHist struct {
	b [61 * 8]atomic.Uint64 // up to math.MaxInt64
}

func latBucket(ns int64) int {
	if ns < 8 {
		return int(max(ns, 0))
	}
	l := bits.Len64(uint64(ns)) // ns in [2^(l-1), 2^l)
	return (l-3)*8 + int(uint64(ns)>>(l-4)&7)
}

// latUpper is the largest value of bucket i.
func latUpper(i int) time.Duration {
	if i < 8 {
		return time.Duration(i)
	}
	l := i/8 + 3
	lo := uint64(8|i%8) << (l - 4)
	return time.Duration(lo + 1<<(l-4) - 1)
}

func (h *latHist) add(ns int64) { h.b[latBucket(ns)].Add(1) }

func (h *latHist) snapshot() []uint64 {
	out := make([]uint64, len(h.b))
	for i := range h.b {
		out[i] = h.b[i].Load()
	}
	return out
}

// quantile of the counts of now minus those of before (nil: none), as
// the upper bound of its bucket; 0 without samples.
func quantile(now, before []uint64, q float64) time.Duration {
	var total uint64
	d := make([]uint64, len(now))
	for i := range now {
		d[i] = now[i]
		if before != nil {
			d[i] -= before[i]
		}
		total += d[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var c uint64
	for i, v := range d {
		if c += v; c >= max(rank, 1) {
			return latUpper(i)
		}
	}
	return latUpper(len(d) - 1)
}

// soakWarmup is the sessions opened and closed before the baseline.
const soakWarmup = 5

// soak runs the soak (see above) and prints its lines and verdict.
func soak(ctx context.Context, o options, stdout, stderr io.Writer) (soakResult, error) {
	k := o.ks[0]
	r := soakResult{k: k, dead: map[string]int{}}
	start := time.Now().UTC()
	tmp, err := os.MkdirTemp("", "bridgeload-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	bin := o.bridgeBin
	if bin == "" {
		fmt.Fprintln(stderr, "building ./server/cmd/cableway …")
		if bin, err = buildBridge(ctx, tmp); err != nil {
			return r, err
		}
	}
	argv0 := []string{bin, "bridge", "--log-level", "info"}
	t0 := time.Now()
	w, err := newWorld(ctx, o, argv0, t0)
	if err != nil {
		return r, err
	}
	defer w.close()
	upAddr := strings.TrimSuffix(strings.TrimPrefix(w.f.url, "ws://"), "/cable")

	// One source address more than K needs: the warm-up's.
	nsrc := (k + o.perIP - 1) / o.perIP
	c, err := newClient(w.b.base, t0, o.perIP, (nsrc+1)*o.perIP)
	if err != nil {
		return r, err
	}
	defer c.close()
	c.hist = &latHist{}
	r.polling = int(math.Round(o.longpoll * float64(k)))

	// Warm-up: a few sessions of each kind opened, given a broadcast,
	// closed; then the baseline, once the bridge has settled.
	warm := make([]*session, soakWarmup)
	for i := range warm {
		warm[i] = c.newSession(nsrc*o.perIP + i)
		warm[i].poll = r.polling > 0 && i%2 == 1
	}
	var retries atomic.Int64
	if err := openSoak(ctx, warm, o.conc, &retries); err != nil {
		return r, fmt.Errorf("warm-up: %w\nbridge log tail:\n%s", err, w.b.stderrTail)
	}
	for _, s := range warm {
		s.startPhase(w.f.published.Load()+1, w.f.published.Load()+1, false)
	}
	w.f.publish(1)
	if waitSettled(ctx, c, warm, o.stall) {
		return r, errors.New("warm-up: the broadcast did not come through")
	}
	if n := soakClose(ctx, warm, o.conc); n > 0 {
		return r, fmt.Errorf("warm-up: %d sessions could not be deleted", n)
	}
	c.close()
	upstream := w.f.openConns
	base, ok := settle(ctx, w.b, upstream, 15*time.Second, func(s procSample) bool { return s.sessions == 0 && s.upstream == 0 })
	if !ok {
		return r, fmt.Errorf("warm-up: the bridge did not settle: %v", base)
	}
	r.base = base
	fmt.Fprintf(stderr, "baseline: %v\n", base)

	// Open K sessions: the first r.polling of every perIP-block spread
	// evenly long-poll.
	sessions := make([]*session, k)
	for i := range sessions {
		sessions[i] = c.newSession(i)
		sessions[i].poll = r.polling > 0 && (i*r.polling)/k != ((i+1)*r.polling)/k
	}
	defer closeAll(sessions)
	openStart := time.Now()
	if err := openSoak(ctx, sessions, o.conc, &retries); err != nil {
		return r, fmt.Errorf("open: %w\nbridge log tail:\n%s", err, w.b.stderrTail)
	}
	if n := w.f.subscribers(); n != k {
		return r, fmt.Errorf("the feeder has %d subscribed connections, want %d", n, k)
	}
	r.createRetries = retries.Load()
	fmt.Fprintf(stderr, "opened %d sessions (%d long-polling) in %v, %d creates retried\n", k, r.polling, time.Since(openStart).Round(time.Millisecond), r.createRetries)
	// The open's keep-alive connections (up to -conc per source address)
	// would idle until the bridge's idle timeout: closed now, so that the
	// soak holds the sessions' connections and those the acks and polls use.
	c.close()

	r.from = w.f.published.Load() + 1
	for _, s := range sessions {
		s.startPhase(r.from, soakOpen, false)
	}
	actx, stopAcks := context.WithCancel(ctx)
	ackDone := make(chan struct{})
	go func() {
		r.acks, r.ackFailed = acker(actx, sessions, o.ack, o.ackWorkers)
		close(ackDone)
	}()
	stopAcker := sync.OnceFunc(func() { stopAcks(); <-ackDone })
	defer stopAcker()

	load := func() string {
		b, err := os.ReadFile("/proc/loadavg")
		if err != nil {
			return "?"
		}
		return strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(stdout, "soak %s: %d sessions (%d SSE, %d long-poll) through cableway bridge%s for %v; a broadcast every %v to every session (%.0f frames/s); ack every %v (%d at a time); git=%s nproc=%d load=%s\n",
		start.Format(time.RFC3339), k, k-r.polling, r.polling, bridgeArgsDesc(o.bridgeArgs), o.soak, o.soakEvery,
		float64(k)/o.soakEvery.Seconds(), o.ack, o.ackWorkers, gitRevision(), runtime.NumCPU(), load())
	r.openTook = time.Since(openStart)
	fmt.Fprintf(stdout, "baseline: %v\n", base)
	fmt.Fprintf(stdout, "open: %d sessions in %v (-conc %d, one source address at a time), %d creates retried (network error or 5xx)\n", k, r.openTook.Round(time.Millisecond), o.conc, r.createRetries)
	fmt.Fprintf(stdout, "%8s %9s %10s %7s %8s %8s %12s %6s %5s %5s %9s %s\n",
		"elapsed", "rss MiB", "goroutines", "fds", "upstream", "sessions", "delivered", "lost", "dup", "ended", "p99 ms", "load")

	// The broadcast, the RSS samples and the lines.
	var rss []int64
	bctx, stopBroadcast := context.WithTimeout(ctx, o.soak)
	defer stopBroadcast()
	soakStart := time.Now()
	bcast := time.NewTicker(o.soakEvery)
	defer bcast.Stop()
	sec := time.NewTicker(time.Second)
	defer sec.Stop()
	line := time.NewTicker(o.interval)
	defer line.Stop()
	var prevHist []uint64
	printLine := func() error {
		s, err := w.b.sample(upstream)
		if err != nil {
			return err
		}
		var got, dup, gaps uint64
		ended := 0
		for _, ss := range sessions {
			g, d, l, dead := ss.running()
			got, dup, gaps = got+g, dup+d, gaps+l
			if dead != "" {
				ended++
			}
		}
		h := c.hist.snapshot()
		p99 := quantile(h, prevHist, 0.99)
		prevHist = h
		fmt.Fprintf(stdout, "%8s %9.1f %10.0f %7d %8d %8.0f %12d %6d %5d %5d %9.1f %s\n",
			time.Since(soakStart).Round(time.Second), float64(s.rssKiB)/1024, s.goroutines, s.fds, s.upstream, s.sessions,
			got, gaps, dup, ended, float64(p99.Microseconds())/1000, load())
		r.lines++
		return nil
	}
	// The broadcast and the RSS samples run on goroutines of their own, so
	// that a slow line (reading /proc at 10k sessions) delays neither: the
	// broadcast catches up to one per soakEvery since the start.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sent := 0
		for {
			if due := int(time.Since(soakStart)/o.soakEvery) + 1; due > sent {
				w.f.publish(due - sent)
				sent = due
			}
			select {
			case <-bctx.Done():
				return
			case <-bcast.C:
			}
		}
	}()
	var rssErr error
	go func() {
		defer wg.Done()
		for {
			select {
			case <-bctx.Done():
				return
			case <-sec.C:
			}
			st, err := w.b.procStatus()
			if err != nil {
				rssErr = fmt.Errorf("the bridge: %w", err)
				stopBroadcast()
				return
			}
			rss = append(rss, st["VmRSS"])
		}
	}()
loop:
	for {
		select {
		case <-bctx.Done():
			break loop
		case <-line.C:
			if err := printLine(); err != nil {
				stopBroadcast()
				wg.Wait()
				return r, fmt.Errorf("the bridge: %w", err)
			}
		}
	}
	wg.Wait()
	if rssErr != nil {
		return r, rssErr
	}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.to = w.f.published.Load()
	r.broadcastsPerSec = float64(r.to-r.from+1) / o.soak.Seconds()
	for _, s := range sessions {
		s.endPhase(r.to)
	}
	r.stalled = waitSettled(ctx, c, sessions, o.stall)
	stopAcker()
	if err := printLine(); err != nil {
		return r, fmt.Errorf("the bridge: %w", err)
	}
	h := c.hist.snapshot()
	r.p99, r.max = quantile(h, nil, 0.99), quantile(h, nil, 1)
	for _, s := range sessions {
		res := s.result()
		r.got += res.got
		r.lost += res.lost
		r.dup += res.dup
		if res.dead != "" {
			r.dead[res.dead]++
		}
	}
	r.expected = uint64(k) * (r.to - r.from + 1)
	r.rssA, r.rssB, _ = rssFlat(rss, 0.10)
	r.rssN = len(rss)

	// Close everything and wait for the baseline.
	closeStart := time.Now()
	r.endFailed = soakClose(ctx, sessions, o.conc)
	c.close()
	r.after, r.settled = settle(ctx, w.b, upstream, o.settle, func(s procSample) bool { return atBaseline(base, s) })
	// The bridge's own view of its upstream sockets, once.
	if r.upstreamProc, err = w.b.upstreamSockets(upAddr); err != nil {
		return r, err
	}
	if r.upstreamProc != 0 {
		r.settled = false
	}
	r.settleTook = time.Since(closeStart)
	r.bridgeLog = w.b.logSummary()
	printSoak(stdout, o, r)
	return r, nil
}

// openSoak creates and attaches sessions, conc at a time: SSE or
// long-poll as each session's poll says. It opens one source address's
// sessions at a time and then closes that address's idle keep-alive
// connections: up to conc of them per address would otherwise idle in
// both processes until the idle timeouts, thousands at 9k sessions, where
// the descriptors are counted (a process may hold 20000 on the machine of
// the published soaks).
//
// A create that fails for want of an answer or with a 5xx (the bridge's
// 504 when the upstream's welcome is late, seen at 9k sessions on a
// machine loaded by others) is retried, as a client would, after a
// second, at most twice; retries counts them.
func openSoak(ctx context.Context, sessions []*session, conc int, retries *atomic.Int64) error {
	octx, cancel := context.WithTimeout(ctx, 60*time.Second+time.Duration(len(sessions))*30*time.Millisecond)
	defer cancel()
	for len(sessions) > 0 {
		n := 1
		for n < len(sessions) && sessions[n].src == sessions[0].src {
			n++
		}
		err := openAll(octx, sessions[:n], conc, func(ctx context.Context, s *session) error {
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := createRetrying(actx, s, retries); err != nil {
				return err
			}
			if s.poll {
				return s.attachPoll(actx)
			}
			return s.attach(actx)
		})
		if err != nil {
			return err
		}
		sessions[0].c.https[sessions[0].src].CloseIdleConnections()
		sessions = sessions[n:]
	}
	return nil
}

// createRetrying is s.create, retried on a network error or a 5xx.
func createRetrying(ctx context.Context, s *session, retries *atomic.Int64) error {
	for try := 0; ; try++ {
		err := s.create(ctx)
		var status *statusError
		if err == nil || try == 2 || ctx.Err() != nil || (errors.As(err, &status) && status.code < 500) {
			return err
		}
		retries.Add(1)
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
}

// soakClose closes every session's stream or polling and deletes it,
// conc at a time; it answers how many live ones (whose stream had not been
// told the session ended) could not be deleted.
func soakClose(ctx context.Context, sessions []*session, conc int) int {
	var failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, len(sessions)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(sessions) {
					return
				}
				s := sessions[i]
				s.mu.Lock()
				ended := s.dead != ""
				s.mu.Unlock()
				s.close()
				dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				if err := s.end(dctx); err != nil && !ended {
					failed.Add(1) // a session whose stream was told it ended answers 404
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	return int(failed.Load())
}

// settle samples the bridge every 250 ms until done holds for two
// samples in a row, or for at most within; it answers the last sample.
func settle(ctx context.Context, b *bridgeProc, upstream func() int, within time.Duration, done func(procSample) bool) (procSample, bool) {
	deadline := time.Now().Add(within)
	var last procSample
	held := 0
	for {
		s, err := b.sample(upstream)
		if err == nil {
			last = s
			if done(s) {
				if held++; held == 2 {
					return s, true
				}
			} else {
				held = 0
			}
		}
		if time.Now().After(deadline) || sleepCtx(ctx, 250*time.Millisecond) != nil {
			return last, false
		}
	}
}

func printSoak(w io.Writer, o options, r soakResult) {
	pass := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	fmt.Fprintf(w, "broadcasts %d…%d (%.2f/s) to %d sessions: %d frames expected, %d delivered, %d lost, %d duplicated; latency p99 %.1f ms, max %.1f ms (buckets of 12 %%); acks %d sent, %d failed\n",
		r.from, r.to, r.broadcastsPerSec, r.k, r.expected, r.got, r.lost, r.dup,
		float64(r.p99.Microseconds())/1000, float64(r.max.Microseconds())/1000, r.acks, r.ackFailed)
	for why, n := range r.dead {
		fmt.Fprintf(w, "  %d streams ended: %s\n", n, why)
	}
	if r.stalled {
		fmt.Fprintf(w, "  stalled: no frame for %v before every session had the last broadcast\n", o.stall)
	}
	fmt.Fprintf(w, "after closing every session (%d DELETEs failed), %v later: %v (the feeder's count); the bridge's sockets to the feeder in /proc/PID/net/tcp: %d\n", r.endFailed, r.settleTook.Round(time.Millisecond), r.after, r.upstreamProc)
	for i, l := range r.bridgeLog {
		if i == 8 {
			fmt.Fprintf(w, "bridge log: … %d more kinds\n", len(r.bridgeLog)-i)
			break
		}
		fmt.Fprintf(w, "bridge log: %s\n", l)
	}
	fmt.Fprintf(w, "verdict: delivery complete (0 lost, 0 dup, no stream ended): %s\n", pass(r.deliveryOK()))
	fmt.Fprintf(w, "verdict: RSS flat (mean of the last third within ±10 %% (or 4 MiB) of the second third's, 1 sample/s, first third warm-up): %.1f → %.1f MiB (%+.1f %%, %d samples): %s\n",
		r.rssA/1024, r.rssB/1024, 100*(r.rssB-r.rssA)/max(r.rssA, 1), r.rssN, pass(r.rssOK()))
	fmt.Fprintf(w, "verdict: back to baseline within %v (goroutines ≤ %.0f, fds ≤ %d, 0 upstream sockets, 0 sessions): %s\n",
		o.settle, r.base.goroutines, r.base.fds, pass(r.settled && r.endFailed == 0))
	fmt.Fprintf(w, "verdict: %s\n", pass(r.ok()))
}

func bridgeArgsDesc(args []string) string {
	if len(args) == 0 {
		return " (defaults)"
	}
	return " " + strings.Join(args, " ")
}
