// Package fallback is a transport that tries others in order and keeps the
// first that opens: by default a WebSocket straight to Rails, then
// Server-Sent Events and long-polling through a Cableway bridge.
//
// "Open" means the ActionCable welcome arrived, not merely an HTTP 101 or
// 200: proxies accept upgrades and then drop frames, or buffer event
// streams until the response ends. A transport that is refused gives way
// at once; one that hangs gives way after a head start, racing the next
// (the first to be welcomed wins, the others are closed).
//
// What worked is remembered: reconnects start from it. While a connection
// runs over SSE or long-polling, a background probe tries to re-attach the
// same bridge session over a WebSocket (then SSE) at its cursor, so the
// connection moves back up without losing or repeating a frame.
package fallback

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/internal/bridgeconn"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// Defaults of the options.
const (
	DefaultHeadStart     = 800 * time.Millisecond
	DefaultProbeInterval = 30 * time.Second
)

// Change reports a connection moving from one transport to another.
type Change struct {
	From, To string
	// Upgrade is set when the background probe moved the connection to a
	// better transport.
	Upgrade bool
	// Reason holds the failures of the transports tried before To on a
	// dial. It is nil for upgrades, and also when To was dialled first
	// because it worked last time, or won a race against a slower one.
	Reason error
}

// Option configures a Transport.
type Option func(*Transport)

// WithHeadStart sets how long a transport may hang before the next one is
// started beside it (default 800 ms).
func WithHeadStart(d time.Duration) Option {
	return func(t *Transport) {
		if d > 0 {
			t.headStart = d
		}
	}
}

// WithProbeInterval sets how often a connection on a fallback tries to
// move back to a better downstream (default 30 s; negative disables).
func WithProbeInterval(d time.Duration) Option {
	return func(t *Transport) { t.probe = d }
}

// WithOnChange sets a function told of every change of transport. It is
// called from the goroutine that made the change and must not block.
func WithOnChange(f func(Change)) Option {
	return func(t *Transport) { t.onChange = f }
}

// Transport tries transports in order. It is safe for concurrent use.
type Transport struct {
	transports []transport.Transport
	headStart  time.Duration
	probe      time.Duration
	onChange   func(Change)

	mu        sync.Mutex
	preferred int // index of the transport that last opened
}

// New returns a fallback over transports, best first.
func New(transports []transport.Transport, opts ...Option) *Transport {
	t := &Transport{transports: transports, headStart: DefaultHeadStart, probe: DefaultProbeInterval}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Bridged returns the usual setup: a WebSocket straight to the consumer's
// URL (Rails), then SSE and long-polling through the bridge at bridgeURL.
func Bridged(bridgeURL string, opts ...Option) *Transport {
	return New([]transport.Transport{websocket.New(), sse.New(bridgeURL), longpoll.New(bridgeURL)}, opts...)
}

// Name returns "fallback".
func (*Transport) Name() string { return "fallback" }

type attempt struct {
	index  int
	conn   transport.Conn
	first  []byte
	err    error
	cancel context.CancelFunc
}

// Dial races the transports from the one that worked last, as described in
// the package documentation, and returns the first connection to be
// welcomed (or to answer with a disconnect frame, which is an answer too).
func (t *Transport) Dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	t.mu.Lock()
	start := t.preferred
	t.mu.Unlock()
	order := t.transports[start:]
	if len(order) == 0 {
		return nil, errors.New("fallback: no transports")
	}

	results := make(chan attempt, len(order))
	launched, outstanding := 0, 0
	var errs []error
	cancels := make([]context.CancelFunc, 0, len(order))
	launch := func() {
		i := launched
		launched++
		outstanding++
		actx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		go func() {
			a := attempt{index: start + i, cancel: cancel}
			a.conn, a.first, a.err = open(actx, order[i], req)
			results <- a
		}()
	}
	launch()
	timer := time.NewTimer(t.headStart)
	defer timer.Stop()
	var winner *attempt
wait:
	for winner == nil && outstanding > 0 {
		select {
		case a := <-results:
			outstanding--
			if a.err != nil {
				a.cancel()
				errs = append(errs, fmt.Errorf("%s: %w", t.transports[a.index].Name(), a.err))
				if outstanding == 0 && launched < len(order) {
					launch() // refused: move on at once
					timer.Reset(t.headStart)
				}
				continue
			}
			winner = &a
		case <-timer.C:
			if launched < len(order) {
				launch() // hanging: race the next one
				timer.Reset(t.headStart)
			}
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			break wait
		}
	}
	// Stop the attempts still running (one that hangs would otherwise hold
	// its socket or bridge session as long as ctx lives), and close the
	// losers as they come in, without waiting for them.
	for i, cancel := range cancels {
		if winner == nil || start+i != winner.index {
			cancel()
		}
	}
	go func(pending int) {
		for ; pending > 0; pending-- {
			a := <-results
			if a.conn != nil {
				a.conn.Close()
			}
			a.cancel()
		}
	}(outstanding)
	if winner == nil {
		return nil, fmt.Errorf("fallback: every transport failed: %w", errors.Join(errs...))
	}
	t.mu.Lock()
	t.preferred = winner.index
	t.mu.Unlock()
	name := t.transports[winner.index].Name()
	if winner.index != 0 && t.onChange != nil {
		t.onChange(Change{From: t.transports[0].Name(), To: name, Reason: errors.Join(errs...)})
	}
	c := &conn{Conn: winner.conn, first: winner.first, name: name, t: t, cancel: winner.cancel,
		stop: make(chan struct{}), done: make(chan struct{})}
	if bc, ok := winner.conn.(*bridgeconn.Conn); ok && t.probe > 0 {
		go c.probeLoop(bc)
	} else {
		close(c.done)
	}
	return c, nil
}

// open dials tr and reads its first frame: it must be a welcome (or a
// disconnect, the server's refusal) for the transport to count as open.
func open(ctx context.Context, tr transport.Transport, req *transport.Request) (transport.Conn, []byte, error) {
	c, err := tr.Dial(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	frame, err := c.ReadFrame(ctx, nil)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("no welcome: %w", err)
	}
	codec, ok := protocol.CodecFor(c.Subprotocol())
	if !ok {
		c.Close()
		return nil, nil, fmt.Errorf("%w: %q", transport.ErrUnsupportedSubprotocol, c.Subprotocol())
	}
	var m protocol.Message
	if err := codec.DecodeMessage(frame, &m); err != nil || (m.Type != protocol.TypeWelcome && m.Type != protocol.TypeDisconnect) {
		c.Close()
		return nil, nil, fmt.Errorf("first frame is not a welcome: %.80q", frame)
	}
	return c, frame, nil
}

// conn is the winning connection, with its first frame held back for the
// first ReadFrame.
type conn struct {
	transport.Conn
	first  []byte
	name   string
	t      *Transport
	cancel context.CancelFunc

	mu        sync.Mutex // guards first
	closeOnce sync.Once
	stop      chan struct{} // closed by Close: the probe ends
	done      chan struct{} // closed when the probe has ended
}

// TransportName says which transport carries the connection now.
func (c *conn) TransportName() string {
	if bc, ok := c.Conn.(*bridgeconn.Conn); ok {
		return bc.Downstream()
	}
	return c.name
}

func (c *conn) ReadFrame(ctx context.Context, buf []byte) ([]byte, error) {
	c.mu.Lock()
	first := c.first
	c.first = nil
	c.mu.Unlock()
	if first != nil {
		return append(buf[:0], first...), nil
	}
	return c.Conn.ReadFrame(ctx, buf)
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
		c.Conn.Close()
		c.cancel()
	})
	return nil
}

// probeLoop tries, every probe interval, to move a bridged connection to a
// better downstream: a WebSocket re-attached at the cursor, or SSE when on
// long-polling.
func (c *conn) probeLoop(bc *bridgeconn.Conn) {
	defer close(c.done)
	stop := c.stop
	tick := time.NewTicker(c.t.probe)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		from := bc.Downstream()
		candidates := []bridgeconn.Downstream{bridgeconn.WebSocket{}}
		if from == "longpoll" {
			candidates = append(candidates, c.sseDownstream())
		}
		for _, d := range candidates {
			if d == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.t.headStart*2)
			go func() {
				select {
				case <-stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := bc.Switch(ctx, d)
			cancel()
			if err == nil {
				if c.t.onChange != nil {
					c.t.onChange(Change{From: from, To: d.Name(), Upgrade: true})
				}
				if d.Name() == "websocket" {
					c.t.mu.Lock()
					c.t.preferred = 0 // WebSockets pass again: dial them first next time
					c.t.mu.Unlock()
					return
				}
				break
			}
		}
	}
}

// sseDownstream returns the SSE downstream when the transports include one.
func (c *conn) sseDownstream() bridgeconn.Downstream {
	for _, tr := range c.t.transports {
		if s, ok := tr.(*sse.Transport); ok {
			return s.Downstream()
		}
	}
	return nil
}
