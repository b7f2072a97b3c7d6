package cable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
)

// Consumer is a connection to an ActionCable server that keeps itself
// connected and its subscriptions alive. Create it with Dial; stop it with
// Close. All methods are safe for concurrent use.
type Consumer struct {
	url       string
	o         options
	transport transport.Transport
	offer     []string

	ctx    context.Context // ends when the consumer stops
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when run returns; err is set then
	err    error

	unnotify func()        // unregisters from a transport.ChangeNotifier
	welcomed chan struct{} // closed at the first welcome
	events   *eventQueue

	mu         sync.Mutex
	live       *link // the welcomed connection; nil while down
	subs       map[string]*Subscription
	connected  bool      // a welcome has been seen at least once
	welcomedAt time.Time // when the live (or last) connection was welcomed
	stopped    bool      // stop has run: no new subscriptions

	hooking atomic.Bool // the frame hook runs: Close must not wait for run

	stats struct {
		frames, decodeErrors, unknownIdentifier, reconnects atomic.Uint64
	}
	// frameErrLog rate-limits the log of skipped frames: the time of the
	// last line (UnixNano) and the errors not logged since.
	frameErrLog struct {
		at      atomic.Int64
		skipped atomic.Uint64
	}
}

// link is one welcomed connection and the codec it speaks.
type link struct {
	conn  transport.Conn
	codec protocol.Codec
}

// name says which transport carries l now: a fallback connection can
// move between transports.
func (l *link) name(t transport.Transport) string {
	if d, ok := l.conn.(transport.Describer); ok {
		return d.TransportName()
	}
	return t.Name()
}

// Stats are counters since the Consumer was created.
type Stats struct {
	Frames            uint64 // frames received
	DecodeErrors      uint64 // frames skipped because they could not be decoded
	UnknownIdentifier uint64 // messages for an identifier with no subscription
	Reconnects        uint64 // successful connections after the first
}

// Dial connects to the ActionCable endpoint at url (ws://, wss://, or what
// the configured transport takes) and returns once the server's welcome has
// arrived.
//
// Failed attempts are retried with backoff until ctx is done, except
// refusals that cannot change: an unauthorized disconnect, an HTTP 4xx on
// the handshake, an unsupported subprotocol, and a connection that opens
// but gets no welcome within the handshake timeout (ErrNoWelcome: not an
// ActionCable endpoint, or one that cannot serve). ctx bounds only this
// initial connection; cancelling it later does not affect the Consumer.
func Dial(ctx context.Context, url string, opts ...Option) (*Consumer, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	c := &Consumer{
		url:       url,
		o:         o,
		transport: o.transportOrDefault(),
		done:      make(chan struct{}),
		welcomed:  make(chan struct{}),
		subs:      make(map[string]*Subscription),
	}
	for _, codec := range o.codecs {
		c.offer = append(c.offer, codec.Subprotocol())
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	c.events = newEventQueue(o.onEvent, o.maxEventsLag, o.logger)
	if n, ok := c.transport.(transport.ChangeNotifier); ok {
		c.unnotify = n.OnChange(func(ch transport.Change) {
			c.o.logger.Info("cable: transport changed", "from", ch.From, "to", ch.To, "reason", ch.Reason)
			c.events.emit(Event{Kind: EventTransportChanged, Transport: ch.To, From: ch.From, Upgrade: ch.Upgrade, Err: ch.Reason})
		})
	}

	lastErr := make(chan error, 1)
	go c.run(lastErr)
	select {
	case <-c.welcomed:
		return c, nil
	case <-c.done:
		return nil, c.err
	case <-ctx.Done():
		var last error
		select {
		case last = <-lastErr:
		default:
		}
		c.Close()
		return nil, fmt.Errorf("cable: dial %s: %w", transport.RedactURL(url), errors.Join(ctx.Err(), last))
	}
}

// Done is closed when the consumer has stopped for good; Err says why.
func (c *Consumer) Done() <-chan struct{} { return c.done }

// Err returns why the consumer stopped (ErrClosed after Close, or the
// server's refusal), or nil while it runs.
func (c *Consumer) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Context returns a context that is done once the consumer stops for
// good (Close, a final refusal, or a lost connection under
// WithReconnect(false)); context.Cause reports why, as Err does then. With
// context.AfterFunc it tells of the stop without a goroutine waiting.
func (c *Consumer) Context() context.Context { return c.ctx }

// Connected reports whether a welcomed connection is up right now.
func (c *Consumer) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live != nil
}

// Transport names the transport carrying the live connection now
// ("websocket", "sse", "longpoll"; a bridged connection can move between
// them while it lives), or "" while the consumer is not connected.
func (c *Consumer) Transport() string {
	l := c.liveLink()
	if l == nil {
		return ""
	}
	return l.name(c.transport)
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() Stats {
	return Stats{
		Frames:            c.stats.frames.Load(),
		DecodeErrors:      c.stats.decodeErrors.Load(),
		UnknownIdentifier: c.stats.unknownIdentifier.Load(),
		Reconnects:        c.stats.reconnects.Load(),
	}
}

// Close stops the consumer: the connection is closed, every subscription
// ends with ErrClosed (its Messages channel is closed), and Close waits for
// the connection goroutines to finish, which takes at most a couple of
// seconds (a polite close handshake). Events and handler callbacks already
// queued still run after Close returns. It is safe to call more than once,
// from any goroutine, including callbacks.
//
// A frame hook (WithFrameHook) runs on the connection goroutine that Close
// waits for, so Close called while a hook runs — from the hook itself or
// from elsewhere — stops the consumer without waiting: it returns at once,
// and Done is closed once the hook has returned and the connection is
// closed.
func (c *Consumer) Close() error {
	c.cancel(ErrClosed)
	if c.hooking.Load() {
		return nil
	}
	<-c.done
	return nil
}

// run owns the connection: it dials, serves, and redials until the
// consumer stops. lastErr receives each failed attempt's error (latest
// wins) for Dial's error message.
func (c *Consumer) run(lastErr chan error) {
	var final error
	defer func() {
		c.stop(final)
		close(c.done)
	}()
	attempt := 0
	for {
		welcomed, err := c.connect()
		if c.ctx.Err() != nil {
			final = context.Cause(c.ctx)
			return
		}
		connected := c.hasConnected()
		if isFinal(err, connected) || (!connected && c.o.noDialRetry) || (welcomed && c.o.noReconnect) {
			final = err
			return
		}
		select {
		case <-lastErr:
		default:
		}
		lastErr <- err
		if welcomed && c.lastedLong() {
			// A connection that was healthy for a while starts the
			// delays over; one dropped soon after its welcome (a server
			// that drops a command it refuses) keeps them growing.
			attempt = 0
		}
		attempt++
		delay := c.o.backoff.Delay(attempt)
		c.o.logger.Info("cable: reconnecting", "attempt", attempt, "delay", delay, "err", err)
		c.events.emit(Event{Kind: EventReconnecting, Transport: c.transport.Name(), Attempt: attempt, Delay: delay, Err: err})
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			final = context.Cause(c.ctx)
			return
		}
	}
}

// isFinal tells whether err ends the consumer. Before the first welcome,
// refusals that a retry cannot change end it too, so Dial fails fast.
func isFinal(err error, hasConnected bool) bool {
	var de *DisconnectError
	if errors.As(err, &de) {
		return de.Final()
	}
	if hasConnected {
		return false
	}
	var he *transport.HandshakeError
	if errors.As(err, &he) && he.Permanent() {
		return true
	}
	return errors.Is(err, transport.ErrUnsupportedSubprotocol) || errors.Is(err, transport.ErrHeaderUnsupported) ||
		errors.Is(err, ErrNoWelcome)
}

// lastedLong reports whether the last welcomed connection lived at least
// the stale timeout (two Rails pings) after its welcome.
func (c *Consumer) lastedLong() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.welcomedAt) >= c.o.stale
}

func (c *Consumer) hasConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// connect makes one connection attempt and serves it until it ends.
// welcomed reports whether the connection got as far as a welcome.
func (c *Consumer) connect() (welcomed bool, err error) {
	deadline := time.Now().Add(c.o.handshake)
	conn, err := c.dial(deadline)
	if err != nil {
		return false, err
	}
	codec, ok := c.codecFor(conn.Subprotocol())
	if !ok {
		conn.Close()
		return false, fmt.Errorf("cable: %w: %q", transport.ErrUnsupportedSubprotocol, conn.Subprotocol())
	}
	return c.serve(conn, codec, deadline)
}

// dial opens a connection by the handshake deadline. The dial runs on a
// goroutine of its own: its deep call stack (HTTP, TLS, proxies) would
// otherwise grow the stack of the run goroutine, which then waits in reads
// for the connection's whole life, and a goroutine's stack does not shrink
// below twice what it holds while it waits (an idle bridge session would
// keep 8 KiB of stack instead of 4).
func (c *Consumer) dial(deadline time.Time) (transport.Conn, error) {
	hctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel() // a connection returned is not affected (transport.Transport)
	type dialed struct {
		conn transport.Conn
		err  error
	}
	done := make(chan dialed, 1)
	go func() {
		header, err := c.o.headers(hctx)
		if err != nil {
			done <- dialed{err: fmt.Errorf("cable: header function: %w", err)}
			return
		}
		conn, err := c.transport.Dial(hctx, &transport.Request{URL: c.url, Header: header, Subprotocols: c.offer})
		done <- dialed{conn, err}
	}()
	d := <-done // Dial returns once hctx ends, at the latest
	return d.conn, d.err
}

func (c *Consumer) codecFor(subprotocol string) (protocol.Codec, bool) {
	for _, codec := range c.o.codecs {
		if codec.Subprotocol() == subprotocol {
			return codec, true
		}
	}
	if subprotocol == "" {
		return protocol.JSONCodec{}, true
	}
	return nil, false
}

// serve reads frames from conn until it fails, the consumer stops, or the
// monitor finds it stale or unwelcomed. It runs on the run goroutine.
// welcomeBy is when the handshake timeout ends.
func (c *Consumer) serve(conn transport.Conn, codec protocol.Codec, welcomeBy time.Time) (welcomed bool, err error) {
	// The read's context is not the consumer's: cancelling it drops the
	// connection at once, which suits a stale one, while Close says goodbye
	// with a close frame (see monitor).
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	l := &link{conn: conn, codec: codec}
	stopMonitor := c.monitor(cancel, l, welcomeBy)
	defer func() {
		stopMonitor()
		if welcomed {
			c.lost(l, err)
		}
		conn.Close()
	}()

	var (
		buf []byte
		m   protocol.Message
	)
	for {
		buf, err = conn.ReadFrame(ctx, buf)
		if err != nil {
			switch {
			case c.ctx.Err() != nil:
				err = context.Cause(c.ctx)
			case ctx.Err() != nil:
				err = context.Cause(ctx)
			}
			return welcomed, err
		}
		c.stats.frames.Add(1)
		if c.o.frameLimit > 0 && len(buf) > c.o.frameLimit {
			return welcomed, fmt.Errorf("cable: %w: %d bytes, the limit is %d", transport.ErrFrameTooLarge, len(buf), c.o.frameLimit)
		}
		if derr := codec.DecodeMessage(buf, &m); derr != nil {
			c.frameError(derr, buf)
			continue
		}
		if c.o.frameHook != nil {
			c.hooking.Store(true)
			c.o.frameHook(Frame{Raw: buf, Message: &m, Codec: codec})
			c.hooking.Store(false)
		}
		switch m.Type {
		case protocol.TypeWelcome:
			if welcomed {
				// Behind a proxy (the Cableway bridge), a welcome on a
				// live connection means the proxy's own upstream was
				// redialled: every subscription is gone there.
				c.o.logger.Info("cable: welcome again on a live connection; resubscribing")
				c.lost(l, errUpstreamReconnected)
			}
			welcomed = true
			c.welcome(l)
		case protocol.TypePing:
		case protocol.TypeConfirm, protocol.TypeReject, protocol.TypeMessage:
			c.dispatch(&m, buf)
		case protocol.TypeDisconnect:
			return welcomed, DisconnectOf(&m)
		}
	}
}

// monitor watches one connection until the returned stop is called. It
// drops the connection (cancelling the read) when no welcome arrives by
// welcomeBy or, once welcomed, no frame within the stale timeout; it
// repeats unanswered subscribes; and when the consumer stops it closes the
// connection politely, which ends the read. The frame count it watches is
// the consumer's total, which only the current connection advances. It
// runs on timers, not a goroutine of its own: an idle connection costs no
// stack for it. stop waits for a check in progress and prevents any later.
func (c *Consumer) monitor(cancel context.CancelCauseFunc, l *link, welcomeBy time.Time) (stop func()) {
	m := &monitor{c: c, l: l, cancel: cancel, lastSeen: c.stats.frames.Load(), lastChange: time.Now()}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.every = max(min(c.o.resubscribe, c.o.stale/4), time.Millisecond)
	m.tick = time.AfterFunc(m.every, m.check)
	m.handshake = time.AfterFunc(time.Until(welcomeBy), func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.stopped && !c.isLive(l) {
			m.stopped = true
			cancel(fmt.Errorf("%w within %v", ErrNoWelcome, c.o.handshake))
		}
	})
	m.unwatch = context.AfterFunc(c.ctx, func() { l.conn.Close() })
	return m.stop
}

// monitor is the state of Consumer.monitor.
type monitor struct {
	c      *Consumer
	l      *link
	cancel context.CancelCauseFunc
	every  time.Duration

	mu              sync.Mutex
	stopped         bool
	tick, handshake *time.Timer
	unwatch         func() bool
	lastSeen        uint64
	lastChange      time.Time
}

func (m *monitor) check() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	c, now := m.c, time.Now()
	if n := c.stats.frames.Load(); n != m.lastSeen || c.hooking.Load() {
		// A frame hook holding the reader back (backpressure) is not
		// silence from the server.
		m.lastSeen, m.lastChange = n, now
	}
	// The stale timeout applies from the welcome on; before it the
	// handshake timeout does.
	if c.isLive(m.l) {
		if now.Sub(m.lastChange) > c.o.stale {
			m.stopped = true
			m.cancel(fmt.Errorf("%w: no frame for %v", ErrStale, now.Sub(m.lastChange).Round(time.Millisecond)))
			return
		}
		c.resubscribePending(m.l, now)
	}
	m.tick.Reset(m.every)
}

func (m *monitor) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	m.tick.Stop()
	m.handshake.Stop()
	m.unwatch()
}

func (c *Consumer) isLive(l *link) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live == l
}

// frameErrorLogEvery is the least time between two log lines about
// skipped frames: a server sending garbage as fast as it can must not turn
// into as many log lines (each error is still counted in Stats and
// reported as an event).
const frameErrorLogEvery = time.Second

func (c *Consumer) frameError(err error, frame []byte) {
	c.stats.decodeErrors.Add(1)
	c.events.emit(Event{Kind: EventFrameError, Transport: c.transport.Name(), Err: err})
	now := time.Now().UnixNano()
	last := c.frameErrLog.at.Load()
	if last != 0 && now-last < int64(frameErrorLogEvery) || !c.frameErrLog.at.CompareAndSwap(last, now) {
		c.frameErrLog.skipped.Add(1)
		return
	}
	const maxShown = 256
	shown := frame
	if len(shown) > maxShown {
		shown = shown[:maxShown]
	}
	args := []any{"err", err, "frame", string(shown), "size", len(frame)}
	if n := c.frameErrLog.skipped.Swap(0); n > 0 {
		args = append(args, "not_logged_before", n)
	}
	c.o.logger.Warn("cable: frame skipped", args...)
}

// welcome makes l the live link and sends every subscription again.
func (c *Consumer) welcome(l *link) {
	c.mu.Lock()
	reconnected := c.connected
	c.connected = true
	c.live = l
	c.welcomedAt = time.Now()
	subs := make([]*Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()

	if reconnected {
		c.stats.reconnects.Add(1)
	}
	name := l.name(c.transport)
	c.o.logger.Info("cable: connected", "transport", name, "codec", l.codec.Subprotocol(), "reconnected", reconnected)
	c.events.emit(Event{Kind: EventConnected, Transport: name, Reconnected: reconnected})
	select {
	case <-c.welcomed:
	default:
		close(c.welcomed)
	}
	now := time.Now()
	for _, s := range subs {
		s.markPending(now)
		c.sendSubscribe(l, s)
	}
}

// lost is called when the welcomed link l ends.
func (c *Consumer) lost(l *link, cause error) {
	willReconnect := c.ctx.Err() == nil && !isFinal(cause, true)
	c.mu.Lock()
	if c.live == l {
		c.live = nil
	}
	subs := make([]*Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	c.o.logger.Info("cable: disconnected", "err", cause, "will_reconnect", willReconnect)
	c.events.emit(Event{Kind: EventDisconnected, Transport: l.name(c.transport), WillReconnect: willReconnect, Err: cause})
	if willReconnect {
		for _, s := range subs {
			s.disconnected()
		}
	}
}

// stop ends every subscription when the consumer stops for good.
func (c *Consumer) stop(final error) {
	if final == nil {
		final = ErrClosed
	}
	c.err = final
	c.cancel(final)
	c.mu.Lock()
	subs := c.subs
	c.subs = map[string]*Subscription{}
	c.live = nil
	c.stopped = true
	c.mu.Unlock()
	for _, s := range subs {
		s.end(final)
	}
	if !errors.Is(final, ErrClosed) {
		c.o.logger.Warn("cable: stopped", "err", final)
	}
	if c.unnotify != nil {
		c.unnotify()
	}
	c.events.emit(Event{Kind: EventStopped, Transport: c.transport.Name(), Err: final})
	c.events.close()
}

// dispatch routes a confirm, reject or channel message to its subscription.
func (c *Consumer) dispatch(m *protocol.Message, frame []byte) {
	c.mu.Lock()
	s := c.subs[string(m.Identifier)]
	c.mu.Unlock()
	if s == nil {
		if c.o.frameHook != nil {
			return // the hook's owner routes frames itself
		}
		c.stats.unknownIdentifier.Add(1)
		c.o.logger.Debug("cable: frame for no subscription", "type", m.Type.String(), "identifier", string(m.Identifier))
		return
	}
	switch m.Type {
	case protocol.TypeConfirm:
		s.confirmed()
	case protocol.TypeReject:
		c.remove(s)
		s.rejected()
	case protocol.TypeMessage:
		s.deliver(m.Body.Clone())
	}
}

func (c *Consumer) remove(s *Subscription) {
	c.mu.Lock()
	if c.subs[s.id] == s {
		delete(c.subs, s.id)
	}
	c.mu.Unlock()
}

// errUpstreamReconnected is the cause reported when a proxy's upstream
// was redialled under a live connection.
var errUpstreamReconnected = errors.New("cable: the server behind the proxy reconnected")

// liveLink returns the live link, or nil.
func (c *Consumer) liveLink() *link {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// send encodes cmd and writes it on l. ctx bounds the call, the write
// timeout the write (see WithWriteTimeout).
func (c *Consumer) send(ctx context.Context, l *link, cmd *protocol.Command) error {
	frame, err := l.codec.AppendCommand(nil, cmd)
	if err != nil {
		return fmt.Errorf("cable: encode %s: %w", cmd.Command, err)
	}
	// A transport closes its connection when the context of a write ends
	// (a partial frame cannot be taken back), and the connection is every
	// subscription's: the caller's ctx must fail this call only. So a done
	// ctx sends nothing, and the write itself runs under the write timeout
	// alone while the call waits for it or for ctx.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cable: send %s: nothing sent: %w", cmd.Command, err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.write)
	if ctx.Done() == nil {
		defer cancel()
		return sendError(cmd, l.conn.WriteFrame(wctx, frame))
	}
	result := make(chan error, 1)
	go func() {
		defer cancel()
		result <- l.conn.WriteFrame(wctx, frame)
	}()
	select {
	case err := <-result:
		return sendError(cmd, err)
	case <-ctx.Done():
		return fmt.Errorf("cable: send %s: the write goes on without the caller: %w", cmd.Command, ctx.Err())
	}
}

// sendError wraps the error of writing cmd.
func sendError(cmd *protocol.Command, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, transport.ErrNotSent):
		// Known not delivered (a bridge whose upstream is gone): the
		// same as finding the connection down.
		return fmt.Errorf("cable: send %s: %w: %w", cmd.Command, ErrNotConnected, err)
	}
	return fmt.Errorf("cable: send %s: %w", cmd.Command, err)
}

func (c *Consumer) sendSubscribe(l *link, s *Subscription) {
	err := c.send(c.ctx, l, &protocol.Command{Command: protocol.CommandSubscribe, Identifier: s.id})
	if err != nil {
		// The monitor repeats the subscribe, or the reconnect does.
		c.o.logger.Debug("cable: subscribe not sent", "identifier", s.id, "err", err)
	}
}

// resubscribePending repeats the subscribe of every subscription still
// waiting for an answer after the resubscribe interval.
func (c *Consumer) resubscribePending(l *link, now time.Time) {
	c.mu.Lock()
	var due []*Subscription
	for _, s := range c.subs {
		if s.dueForResend(now, c.o.resubscribe) {
			due = append(due, s)
		}
	}
	c.mu.Unlock()
	for _, s := range due {
		c.sendSubscribe(l, s)
	}
}

// SendCommand encodes cmd with the live connection's codec and sends it,
// bypassing subscription bookkeeping: the server's answers reach only a
// frame hook (see WithFrameHook). It is meant for proxies that relay
// their clients' commands. It returns ErrNotConnected while down.
func (c *Consumer) SendCommand(ctx context.Context, cmd *protocol.Command) error {
	l := c.liveLink()
	if l == nil {
		return ErrNotConnected
	}
	return c.send(ctx, l, cmd)
}

// Subscribe subscribes to the channel identified by identifier (see
// protocol.NewIdentifier) and returns once the server confirms. It fails
// with ErrRejected when the server rejects the subscription, and with
// ctx's error when ctx ends first (the subscription is then withdrawn).
// While the consumer is reconnecting, Subscribe waits for the connection.
//
// Messages that arrive before the confirmation are kept and delivered.
func (c *Consumer) Subscribe(ctx context.Context, identifier string, opts ...SubscribeOption) (*Subscription, error) {
	s := newSubscription(c, identifier, opts)
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		<-c.done
		s.end(c.err) // stops a handler's goroutine
		return nil, c.err
	}
	if _, dup := c.subs[identifier]; dup {
		c.mu.Unlock()
		err := fmt.Errorf("%w: %s", ErrDuplicateSubscription, identifier)
		s.end(err)
		return nil, err
	}
	c.subs[identifier] = s
	l := c.live
	c.mu.Unlock()

	if l != nil {
		s.markPending(time.Now())
		c.sendSubscribe(l, s)
	}
	select {
	case err := <-s.first:
		if err != nil {
			return nil, err
		}
		return s, nil
	case <-ctx.Done():
		s.Unsubscribe(context.Background())
		return nil, fmt.Errorf("cable: subscribe %s: %w", identifier, ctx.Err())
	}
}

// eventQueue runs the event handler on its own goroutine, in order.
type eventQueue struct {
	fn     func(Event)
	logger *slog.Logger
	ch     chan Event
	mu     sync.Mutex
	closed bool
}

func newEventQueue(fn func(Event), size int, logger *slog.Logger) *eventQueue {
	q := &eventQueue{fn: fn, logger: logger}
	if fn == nil {
		return q // no channel, no goroutine: consumers without a handler stay small
	}
	q.ch = make(chan Event, size)
	go func() {
		for e := range q.ch {
			fn(e)
		}
	}()
	return q
}

func (q *eventQueue) emit(e Event) {
	if q.fn == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	select {
	case q.ch <- e:
	default:
		q.logger.Warn("cable: event handler too slow; event dropped", "event", e.String())
	}
}

func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		if q.fn != nil {
			close(q.ch)
		}
	}
}
