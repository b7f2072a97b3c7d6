//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// bridgeProc is one run of the bridge as its own process: the cableway
// binary ("cableway bridge …"), or this program in -serve-bridge mode for a
// CPU profile.
type bridgeProc struct {
	cmd        *exec.Cmd
	pid        int
	base       string // http://127.0.0.1:port
	done       chan struct{}
	werr       error
	stderrTail *tailBuffer

	logMu   sync.Mutex
	notable map[string]int // warnings, errors and lost upstreams logged, by message
}

var (
	msgRE    = regexp.MustCompile(`msg="[^"]*"|msg=\S+`)
	errRE    = regexp.MustCompile(`err="[^"]*"|err=\S+`)
	digitsRE = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)
)

// note counts a notable log line (warnings, errors, sessions that end),
// with its numbers blanked so that like lines group.
func (p *bridgeProc) note(line string) {
	if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") &&
		!strings.Contains(line, "session ends") && !strings.Contains(line, "expired") {
		return
	}
	key := msgRE.FindString(line)
	if e := errRE.FindString(line); e != "" {
		key += " " + digitsRE.ReplaceAllString(e, "N")
	}
	if strings.Contains(line, "level=WARN") {
		key = "WARN " + key
	} else if strings.Contains(line, "level=ERROR") {
		key = "ERROR " + key
	}
	p.logMu.Lock()
	p.notable[key]++
	p.logMu.Unlock()
}

// logSummary is the notable lines logged so far, most frequent first.
func (p *bridgeProc) logSummary() []string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	keys := make([]string, 0, len(p.notable))
	for k := range p.notable {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if a, b := p.notable[keys[i]], p.notable[keys[j]]; a != b {
			return a > b
		}
		return keys[i] < keys[j]
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d × %s", p.notable[k], k)
	}
	return out
}

// buildBridge builds server/cmd/cableway of the module in the working
// directory into dir.
func buildBridge(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "cableway")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/cableway/cableway/server/cmd/cableway")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./server/cmd/cableway: %w\n%s", err, out)
	}
	return bin, nil
}

var listeningRE = regexp.MustCompile(`bridge listening.*? addr=(127\.0\.0\.1:\d+)`)

// startBridge starts argv (the bridge's listen address must be
// 127.0.0.1:0) and waits until it logs its address and answers /healthz.
// With logPath, every line the bridge logs is appended to that file.
func startBridge(ctx context.Context, argv []string, logPath string) (*bridgeProc, error) {
	var logFile *os.File
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		logFile = f
		fmt.Fprintf(f, "=== %s %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(argv, " "))
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = cleanEnv()
	// Its own process group, and killed if this process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, err
	}
	p := &bridgeProc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{}), stderrTail: &tailBuffer{max: 8 << 10}, notable: map[string]int{}}
	addr := make(chan string, 1)
	go func() {
		// Read every line (the bridge logs one per session at info level),
		// keeping only a tail for errors.
		if logFile != nil {
			defer logFile.Close()
		}
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Bytes()
			p.note(string(line))
			p.stderrTail.Write(line)
			p.stderrTail.Write([]byte{'\n'})
			if logFile != nil {
				logFile.Write(line)
				logFile.Write([]byte{'\n'})
			}
			if !found {
				if m := listeningRE.FindSubmatch(line); m != nil {
					found = true
					addr <- string(m[1])
				}
			}
		}
		io.Copy(io.Discard, stderr)
		// The pipe is at EOF: the process has exited (Wait must not run
		// before the reads are done).
		p.werr = cmd.Wait()
		close(p.done)
	}()
	select {
	case a := <-addr:
		p.base = "http://" + a
	case <-p.done:
		return nil, fmt.Errorf("bridge exited at start (%v):\n%s", p.werr, p.stderrTail)
	case <-time.After(15 * time.Second):
		p.stop()
		return nil, fmt.Errorf("bridge did not log its address within 15 s:\n%s", p.stderrTail)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("bridge /healthz not OK within 10 s: %v", err)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-p.done:
			return nil, fmt.Errorf("bridge exited at start (%v):\n%s", p.werr, p.stderrTail)
		}
	}
}

// stop ends the bridge: SIGTERM (it drains), SIGKILL after 5 s, and waits.
func (p *bridgeProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.done
	}
}

// cleanEnv is this process's environment without CABLEWAY_* variables, so
// that the bridge runs at its defaults plus the flags given.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CABLEWAY_") {
			env = append(env, kv)
		}
	}
	return env
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpu is the process's user+system CPU time so far (10 ms resolution).
func (p *bridgeProc) cpu() (time.Duration, error) {
	u, s, err := p.cpuSplit()
	return u + s, err
}

// cpuSplit is the process's user and system CPU time so far.
func (p *bridgeProc) cpuSplit() (user, system time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after "(comm)": state is field 3; utime, stime are 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("/proc/PID/stat: no comm")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, errors.New("/proc/PID/stat: short")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errors.New("/proc/PID/stat: bad utime/stime")
	}
	return time.Duration(ut) * time.Second / clockTicks, time.Duration(st) * time.Second / clockTicks, nil
}

// procIO reads the read and write system call counts (syscr, syscw) of
// /proc/PID/io: every thread's, those that ended included.
func (p *bridgeProc) procIO() (reads, writes int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes, nil
}

// procStatus reads the kB figures VmRSS, VmHWM and the Threads count from
// /proc/PID/status.
func (p *bridgeProc) procStatus() (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS", "VmHWM", "Threads":
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				out[k] = n
			}
		}
	}
	return out, nil
}

// metrics scrapes the bridge's GET /metrics (Prometheus text) for the
// named series; a missing endpoint (404) gives an empty map.
func (p *bridgeProc) metrics(names ...string) (map[string]float64, error) {
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return out, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || !want[name] {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
