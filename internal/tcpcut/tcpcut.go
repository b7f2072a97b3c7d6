// Package tcpcut is an in-process TCP proxy for fault tests: it forwards
// connections from a loopback listener to a target and, on command, cuts
// them (both sockets closed at once, with a reset) or stalls them (bytes
// stop flowing in both directions while the sockets stay open, as on a
// path that went silent), or refuses new ones.
//
// It is meant for tests only: it listens on 127.0.0.1, dials only the
// target it was given, and every goroutine it starts ends with Close.
package tcpcut

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Proxy forwards TCP connections to one target. Its methods are safe for
// concurrent use.
type Proxy struct {
	l      net.Listener
	target string

	mu       sync.Mutex
	pairs    map[*pair]struct{}
	stalled  bool
	refusing bool
	resume   chan struct{} // closed when a stall ends
	accepted int
	cuts     int
	closed   bool
	wg       sync.WaitGroup
}

// pair is one forwarded connection: the accepted socket and the one to the
// target.
type pair struct {
	in, out net.Conn
	cut     chan struct{} // closed when the pair is cut or dropped
	once    sync.Once
}

func (pr *pair) end() { pr.once.Do(func() { close(pr.cut) }) }

// New listens on a free loopback port and forwards every connection
// accepted there to target (host:port). Close stops it.
func New(target string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tcpcut: %w", err)
	}
	p := &Proxy{l: l, target: target, pairs: map[*pair]struct{}{}, resume: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr returns the listening address, 127.0.0.1:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Cut resets every connection open now, on both sides, and returns how
// many there were. New connections are forwarded as before.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	pairs := p.pairs
	p.pairs = map[*pair]struct{}{}
	p.cuts += len(pairs)
	p.mu.Unlock()
	for pr := range pairs {
		pr.end()
		reset(pr.in)
		reset(pr.out)
	}
	return len(pairs)
}

// Stall stops forwarding bytes on every connection, open now or accepted
// later, until Resume: each side sees a silent peer whose socket stays open
// (what it writes fills the buffers, then blocks).
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.resume = make(chan struct{})
	}
}

// Resume ends a Stall: bytes flow again, none lost.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

// Refuse makes the proxy reset new connections at once (on) or forward
// them again (off), as a target that went away would.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refusing = on
	p.mu.Unlock()
}

// Stats counts connections: open now, accepted since New, and cut by Cut.
func (p *Proxy) Stats() (open, accepted, cut int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs), p.accepted, p.cuts
}

// Close stops listening, resets every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.l.Close()
	p.Cut()
	p.Resume()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		refusing, closed := p.refusing, p.closed
		p.mu.Unlock()
		if refusing || closed {
			reset(in)
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			reset(in)
			continue
		}
		pr := &pair{in: in, out: out, cut: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			reset(in)
			reset(out)
			continue
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.copy(pr, out, in)
		go p.copy(pr, in, out)
	}
}

// copy forwards src to dst until either fails, holding bytes back while
// the proxy is stalled. The end of one direction ends the pair: a
// half-close is passed on as a close, which is all the tests need.
func (p *Proxy) copy(pr *pair, dst, src net.Conn) {
	defer p.wg.Done()
	defer p.drop(pr)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitFlowing(pr) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			// The peer closed: close the other side too, gracefully.
			dst.Close()
			return
		}
	}
}

// waitFlowing blocks while the proxy is stalled; it returns false if the
// pair was cut meanwhile.
func (p *Proxy) waitFlowing(pr *pair) bool {
	for {
		p.mu.Lock()
		_, live := p.pairs[pr]
		stalled, resume := p.stalled, p.resume
		p.mu.Unlock()
		if !live {
			return false
		}
		if !stalled {
			return true
		}
		select {
		case <-resume:
		case <-pr.cut:
			return false
		}
	}
}

// drop forgets pr and closes both its sockets.
func (p *Proxy) drop(pr *pair) {
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
	pr.end()
	pr.in.Close()
	pr.out.Close()
}

// reset closes c with an RST rather than a FIN where it can.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
