//go:build unix

package main

// The cableway binary as a user runs it: built with go build, started as a
// process (with an environment free of CABLEWAY_* variables), its exit
// codes, stdout and stderr checked, against the example Rails app and the
// bridge (the same binary) on each transport.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds ./server/cmd/cableway once per test process.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cableway-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "cableway")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// binProc is one run of the binary.
type binProc struct {
	cmd            *exec.Cmd
	stdout, stderr *output
	done           chan struct{}
	code           int
}

// cleanEnv is the test's environment without CABLEWAY_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CABLEWAY_") {
			env = append(env, kv)
		}
	}
	return env
}

// startBin runs the binary with args; it is killed when the test ends.
func startBin(t *testing.T, args ...string) *binProc {
	t.Helper()
	return startCmd(t, exec.Command(binary(t), args...))
}

func startCmd(t *testing.T, cmd *exec.Cmd) *binProc {
	t.Helper()
	p := &binProc{cmd: cmd, stdout: newOutput(), stderr: newOutput(), done: make(chan struct{})}
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("%v\nstdout:\n%s\nstderr:\n%s", cmd.Args, p.stdout, p.stderr)
		}
	})
	return p
}

// wait returns the exit code, failing the test at ctx's deadline.
func (p *binProc) wait(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-ctx.Done():
		t.Fatalf("%v: no exit before the deadline\nstderr:\n%s", p.cmd.Args[1:], p.stderr)
		return -1
	}
}

// waitStatus waits until out (the process's stderr, or its pty) matches
// re, failing the test if the process exits first.
func (p *binProc) waitStatus(t *testing.T, ctx context.Context, out *output, re *regexp.Regexp) {
	t.Helper()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-wctx.Done():
		}
	}()
	out.waitFor(t, wctx, re)
}

func (p *binProc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// runBin runs the binary to its end and returns the exit code.
func runBin(t *testing.T, ctx context.Context, args ...string) (*binProc, int) {
	t.Helper()
	p := startBin(t, args...)
	return p, p.wait(t, ctx)
}

var binListeningRE = regexp.MustCompile(`msg="bridge listening" addr=\S+ url=(\S+)`)

// startBinBridge runs "cableway bridge" in front of upstream and returns
// its base URL.
func startBinBridge(t *testing.T, ctx context.Context, upstream string, args ...string) string {
	t.Helper()
	p := startBin(t, append([]string{"bridge", "--listen", "127.0.0.1:0", "--upstream", upstream,
		"--metrics=false", "--shutdown-timeout", "1s"}, args...)...)
	return p.stderr.waitFor(t, ctx, binListeningRE)[1]
}

func TestBinaryHelp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, cmd := range []string{"listen", "perform"} {
		p, code := runBin(t, ctx, cmd, "--help")
		if code != exitOK {
			t.Fatalf("%s --help: exit %d", cmd, code)
		}
		for _, want := range []string{"--transport MODE", "--bridge URL", "--output MODE", "Exit codes:", "130", "Examples:", "cableway " + cmd + " --url"} {
			if !strings.Contains(p.stdout.String(), want) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, want, p.stdout)
			}
		}
	}
	p, code := runBin(t, ctx, "--help")
	if code != exitOK || !strings.Contains(p.stdout.String(), "Examples:") || !strings.Contains(p.stdout.String(), "--transport sse") {
		t.Fatalf("--help: exit %d\n%s", code, p.stdout)
	}
}

// TestBinaryUsageErrors: each is refused at once with exit 2 and names
// what is wrong; none dials (the timeout is far beyond the test's
// deadline, so a binary that retried would fail the test).
func TestBinaryUsageErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--channel", "ChatChannel", "--timeout", "1h"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--url", "ws://127.0.0.1:notaport/cable"}, `--url "ws://127.0.0.1:notaport/cable": not a URL`},
		{[]string{"--url", "ws://127.0.0.1:99999/cable"}, `bad port "99999"`},
		{[]string{"--url", "ws:///cable"}, "no host"},
		{[]string{"--url", "ws://exa mple.com/cable"}, "not a URL"},
		{[]string{"--url", "http://127.0.0.1:3000/cable"}, "want a ws:// or wss:// URL"},
		{[]string{"--url", "ws://127.0.0.1:3000/cable", "--transport", "sse"}, "--transport sse needs --bridge"},
		{[]string{"--url", "ws://127.0.0.1:3000/cable", "--transport", "carrier-pigeon"}, `--transport "carrier-pigeon"`},
		{[]string{"--url", "ws://127.0.0.1:3000/cable", "--bridge", "ws://127.0.0.1:8080"}, "--bridge \"ws://127.0.0.1:8080\": want a http:// or https:// URL"},
		{[]string{"--url", "ws://127.0.0.1:3000/cable", "--bridge", "http://127.0.0.1:8080", "--transport", "websocket"}, "point --url at it"},
		{[]string{"--url", "ws://127.0.0.1:3000/cable", "--bridge", "http://127.0.0.1:8080", "--transport", "longpoll", "--msgpack"}, "--msgpack applies to WebSockets only"},
		{[]string{"--url", "ws://127.0.0.1:3000/cable", "--output", "yaml"}, `--output "yaml"`},
	}
	for _, c := range cases {
		for _, cmd := range []string{"listen", "perform"} {
			args := append(append([]string{cmd}, base...), c.args...)
			if cmd == "perform" {
				args = append(args, "--action", "speak")
			}
			p, code := runBin(t, ctx, args...)
			if code != exitUsage || !strings.Contains(p.stderr.String(), c.want) || !strings.Contains(p.stderr.String(), "--help") {
				t.Errorf("%v: exit %d, want %d and %q in stderr:\n%s", args, code, exitUsage, c.want, p.stderr)
			}
		}
	}
}

// jsonLines returns stdout's lines, each of which must be one JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line %q is not a JSON object: %v", line, err)
		}
		objs = append(objs, m)
	}
	return objs
}

// refusingCable is a cable URL whose WebSocket handshakes get HTTP 404, as
// from a proxy that refuses upgrades.
func refusingCable(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/cable"
}

// TestBinaryTransports: listen and perform on each transport, against
// Rails directly and through the bridge; the transport in use is on
// stderr, messages are JSON lines on stdout (a pipe), Ctrl-C exits 0.
func TestBinaryTransports(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	bridgeURL := startBinBridge(t, ctx, rails.CableURL())
	bridgeWS := "ws" + strings.TrimPrefix(bridgeURL, "http") + "/"
	refused := refusingCable(t)

	cases := []struct {
		name      string
		url       string // without the query
		extra     []string
		transport string // as logged
	}{
		{"websocket to Rails", rails.CableURL(), []string{"--transport", "websocket"}, "websocket"},
		{"auto without a bridge", rails.CableURL(), nil, "websocket"},
		// The bridge's WebSocket proxy does not pass the URL's query on to
		// Rails: authenticate with a header there.
		{"websocket to the bridge's proxy", bridgeWS, []string{"--transport", "websocket", "--header", "Authorization: Bearer secret-cli2"}, "websocket"},
		{"sse through the bridge", rails.CableURL(), []string{"--transport", "sse", "--bridge", bridgeURL}, "sse"},
		{"longpoll through the bridge", rails.CableURL(), []string{"--transport", "longpoll", "--bridge", bridgeURL}, "longpoll"},
		{"auto, WebSocket refused: falls back to sse", refused, []string{"--bridge", bridgeURL}, "sse"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := fmt.Sprintf("cli%d", i)
			room := fmt.Sprintf("cli-room-%d", i)
			cable := c.url + "?token=secret-" + user
			if strings.HasSuffix(c.url, "/") {
				cable = c.url
			}
			common := append([]string{"--url", cable, "--channel", "ChatChannel", "--param", "room=" + room}, c.extra...)
			l := startBin(t, append([]string{"listen"}, common...)...)
			l.waitStatus(t, ctx, l.stderr, regexp.MustCompile(`msg=subscribed .*transport=`+c.transport+`\b`))

			p, code := runBin(t, ctx, append([]string{"perform", "--action", "speak", "--data", `{"text":"over ` + c.transport + `"}`}, common...)...)
			if code != exitOK {
				t.Fatalf("perform: exit %d\n%s", code, p.stderr)
			}
			if !regexp.MustCompile(`transport=` + c.transport + `\b`).MatchString(p.stderr.String()) {
				t.Errorf("perform's stderr does not name the transport %s:\n%s", c.transport, p.stderr)
			}
			l.stdout.waitFor(t, ctx, lineRE(`"over `+c.transport+`"`))
			l.signal(syscall.SIGINT)
			if code := l.wait(t, ctx); code != exitOK {
				t.Fatalf("listen after Ctrl-C: exit %d, want 0", code)
			}
			got := jsonLines(t, l.stdout.String())
			want := map[string]any{"user": user, "text": "over " + c.transport, "room": room}
			if len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
				t.Fatalf("listen printed %v, want [%v]", got, want)
			}
		})
	}
}

// TestBinaryOutputModes: on a terminal (a pty made by script(1)) each
// message is a line with its time; --output text forces that into a pipe,
// --output json gives JSON lines on a terminal.
func TestBinaryOutputModes(t *testing.T) {
	scriptPath, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) (util-linux) is not installed: no pty to test the terminal output with")
	}
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	textLine := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3}  \{.*"text":"(\w+)".*\}\r?$`)
	jsonLine := regexp.MustCompile(`(?m)^\{.*"text":"(\w+)".*\}\r?$`)
	for _, c := range []struct {
		name     string
		terminal bool
		output   string
		want     *regexp.Regexp
	}{
		{"terminal, auto", true, "auto", textLine},
		{"terminal, json", true, "json", jsonLine},
		{"pipe, text", false, "text", textLine},
		{"pipe, auto", false, "auto", jsonLine},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"listen", "--url", rails.CableURL() + "?token=secret-tty", "--channel", "ChatChannel", "--param", "room=tty", "--output", c.output}
			var l *binProc
			if c.terminal {
				// script runs the command on a new pty; its own stdout
				// (our pipe) carries what the command wrote there.
				quoted := make([]string, len(args))
				for i, a := range args {
					quoted[i] = "'" + a + "'"
				}
				l = startCmd(t, exec.Command(scriptPath, "-qfec", binary(t)+" "+strings.Join(quoted, " "), "/dev/null"))
			} else {
				l = startBin(t, args...)
			}
			status := l.stderr // on a pty, stderr is the terminal too
			if c.terminal {
				status = l.stdout
			}
			l.waitStatus(t, ctx, status, subscribedRE)
			text := strings.NewReplacer(",", "", " ", "").Replace(c.name)
			if err := rails.Broadcast(ctx, "chat:tty", map[string]string{"user": "tty", "text": text, "room": "tty"}); err != nil {
				t.Fatal(err)
			}
			l.stdout.waitFor(t, ctx, regexp.MustCompile(text+`.*\n`))
			if m := c.want.FindStringSubmatch(l.stdout.String()); m == nil || m[1] != text {
				t.Fatalf("output not in the %s form:\n%q", c.name, l.stdout)
			}
		})
	}
}

// TestBinaryRefusals: each failure exits 1 with a reason in words.
func TestBinaryRefusals(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	bridgeURL := startBinBridge(t, ctx, rails.CableURL())
	passing := startBinBridge(t, ctx, rails.CableURL(), "--pass-headers", "X-User")
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return "ws://" + l.Addr().String() + "/cable"
	}()
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown channel", []string{"--url", rails.CableURL() + "?token=secret-ann", "--channel", "NoSuchChannel", "--timeout", "3s"},
			[]string{"no confirmation of the subscription", "unknown channel class", "--channel"}},
		{"rejected", []string{"--url", rails.CableURL() + "?token=secret-ann", "--channel", "RejectChannel"},
			[]string{"rejected the subscription", "RejectChannel"}},
		{"unauthorized", []string{"--url", rails.CableURL(), "--channel", "ChatChannel", "--param", "room=x"},
			[]string{"refused the connection as unauthorized", "--header"}},
		{"unauthorized through the bridge over sse", []string{"--url", rails.CableURL(), "--bridge", bridgeURL, "--transport", "sse", "--channel", "ChatChannel", "--param", "room=x"},
			[]string{"the bridge " + bridgeURL + " refused the connection as unauthorized"}},
		{"X-User through a bridge without --pass-headers", []string{"--url", rails.CableURL(), "--bridge", bridgeURL, "--transport", "longpoll", "--header", "X-User: ann", "--channel", "ChatChannel", "--param", "room=x"},
			[]string{"unauthorized", "--pass-headers"}},
		{"nothing listening", []string{"--url", closed, "--channel", "ChatChannel", "--timeout", "2s"},
			[]string{"no connection to " + closed + " within --timeout 2s; last attempt:", "refused"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, code := runBin(t, ctx, append([]string{"listen"}, c.args...)...)
			if code != exitFailure {
				t.Fatalf("exit %d, want %d\n%s", code, exitFailure, p.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(p.stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, p.stderr)
				}
			}
			if p.stdout.String() != "" {
				t.Errorf("stdout: %q, want nothing", p.stdout)
			}
		})
	}
	// With --pass-headers X-User the same login works.
	l := startBin(t, "listen", "--url", rails.CableURL(), "--bridge", passing, "--transport", "longpoll", "--header", "X-User: ann",
		"--channel", "ChatChannel", "--param", "room=x")
	l.waitStatus(t, ctx, l.stderr, regexp.MustCompile(`msg=subscribed .*transport=longpoll`))
}

// TestBinaryInterruptWhileConnecting: Ctrl-C (SIGINT) or SIGTERM while the
// dial hangs exits 130 at once, not after --timeout.
func TestBinaryInterruptWhileConnecting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, cmd := range []string{"listen", "perform"} {
			// A server that accepts TCP and never answers.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			accepted := make(chan net.Conn, 1)
			go func() {
				if c, err := ln.Accept(); err == nil {
					accepted <- c
				}
			}()
			args := []string{cmd, "--url", "ws://" + ln.Addr().String() + "/cable", "--channel", "ChatChannel", "--timeout", "1h"}
			if cmd == "perform" {
				args = append(args, "--action", "speak")
			}
			p := startBin(t, args...)
			var conn net.Conn
			select {
			case conn = <-accepted:
			case <-ctx.Done():
				t.Fatal("the binary never connected")
			}
			p.signal(sig)
			if code := p.wait(t, ctx); code != exitInterrupted || !strings.Contains(p.stderr.String(), "interrupted") {
				t.Errorf("%s, %v while connecting: exit %d, want %d\n%s", cmd, sig, code, exitInterrupted, p.stderr)
			}
			conn.Close()
			ln.Close()
		}
	}
}
