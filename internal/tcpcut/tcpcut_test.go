package tcpcut_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/tcpcut"
)

// echo serves a line echo on loopback until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func dial(t *testing.T, p *tcpcut.Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes a line and reads it back within d.
func roundTrip(c net.Conn, line string, d time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return got, err
}

func TestForwardCutStallRefuse(t *testing.T) {
	p, err := tcpcut.New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	c := dial(t, p)
	if got, err := roundTrip(c, "one", 5*time.Second); err != nil || got != "one\n" {
		t.Fatalf("through the proxy: %q %v", got, err)
	}

	// A stall: nothing comes back, the socket stays open; Resume delivers
	// what was held.
	p.Stall()
	if got, err := roundTrip(c, "two", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("while stalled: %q %v, want a timeout", got, err)
	}
	p.Resume()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after Resume: %q %v, want the held line", got, err)
	}

	// A cut: the client's socket breaks.
	if n := p.Cut(); n != 1 {
		t.Fatalf("Cut reset %d connections, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after Cut: %v, want the connection broken", err)
	}

	// New connections work after a cut; refused ones break at once.
	if got, err := roundTrip(dial(t, p), "three", 5*time.Second); err != nil || got != "three\n" {
		t.Fatalf("after Cut: %q %v", got, err)
	}
	p.Refuse(true)
	if _, err := roundTrip(dial(t, p), "four", 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("while refusing: %v, want the connection broken", err)
	}
	p.Refuse(false)
	if got, err := roundTrip(dial(t, p), "five", 5*time.Second); err != nil || got != "five\n" {
		t.Fatalf("after Refuse(false): %q %v", got, err)
	}
	if _, accepted, cut := p.Stats(); accepted != 4 || cut != 1 {
		t.Fatalf("accepted %d cut %d, want 4 and 1", accepted, cut)
	}
}

// A stall that is cut ends at once, and Close returns with connections
// open and stalled.
func TestCutWhileStalledAndClose(t *testing.T) {
	p, err := tcpcut.New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	p.Stall()
	io.WriteString(c, "held\n")
	p.Cut()
	dial(t, p)
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a stalled connection")
	}
}
