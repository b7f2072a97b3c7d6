package compat

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/internal/ratelimit"
	core "github.com/cableway/cableway/server/session"
)

// A session is one upstream cable.Consumer (one ActionCable connection,
// redialled when lost) and the seed events it produced. The consumer's
// subscriptions do the subscribing: sending, repeating unanswered
// subscribes, and subscribing again after every reconnect. The session
// turns the frames it sees (WithFrameHook, on the consumer's reader, in
// upstream order) into seed events, and learns of lost connections from
// the consumer's events (WithEventHandler) or, at the latest, from the
// next welcome.

// maxPendingLosses is how many upstream connections in a row may be lost
// while a subscribe is waiting for its answer before the subscription is
// given up (reported as rejected): a subscribe that makes Rails drop the
// connection would otherwise be sent again after every reconnect.
const maxPendingLosses = 3

// reason is what a disconnected event tells: Rails' reason or the
// bridge's, and whether the client should expect a reconnect.
type reason struct {
	text      string
	reconnect bool
}

var (
	reasonConnectionLost = reason{"connection_lost", true}
	reasonSessionEnded   = reason{"session_ended", false}
	reasonServerRestart  = reason{protocol.ReasonServerRestart, true}
)

// reasonOf reads the cause of a lost or stopped connection.
func reasonOf(err error) reason {
	var de *cable.DisconnectError
	if errors.As(err, &de) {
		return reason{de.Reason, de.Reconnect}
	}
	return reasonConnectionLost
}

func (r reason) message() []byte {
	msg, _ := json.Marshal(struct {
		Reason    string `json:"reason"`
		Reconnect bool   `json:"reconnect"`
	}{r.text, r.reconnect})
	return msg
}

// newID returns 128 random bits, base64url encoded (22 characters).
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics if the OS cannot supply randomness)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// chanIDOf is the chan_id of an identifier: stable for the identifier
// text, opaque, 96 bits.
func chanIDOf(identifier string) string {
	sum := sha256.Sum256([]byte(identifier))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// channel is one identifier the client subscribed to in a session.
type channel struct {
	identifier []byte // the identifier string as sent to Rails: JSON object text
	chanID     string
	order      uint64 // subscription order, for stable iteration
	confirmed  bool   // on the current connection
	since      uint64 // the connection (welcome count) on which it was added
	losses     int    // connections lost in a row while its subscribe waited
	sub        *cable.Subscription
	ready      chan struct{}      // closed once Subscribe has returned (sub is set if it succeeded)
	withdraw   context.CancelFunc // ends a Subscribe still waiting
}

type session struct {
	h  *Handler
	e  *entry
	id string          // the seed's session_id: new for every session of an events id
	c  *cable.Consumer // set once welcomed

	unreserve func() // gives the session's place in the limits back
	q         *queue

	sendMu sync.Mutex // orders a POST's commands with the subscription set

	mu       sync.Mutex
	chans    map[string]*channel // by identifier string
	chanSeq  uint64
	gen      uint64  // welcomes seen by the frame hook: the current connection
	evGen    uint64  // EventConnected seen by the event handler
	lostGen  uint64  // the last connection whose loss was reported
	frameWhy *reason // the disconnect frame of the current connection, if any
	stopWhy  *reason // why the session is being stopped by the handler
	ended    bool
	freed    bool             // its place in the limits is given back
	commands ratelimit.Bucket // command rate
	upGen    uint64           // the consumer whose hooks count (see hooks)

	shared *shared // on a shared store; nil in memory
}

// hooks returns the frame hook and event handler of a new upstream
// consumer: once a later consumer replaces it (a takeover on a shared
// store) or it is let go, what it reports is ignored.
func (s *session) hooks() (func(cable.Frame), func(cable.Event)) {
	s.mu.Lock()
	s.upGen++
	g := s.upGen
	s.mu.Unlock()
	current := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.upGen == g
	}
	return func(f cable.Frame) {
			if current() {
				s.onFrame(f)
			}
		}, func(ev cable.Event) {
			if current() {
				s.onEvent(ev)
			}
		}
}

// consumer returns the session's upstream consumer: nil while it is being
// dialled, or on a process that does not own a shared session.
func (s *session) consumer() *cable.Consumer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func newSession(h *Handler, e *entry, unreserve func()) *session {
	now := time.Now()
	return &session{
		h: h, e: e, id: newID(), unreserve: unreserve,
		q:        newMemoryQueue(e.seq.Load(), e.seq.Store, h.cfg.logger.Warn, h.cfg.budget),
		chans:    map[string]*channel{},
		commands: ratelimit.Full(2*h.cfg.commandsPerSecond, now),
	}
}

// newBucket returns a full command-rate bucket.
func newBucket(h *Handler) ratelimit.Bucket {
	return ratelimit.Full(2*h.cfg.commandsPerSecond, time.Now())
}

// onFrame is the consumer's frame hook: it runs on the upstream reader,
// in upstream order, before the consumer acts on the frame.
func (s *session) onFrame(f cable.Frame) {
	m := f.Message
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	switch m.Type {
	case protocol.TypeWelcome:
		s.gen++
		if s.gen > 1 {
			s.h.stats.upstreamReconnects.Add(1)
			// The previous connection is gone; if the consumer's event
			// has not told yet, this welcome does, before anything of
			// the new connection.
			why := reasonConnectionLost
			if s.frameWhy != nil {
				why = *s.frameWhy
			}
			s.lostLocked(s.gen-1, now, why)
		}
		s.frameWhy = nil
	case protocol.TypeDisconnect:
		why := reasonOf(cable.DisconnectOf(m))
		s.frameWhy = &why
	case protocol.TypeConfirm, protocol.TypeReject, protocol.TypeMessage:
		ch := s.chans[string(m.Identifier)]
		if ch == nil {
			return // unsubscribed meanwhile
		}
		ev := event{chanID: ch.chanID, at: now, identifier: ch.identifier}
		switch m.Type {
		case protocol.TypeConfirm:
			if ch.confirmed {
				return // the subscribe was repeated
			}
			ch.confirmed, ch.losses = true, 0
			s.saveStateLocked()
			ev.typ = "connected"
		case protocol.TypeReject:
			delete(s.chans, string(m.Identifier)) // the consumer drops it too
			s.saveStateLocked()
			ev.typ = "rejected"
		default:
			ev.typ = "received"
			ev.message = []byte("null")
			if !m.Body.IsZero() {
				msg, err := m.Body.AppendJSON(nil) // a copy: m aliases the read buffer
				if err != nil {
					s.h.cfg.logger.Warn("compat: message not representable as JSON; skipped", "session", s.id, "err", err)
					return
				}
				ev.message = bridgewire.ValidText(msg)
			}
		}
		s.q.push(ev)
	}
}

// onEvent is the consumer's event handler: it reports a lost connection
// as soon as the consumer knows, and ends the session when the consumer
// stops for good.
func (s *session) onEvent(ev cable.Event) {
	switch ev.Kind {
	case cable.EventConnected:
		s.mu.Lock()
		s.evGen++
		s.mu.Unlock()
	case cable.EventDisconnected:
		s.mu.Lock()
		// Events run behind the reader: if a newer welcome came first,
		// it has reported this loss already.
		if s.evGen == s.gen && !s.ended {
			s.lostLocked(s.gen, time.Now(), reasonOf(ev.Err))
		}
		s.mu.Unlock()
	case cable.EventStopped:
		s.finish(reasonOf(ev.Err))
	}
}

// orderedLocked returns the channels in subscription order.
func (s *session) orderedLocked() []*channel {
	out := make([]*channel, 0, len(s.chans))
	for _, ch := range s.chans {
		out = append(out, ch)
	}
	slices.SortFunc(out, func(a, b *channel) int { return cmp.Compare(a.order, b.order) })
	return out
}

// lostLocked reports the loss of connection gen, once: each confirmed
// channel gets a disconnected event (the consumer subscribes it again on
// the next connection), and a channel whose subscribe was waiting on it
// counts the loss; one that keeps losing connections is given up.
func (s *session) lostLocked(gen uint64, now time.Time, why reason) {
	if gen <= s.lostGen {
		return
	}
	s.lostGen = gen
	msg := why.message()
	for _, ch := range s.orderedLocked() {
		if ch.confirmed {
			ch.confirmed = false
			s.q.push(event{typ: "disconnected", chanID: ch.chanID, at: now, identifier: ch.identifier, message: msg})
			continue
		}
		if ch.since > gen {
			continue // added after that connection was gone
		}
		if ch.losses++; ch.losses >= maxPendingLosses {
			s.h.cfg.logger.Warn("compat: Rails dropped the connection while a subscribe waited, repeatedly; subscription given up",
				"session", s.id, "identifier", string(ch.identifier), "losses", ch.losses)
			delete(s.chans, string(ch.identifier))
			s.saveStateLocked()
			ch.withdraw()
			if ch.sub != nil {
				go ch.sub.Unsubscribe(context.Background()) // not on the reader: it takes the consumer's lock
			}
			s.q.push(event{typ: "rejected", chanID: ch.chanID, at: now, identifier: ch.identifier})
		}
	}
}

// finish ends the session, once: every channel still subscribed is told
// why, and listeners learn that nothing more will come.
func (s *session) finish(why reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if s.stopWhy != nil {
		why = *s.stopWhy
	} else if s.frameWhy != nil {
		why = *s.frameWhy
	}
	if s.lostGen < s.gen {
		// Confirmed channels hear why; the connection's loss is this.
		s.lostGen = s.gen
		msg := why.message()
		now := time.Now()
		for _, ch := range s.orderedLocked() {
			if ch.confirmed {
				s.q.push(event{typ: "disconnected", chanID: ch.chanID, at: now, identifier: ch.identifier, message: msg})
			}
		}
	}
	for _, ch := range s.chans {
		ch.withdraw()
	}
	s.chans = map[string]*channel{}
	s.ended = true
	s.saveStateLocked()
	s.q.end()
}

// stop ends the session for the handler's reason (expiry, shutdown); the
// upstream socket is closed by closeUpstream.
func (s *session) stop(why reason) {
	s.mu.Lock()
	if s.stopWhy == nil {
		s.stopWhy = &why
	}
	s.mu.Unlock()
	s.finish(why)
}

// closeUpstream closes the session's upstream consumer.
func (s *session) closeUpstream() {
	if c := s.consumer(); c != nil {
		c.Close()
	}
}

// release ends the session, closes its upstream and gives its place in the
// limits back, once.
func (s *session) release() {
	if s.remote() {
		// Owned elsewhere: this process only drops its handle.
		s.mu.Lock()
		freed := s.freed
		s.freed = true
		s.mu.Unlock()
		if !freed {
			s.shared.h.Close()
		}
		return
	}
	s.stop(reasonSessionEnded)
	s.closeUpstream()
	s.mu.Lock()
	freed, unreserve := s.freed, s.unreserve
	s.freed = true
	s.mu.Unlock()
	if !freed {
		if s.shared != nil {
			s.releaseShared()
		} else {
			s.q.release()
		}
		unreserve()
	}
}

func (s *session) released() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.freed
}

func (s *session) isEnded() bool {
	s.mu.Lock()
	ended, remote := s.ended, s.shared != nil && s.c == nil
	s.mu.Unlock()
	return ended || remote && s.q.log.Ended() != nil
}

// touch records client activity.
func (s *session) touch() { s.q.log.Touch() }

// expired reports whether the session has been idle past ttl, or is over
// and has had no listener for a second.
func (s *session) expired(now time.Time, ttl time.Duration) bool {
	idle := s.q.log.Idle(now)
	return idle > ttl || s.isEnded() && s.q.over() && idle > time.Second
}

// attach registers a listener; the previous one, if any, is told to go
// (its client reconnected, or polls again). The returned context ends when
// a later listener attaches; detach must be called.
func (s *session) attach(ctx context.Context) (context.Context, func()) {
	return core.Attach(ctx, s.q.log, listener)
}

// attachFunc registers a listener that runs on no goroutine of its own:
// kick is called when a later listener attaches; detach must be called.
func (s *session) attachFunc(kick func()) (detach func()) {
	return s.q.log.AttachFunc(listener, kick)
}

// waitDrained waits until a listener has been handed the session's last
// event, the session has no listener (none attached and none seen for a
// second: a long-poll client polls again at once), or ctx is done.
func (s *session) waitDrained(ctx context.Context) { s.q.log.WaitDrained(ctx, time.Second) }

// allowCommands takes n tokens from the session's rate bucket.
func (s *session) allowCommands(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rate := s.h.cfg.commandsPerSecond
	ok, _ := s.commands.Take(float64(n), rate, 2*rate, time.Now())
	return ok
}

// subscribe adds identifier to the session's channels and has the consumer
// subscribe to it; events follow from the frames. Call with sendMu held.
func (s *session) subscribe(ident, chanID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errSessionEnded
	}
	if ch := s.chans[ident]; ch != nil {
		// Rails ignores a second subscribe; answer for it so the client
		// still hears that it is subscribed.
		if ch.confirmed {
			s.q.push(event{typ: "connected", chanID: ch.chanID, at: time.Now(), identifier: ch.identifier})
		}
		return nil
	}
	s.chanSeq++
	ch := &channel{identifier: []byte(ident), chanID: chanID, order: s.chanSeq, since: s.gen, ready: make(chan struct{})}
	s.chans[ident] = ch
	s.saveStateLocked()
	s.startLocked(ch)
	s.h.stats.commands.Add(1)
	return nil
}

// startLocked has the consumer subscribe ch. Call with mu held.
func (s *session) startLocked(ch *channel) {
	c, ident := s.c, string(ch.identifier)
	ctx, withdraw := context.WithCancel(context.Background())
	ch.withdraw = withdraw
	// Subscribe returns at the first answer; the consumer keeps the
	// subscription (resubscribing after reconnects) until it is
	// unsubscribed, rejected or the consumer stops. Its messages reach
	// the frame hook; the handler only drains them.
	go func() {
		defer close(ch.ready)
		if c == nil {
			return // let go meanwhile
		}
		sub, err := c.Subscribe(ctx, ident, cable.WithHandler(cable.Handler{Received: func(protocol.Payload) {}}))
		if err != nil {
			return // rejected (the hook reported it), withdrawn, or the consumer stopped
		}
		s.mu.Lock()
		keep := s.chans[ident] == ch && !s.ended
		if keep {
			ch.sub = sub
		}
		s.mu.Unlock()
		if !keep {
			sub.Unsubscribe(context.Background())
		}
	}()
}

// unsubscribe removes identifier from the session's channels. Call with
// sendMu held.
func (s *session) unsubscribe(ctx context.Context, ident string) {
	s.mu.Lock()
	ch := s.chans[ident]
	delete(s.chans, ident)
	var sub *cable.Subscription
	if ch != nil {
		sub = ch.sub
		s.saveStateLocked()
	}
	s.mu.Unlock()
	if ch == nil {
		return
	}
	ch.withdraw() // a Subscribe still waiting unsubscribes itself
	if sub != nil && sub.Unsubscribe(ctx) == nil {
		s.h.stats.commands.Add(1)
	}
}

// send performs data (a compact JSON object) on identifier's channel.
// Call with sendMu held.
func (s *session) send(ctx context.Context, ident, data string) error {
	s.mu.Lock()
	ch := s.chans[ident]
	var (
		sub       *cable.Subscription
		confirmed bool
	)
	if ch != nil {
		sub, confirmed = ch.sub, ch.confirmed
	}
	s.mu.Unlock()
	if ch == nil {
		return errNotSubscribed
	}
	if sub == nil && confirmed {
		// The hook saw the confirmation; the consumer's Subscribe
		// returns right after it.
		select {
		case <-ch.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
		sub = ch.sub
		s.mu.Unlock()
	}
	if sub == nil {
		return errNotConfirmed
	}
	if err := sub.Send(ctx, json.RawMessage(data)); err != nil {
		return err
	}
	s.h.stats.commands.Add(1)
	return nil
}

var (
	errSessionEnded  = errors.New("the session has ended; retry to open a new one")
	errNotSubscribed = errors.New("not subscribed to this identifier")
	errNotConfirmed  = errors.New("the subscription is not confirmed yet")
)
