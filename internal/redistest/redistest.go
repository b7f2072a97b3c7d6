//go:build unix

// Package redistest runs a real redis-server (Debian's package) for tests,
// on a free 127.0.0.1 port, without persistence, in a temporary folder.
// If redis-server is not installed the test is skipped, unless
// CABLEWAY_REQUIRE_RAILS=1 (CI), where it fails.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	Port int
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// URL returns "redis://127.0.0.1:PORT/db".
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://127.0.0.1:%d/%d", s.Port, db) }

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Start runs redis-server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CABLEWAY_REQUIRE_RAILS") == "1" {
			t.Fatal("redis-server is not installed (apt-get install redis-server)")
		}
		t.Skip("redis-server is not installed")
	}
	dir := t.TempDir()
	for try := 1; ; try++ {
		s, err := launch(bin, dir)
		if err == nil {
			t.Cleanup(func() {
				s.Kill()
				if t.Failed() {
					t.Logf("redis-server output:\n%s", tail(s.out.String(), 4000))
				}
			})
			return s
		}
		if try == 3 {
			t.Fatalf("redistest: %v", err)
		}
		t.Logf("redistest: %v; trying another port", err)
	}
}

func launch(bin, dir string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Port: port, out: &lockedBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes",
		"--unixsocket", "", "--daemonize", "no", "--loglevel", "warning")
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.ping() == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("redis-server exited on port %d: %s", port, s.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return nil, fmt.Errorf("redis-server did not answer within 10 s on port %d", port)
		}
	}
}

// ping sends PING and expects PONG.
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

// Kill stops the server at once (SIGKILL) and waits for its exit.
func (s *Server) Kill() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}
