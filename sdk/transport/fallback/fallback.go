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
// runs through the bridge, it keeps the same bridge session and moves
// between the session's downstreams (a re-attached WebSocket, SSE,
// long-polling) at its cursor, so no frame is lost or repeated:
//
//   - Every probe interval it tries the better downstreams beside the
//     live one, best first, and moves up to one only once a frame has
//     come through it. A probe that hangs or meets a buffering proxy costs
//     the live downstream nothing, and Close stops it at once.
//   - When the live downstream brings nothing, not even a ping, for the
//     stall timeout (a proxy that began to buffer, a socket that went
//     silent), it moves down the same way, before the consumer's stale
//     timeout would drop the session.
package fallback

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	// DefaultStallTimeout is below the consumer's stale timeout (6 s) and
	// above Rails' ping interval (3 s).
	DefaultStallTimeout = 4 * time.Second
)

// probeTimeout bounds one attempt to move to another downstream: a working
// one brings a frame at once (the bridge sends its latest ping on attach),
// or within one Rails ping interval.
const probeTimeout = 5 * time.Second

// Change reports a connection moving from one transport to another.
type Change = transport.Change

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

// WithStallTimeout sets how long a bridged connection's downstream may
// bring no frame before the connection moves down to the next one
// (default 4 s; keep it below the consumer's stale timeout).
func WithStallTimeout(d time.Duration) Option {
	return func(t *Transport) {
		if d > 0 {
			t.stall = d
		}
	}
}

// WithOnChange sets a function told of every change of transport. It is
// called from the goroutine that made the change and must not block.
// (OnChange adds more; a consumer of sdk/cable registers by itself.)
func WithOnChange(f func(Change)) Option {
	return func(t *Transport) { t.onChange = f }
}

// WithWebSocket configures the WebSocket transport that Bridged dials Rails
// with, and that a bridged connection's probe re-attaches to the bridge
// with: headers, HTTP client and TLS, compression, read limit. New
// ignores it (its transports come configured).
func WithWebSocket(opts ...websocket.Option) Option {
	return func(t *Transport) { t.wsOpts = append(t.wsOpts, opts...) }
}

// WithSSE configures the SSE transport of Bridged (HTTP client and TLS,
// largest frame). New ignores it.
func WithSSE(opts ...sse.Option) Option {
	return func(t *Transport) { t.sseOpts = append(t.sseOpts, opts...) }
}

// WithLongPoll configures the long-poll transport of Bridged (HTTP client
// and TLS, poll timeout). New ignores it.
func WithLongPoll(opts ...longpoll.Option) Option {
	return func(t *Transport) { t.lpOpts = append(t.lpOpts, opts...) }
}

// WithoutLongPoll leaves long-polling out of Bridged's set: WebSocket,
// then SSE only. New ignores it.
func WithoutLongPoll() Option {
	return func(t *Transport) { t.noLongPoll = true }
}

// Transport tries transports in order. It is safe for concurrent use.
type Transport struct {
	transports []transport.Transport
	headStart  time.Duration
	probe      time.Duration
	stall      time.Duration
	onChange   func(Change)

	// Bridged's settings (see WithWebSocket and the others).
	wsOpts     []websocket.Option
	sseOpts    []sse.Option
	lpOpts     []longpoll.Option
	noLongPoll bool

	mu        sync.Mutex
	listeners []listener // OnChange's, in registration order
	nextID    int
	preferred int    // index of the transport that last opened
	current   string // the transport the latest connection used
}

// New returns a fallback over transports, best first.
func New(transports []transport.Transport, opts ...Option) *Transport {
	t := &Transport{transports: transports, headStart: DefaultHeadStart, probe: DefaultProbeInterval, stall: DefaultStallTimeout}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Bridged returns the usual setup: a WebSocket straight to the consumer's
// URL (Rails), then SSE and long-polling through the bridge at bridgeURL
// (e.g. "https://example.com/cable-bridge"), each configured by
// WithWebSocket, WithSSE and WithLongPoll. With sdk/cable:
//
//	cable.Dial(ctx, "wss://example.com/cable",
//		cable.WithTransport(fallback.Bridged("https://example.com/cable-bridge")))
//
// The consumer reports the moves between transports as events.
func Bridged(bridgeURL string, opts ...Option) *Transport {
	t := New(nil, opts...)
	t.transports = []transport.Transport{websocket.New(t.wsOpts...), sse.New(bridgeURL, t.sseOpts...)}
	if !t.noLongPoll {
		t.transports = append(t.transports, longpoll.New(bridgeURL, t.lpOpts...))
	}
	return t
}

// OnChange registers f to be told of every change of transport, as
// WithOnChange's function is; remove unregisters it. It implements
// transport.ChangeNotifier. A Transport remembers what worked for the
// next dial, so it is best used by one consumer; f hears the changes of
// every connection the Transport dials.
func (t *Transport) OnChange(f func(Change)) (remove func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := t.nextID
	t.nextID++
	t.listeners = append(t.listeners, listener{id, f})
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.listeners = slices.DeleteFunc(t.listeners, func(l listener) bool { return l.id == id })
	}
}

type listener struct {
	id int
	f  func(Change)
}

// notify tells WithOnChange's function and the listeners of ch.
func (t *Transport) notify(ch Change) {
	t.mu.Lock()
	fs := make([]func(Change), 0, len(t.listeners)+1)
	if t.onChange != nil {
		fs = append(fs, t.onChange)
	}
	for _, l := range t.listeners {
		fs = append(fs, l.f)
	}
	t.mu.Unlock()
	for _, f := range fs {
		f(ch)
	}
}

// Name returns "fallback".
func (*Transport) Name() string { return transport.NameFallback }

type attempt struct {
	index  int
	conn   transport.Conn
	first  []byte
	err    error
	cancel context.CancelFunc
	unlink func() bool // stops ctx's end from cancelling the attempt
}

// named prefixes err with the transport's name unless the error names
// it already ("websocket: dial …").
func named(name string, err error) error {
	if strings.HasPrefix(err.Error(), name+":") {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
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
	began := make([]time.Time, 0, len(order))
	var errs []error
	cancels := make([]context.CancelFunc, 0, len(order))
	unlinks := make([]func() bool, 0, len(order))
	launch := func() {
		i := launched
		launched++
		outstanding++
		// The caller's ctx bounds the attempt, not the connection it
		// returns: a winner is unlinked from it (a transport's conn may
		// stay bound to the context its first frame was read with).
		actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		unlink := context.AfterFunc(ctx, cancel)
		cancels = append(cancels, cancel)
		unlinks = append(unlinks, unlink)
		began = append(began, time.Now())
		go func() {
			a := attempt{index: start + i, cancel: cancel, unlink: unlink}
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
				errs = append(errs, named(t.transports[a.index].Name(), a.err))
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
	// The attempts still running hang: say so, then stop them (one that
	// hangs would otherwise hold its socket or bridge session as long as
	// ctx lives), and close the losers as they come in, without waiting.
	for i, cancel := range cancels {
		if winner != nil && start+i == winner.index {
			continue
		}
		if winner != nil && start+i < winner.index {
			errs = append(errs, fmt.Errorf("%s: no welcome within %v", order[i].Name(), time.Since(began[i]).Round(time.Millisecond)))
		}
		cancel()
		unlinks[i]()
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
	if !winner.unlink() { // ctx ended as the winner came in: its attempt is cancelled
		winner.conn.Close()
		winner.cancel()
		return nil, fmt.Errorf("fallback: %w", context.Cause(ctx))
	}
	name := t.transports[winner.index].Name()
	t.mu.Lock()
	t.preferred = winner.index
	from := t.current
	if from == "" {
		from = order[0].Name()
	}
	t.current = name
	t.mu.Unlock()
	if name != from {
		t.notify(Change{From: from, To: name, Reason: errors.Join(errs...)})
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &conn{Conn: winner.conn, first: winner.first, name: name, t: t, cancel: winner.cancel,
		ctx: cctx, stop: cancel, done: make(chan struct{})}
	if bc, ok := winner.conn.(*bridgeconn.Conn); ok {
		go c.watch(bc, t.ladder())
	} else {
		close(c.done)
	}
	return c, nil
}

// ladder lists the downstreams a bridge session can move between, best
// first: a WebSocket re-attached to the bridge (with the settings of the
// first WebSocket transport, if any), then the bridge transports in order.
func (t *Transport) ladder() []bridgeconn.Downstream {
	var ws bridgeconn.WebSocket
	for _, tr := range t.transports {
		if w, ok := tr.(*websocket.Transport); ok {
			ws.Transport = w
			break
		}
	}
	l := []bridgeconn.Downstream{ws}
	for _, tr := range t.transports {
		if d, ok := bridgeconn.DownstreamOf(tr); ok {
			l = append(l, d)
		}
	}
	return l
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
	cancel context.CancelFunc // the winning attempt's context

	mu        sync.Mutex // guards first
	closeOnce sync.Once
	ctx       context.Context // ends at Close: the watch stops
	stop      context.CancelFunc
	done      chan struct{} // closed when the watch has ended
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

// Close stops the watch (and any move it is making) and closes the
// connection: it returns within the connection's own Close bound.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		c.stop()
		<-c.done
		c.Conn.Close()
		c.cancel()
	})
	return nil
}

// watch keeps a bridged connection on the best downstream that works: it
// probes upward every probe interval (in the background, one attempt at
// a time) and moves down when the live downstream stalls.
func (c *conn) watch(bc *bridgeconn.Conn, ladder []bridgeconn.Downstream) {
	defer close(c.done)
	var probeC <-chan time.Time
	if c.t.probe > 0 {
		tick := time.NewTicker(c.t.probe)
		defer tick.Stop()
		probeC = tick.C
	}
	stallTick := time.NewTicker(max(c.t.stall/4, time.Millisecond))
	defer stallTick.Stop()
	var (
		probing   context.CancelFunc // non-nil while a probe runs
		probeDone = make(chan struct{})
	)
	defer func() {
		if probing != nil {
			probing()
			<-probeDone
		}
	}()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-probeC:
			if probing != nil || level(bc, ladder) == 0 {
				continue
			}
			pctx, cancel := context.WithCancel(c.ctx)
			probing = cancel
			go func() {
				c.climb(pctx, bc, ladder)
				probeDone <- struct{}{}
			}()
		case <-probeDone:
			probing()
			probing = nil
		case <-stallTick.C:
			idle := bc.Idle()
			i := level(bc, ladder)
			if idle < c.t.stall || i+1 >= len(ladder) {
				continue
			}
			if probing != nil { // the stall comes first
				probing()
				<-probeDone
				probing = nil
			}
			c.move(c.ctx, bc, ladder[i+1], false,
				fmt.Errorf("%s: no frame, not even a ping, for %v", ladder[i].Name(), idle.Round(time.Millisecond)))
		}
	}
}

// level is the live downstream's place in the ladder.
func level(bc *bridgeconn.Conn, ladder []bridgeconn.Downstream) int {
	name := bc.Downstream()
	for i, d := range ladder {
		if d.Name() == name {
			return i
		}
	}
	return len(ladder)
}

// climb tries the downstreams better than the live one, best first, and
// stops at the first that works.
func (c *conn) climb(ctx context.Context, bc *bridgeconn.Conn, ladder []bridgeconn.Downstream) {
	for _, d := range ladder[:min(level(bc, ladder), len(ladder))] {
		if ctx.Err() != nil || c.move(ctx, bc, d, true, nil) {
			return
		}
	}
}

// move switches bc to d within the probe timeout and reports the change.
func (c *conn) move(ctx context.Context, bc *bridgeconn.Conn, d bridgeconn.Downstream, upgrade bool, reason error) bool {
	from := bc.Downstream()
	sctx, cancel := context.WithTimeout(ctx, probeTimeout)
	err := bc.Switch(sctx, d)
	cancel()
	to := bc.Downstream()
	if to == from {
		return false
	}
	c.t.mu.Lock()
	c.t.current = to
	if to == transport.NameWebSocket {
		c.t.preferred = 0 // WebSockets pass again: dial them first next time
	}
	c.t.mu.Unlock()
	c.t.notify(Change{From: from, To: to, Upgrade: upgrade, Reason: reason})
	return err == nil
}
