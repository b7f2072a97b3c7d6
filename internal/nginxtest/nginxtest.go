//go:build unix

// Package nginxtest runs a real nginx (Debian's package) as a reverse proxy
// in tests, with a configuration chosen per test: the obstacles corporate
// proxies put in front of WebSockets and event streams.
package nginxtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running nginx.
type Server struct {
	Port int
	dir  string
	cmd  *exec.Cmd
	out  *lockedBuffer
}

// URL returns "http://127.0.0.1:PORT" + path.
func (s *Server) URL(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.Port, path) }

// WSURL returns "ws://127.0.0.1:PORT" + path.
func (s *Server) WSURL(path string) string { return fmt.Sprintf("ws://127.0.0.1:%d%s", s.Port, path) }

// Start runs nginx with the server block body given: it is placed inside
// `server { listen 127.0.0.1:PORT; … }` of a minimal configuration. If
// nginx is not installed the test is skipped, unless
// CABLEWAY_REQUIRE_RAILS=1 (CI), where it fails.
func Start(t testing.TB, serverBody string) *Server {
	t.Helper()
	return StartHTTP(t, "", serverBody)
}

// StartHTTP is Start with httpBody placed in the http block, beside the
// server block: upstream groups, maps.
func StartHTTP(t testing.TB, httpBody, serverBody string) *Server {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/sbin/nginx"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CABLEWAY_REQUIRE_RAILS") == "1" {
			t.Fatal("nginx is not installed (apt-get install nginx-light)")
		}
		t.Skip("nginx is not installed")
	}
	port := freePort(t)
	dir := t.TempDir()
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
%[4]s
  server {
    listen 127.0.0.1:%[2]d;
%[3]s
  }
}
`, dir, port, serverBody, httpBody)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{Port: port, dir: dir, out: &lockedBuffer{}}
	s.cmd = exec.Command(bin, "-p", dir, "-c", path)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", s.out.String(), tail(string(log), 4000))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v\n%s", err, s.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen within 10 s\n%s", s.out.String())
		}
	}
}

// Reload replaces the server block and makes nginx apply it (SIGHUP is not
// available with master_process off, so nginx is restarted on the same port).
func (s *Server) Reload(t testing.TB, serverBody string) *Server {
	t.Helper()
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	ns := startOnPort(t, s.Port, serverBody)
	return ns
}

func startOnPort(t testing.TB, port int, body string) *Server {
	t.Helper()
	var s *Server
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		func() {
			defer func() { recover() }()
			s = startFixed(t, port, body)
		}()
		if s != nil {
			return s
		}
	}
	t.Fatalf("nginx could not be restarted on port %d", port)
	return nil
}

// startFixed is Start on a given port.
func startFixed(t testing.TB, port int, body string) *Server {
	return Start(&portTB{TB: t, port: port}, body)
}

// portTB makes freePort return a fixed port.
type portTB struct {
	testing.TB
	port int
}

func freePort(t testing.TB) int {
	if p, ok := t.(*portTB); ok {
		return p.port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
