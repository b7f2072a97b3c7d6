//go:build unix

// Package railstest starts the example Rails ActionCable app for integration tests.
//
// The app lives in examples/rails (see its README.md). It needs the Debian
// packages ruby, ruby-actioncable and puma; when they are missing Start skips
// the test, unless CABLEWAY_REQUIRE_RAILS=1 is set, in which case it fails.
package railstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startTimeout = 30 * time.Second // deadline for /health after launch
	stopTimeout  = 5 * time.Second  // SIGTERM grace period before SIGKILL
	startTries   = 3                // launches before giving up (port races)
)

// Option configures Start.
type Option func(*config)

type config struct {
	env []string
}

// WithEnv sets an environment variable for the Rails process, for example
// WithEnv("CABLE_ADAPTER", "redis") or WithEnv("RAILS_LOG_LEVEL", "debug").
func WithEnv(k, v string) Option {
	return func(c *config) { c.env = append(c.env, k+"="+v) }
}

// WithAllowedOrigins sets the exact origins ActionCable accepts (ALLOWED_ORIGINS).
// "*" disables the origin check. Without this option any http origin on
// 127.0.0.1 or localhost is accepted. Rails always accepts an Origin equal to
// "http://" + the request's Host header.
func WithAllowedOrigins(origins ...string) Option {
	return WithEnv("ALLOWED_ORIGINS", strings.Join(origins, ","))
}

// WithOrderedDelivery makes broadcasts reach each subscriber in the order they
// were made, by using the "inline" pubsub adapter and a single worker thread.
// With the default "async" adapter (and with "redis") Rails 6.1 hands every
// broadcast to a thread pool, so a burst can arrive out of order.
func WithOrderedDelivery() Option {
	return func(c *config) {
		c.env = append(c.env, "CABLE_ADAPTER=inline", "CABLE_WORKER_POOL_SIZE=1")
	}
}

// Stats is the answer of GET /stats.
type Stats struct {
	Connections       int `json:"connections"`        // authenticated connections open now
	ConnectsTotal     int `json:"connects_total"`     // authenticated connections ever
	UnauthorizedTotal int `json:"unauthorized_total"` // rejected by reject_unauthorized_connection
}

// Server is a running example app. Its methods are safe for concurrent use.
type Server struct {
	root string // repository root
	env  []string
	log  syncBuffer
	http *http.Client

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited
}

// Start launches examples/rails/run on a free loopback port, waits until
// GET /health answers and registers a cleanup that stops the server and, if
// the test failed, logs the server output.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	requireRails(t)

	var c config
	for _, o := range opts {
		o(&c)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("railstest: %v", err)
	}
	// No keep-alive: no idle connection (and goroutine) outlives a request,
	// which keeps goroutine leak checkers in the callers' tests quiet.
	s := &Server{root: root, env: c.env, http: &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("railstest: Rails output:\n%s", s.Log())
		}
	})

	// The port is free when we look but somebody else may take it before
	// puma binds it, so try again with a new port if the launch fails.
	for try := 1; ; try++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("railstest: %v", err)
		}
		err = s.launch(port)
		if err == nil {
			return s
		}
		if try == startTries {
			t.Fatalf("railstest: start: %v", err)
		}
		t.Logf("railstest: start on port %d failed (%v), trying another port", port, err)
	}
}

// Restart starts the server again on the same port after Stop or Kill (it
// stops it first if it is still running) and waits for /health.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for try := 1; try <= startTries; try++ {
		if err = s.launch(s.Port()); err == nil {
			return
		}
		// Puma sets SO_REUSEADDR so TIME_WAIT should not matter; this covers
		// the old socket not being released yet.
		t.Logf("railstest: restart on port %d failed (%v), retrying", s.Port(), err)
		time.Sleep(time.Duration(try) * 200 * time.Millisecond) // backoff, not synchronisation
	}
	t.Fatalf("railstest: restart: %v", err)
}

// launch runs the app on port and waits for it to be healthy. On failure the
// process is gone when launch returns.
func (s *Server) launch(port int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("server already running")
	}
	fmt.Fprintf(&s.log, "--- railstest: starting on port %d ---\n", port)
	cmd := exec.Command(filepath.Join(s.root, "examples", "rails", "run"), strconv.Itoa(port))
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout = &s.log
	cmd.Stderr = &s.log
	// Own process group, so Stop and Kill reach every process puma starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(&s.log, "--- railstest: process exited: %v ---\n", err)
		close(done)
	}()
	s.port, s.cmd, s.done = port, cmd, done

	if err := s.waitHealthy(port, done); err != nil {
		s.signalAndWait(syscall.SIGKILL, 0)
		return err
	}
	return nil
}

// waitHealthy polls GET /health until it answers 200, the process exits or
// startTimeout passes.
func (s *Server) waitHealthy(port int, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.do(ctx, http.MethodGet, url, nil, http.StatusOK, nil)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %v: %v", startTimeout, err)
		}
		select {
		case <-exited:
			return errors.New("process exited before becoming healthy")
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM to the process group and waits for the exit, sending
// SIGKILL if it takes more than 5 s. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signalAndWait(syscall.SIGTERM, stopTimeout)
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signalAndWait(syscall.SIGKILL, 0)
}

// signalAndWait must be called with s.mu held. With a zero grace period the
// signal is expected to be final (SIGKILL).
func (s *Server) signalAndWait(sig syscall.Signal, grace time.Duration) {
	if s.cmd == nil {
		return
	}
	pgid := s.cmd.Process.Pid // Setpgid: the group id is the leader's pid
	_ = syscall.Kill(-pgid, sig)
	if grace > 0 {
		timer := time.NewTimer(grace)
		select {
		case <-s.done:
		case <-timer.C:
			fmt.Fprintf(&s.log, "--- railstest: no exit %v after %v, sending SIGKILL ---\n", sig, grace)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		timer.Stop()
	}
	<-s.done
	s.cmd, s.done = nil, nil
}

// Log returns everything the server wrote to stdout and stderr so far,
// across restarts.
func (s *Server) Log() string { return s.log.String() }

// Port returns the TCP port the server listens on.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// CableURL returns the ActionCable endpoint, ws://127.0.0.1:PORT/cable.
func (s *Server) CableURL() string { return fmt.Sprintf("ws://127.0.0.1:%d/cable", s.Port()) }

// HTTPURL returns http://127.0.0.1:PORT.
func (s *Server) HTTPURL() string { return s.httpURL() }

// Origin returns an Origin header value the server accepts, http://127.0.0.1:PORT.
func (s *Server) Origin() string { return s.httpURL() }

func (s *Server) httpURL() string { return fmt.Sprintf("http://127.0.0.1:%d", s.Port()) }

// Broadcast calls ActionCable.server.broadcast(stream, message) in Rails.
// message is encoded as JSON.
func (s *Server) Broadcast(ctx context.Context, stream string, message any) error {
	return s.post(ctx, "/broadcast", map[string]any{"stream": stream, "message": message})
}

// BroadcastMany broadcasts each message to stream, in order, in one request.
// Subscribers may see the burst out of order unless the server was started
// WithOrderedDelivery.
func (s *Server) BroadcastMany(ctx context.Context, stream string, messages []any) error {
	if messages == nil {
		messages = []any{}
	}
	return s.post(ctx, "/broadcast", map[string]any{"stream": stream, "messages": messages})
}

// Disconnect asks Rails to close every connection of user via
// ActionCable.server.remote_connections. Rails 6.1 ignores reconnect: it
// closes the socket with code 1000 and sends no disconnect message.
func (s *Server) Disconnect(ctx context.Context, user string, reconnect bool) error {
	return s.post(ctx, "/disconnect", map[string]any{"user": user, "reconnect": reconnect})
}

// RestartCable calls ActionCable.server.restart: every open connection gets
// {"type":"disconnect","reason":"server_restart","reconnect":true} and is
// closed. The process keeps running and accepts new connections.
func (s *Server) RestartCable(ctx context.Context) error {
	return s.post(ctx, "/restart", map[string]any{})
}

// Stats returns the connection counters of the Rails process.
func (s *Server) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.do(ctx, http.MethodGet, s.httpURL()+"/stats", nil, http.StatusOK, &st)
	return st, err
}

// WaitStats polls Stats until cond is true or ctx is done, and returns the
// last Stats seen. Connection bookkeeping in Rails is asynchronous (it runs
// on the worker pool after the socket closes), hence the polling.
func (s *Server) WaitStats(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := s.Stats(ctx)
		if err == nil && cond(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return st, fmt.Errorf("railstest: waiting for stats (last %+v): %w", st, err)
		case <-tick.C:
		}
	}
}

func (s *Server) post(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("railstest: %w", err)
	}
	return s.do(ctx, http.MethodPost, s.httpURL()+path, b, http.StatusNoContent, nil)
}

// do performs a request, checks the status and decodes a JSON answer into out
// if out is not nil.
func (s *Server) do(ctx context.Context, method, url string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("railstest: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("railstest: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("railstest: %s %s: %w", method, url, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("railstest: %s %s: status %d: %s", method, url, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("railstest: %s %s: %w", method, url, err)
		}
	}
	return nil
}

var (
	railsOnce sync.Once
	railsErr  error
)

// requireRails skips (or, with CABLEWAY_REQUIRE_RAILS=1, fails) the test when
// ruby, puma or the actioncable gem are missing. The check runs once.
func requireRails(t testing.TB) {
	t.Helper()
	railsOnce.Do(func() {
		for _, bin := range []string{"ruby", "puma"} {
			if _, err := exec.LookPath(bin); err != nil {
				railsErr = fmt.Errorf("%s not found in PATH", bin)
				return
			}
		}
		out, err := exec.Command("ruby", "-e", `require "action_cable"`).CombinedOutput()
		if err != nil {
			railsErr = fmt.Errorf("ruby cannot load action_cable: %v: %s", err, bytes.TrimSpace(out))
		}
	})
	if railsErr == nil {
		return
	}
	msg := fmt.Sprintf("railstest: Rails example app unavailable: %v "+
		"(apt-get install ruby ruby-railties ruby-actioncable puma)", railsErr)
	if os.Getenv("CABLEWAY_REQUIRE_RAILS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// freePort asks the kernel for a free loopback port and releases it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
