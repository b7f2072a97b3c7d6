package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

// newID returns 128 random bits, base64url encoded (22 characters).
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics if the OS cannot supply randomness)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func newEpoch() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])&0x7fffffff | 1
}

// frame is one sequenced upstream frame, always JSON.
type frame struct {
	seq  uint64
	data []byte
}

// session is one client's view of Rails: an upstream consumer, the
// buffer of frames it produced, and the client's command sequence.
type session struct {
	b     *Bridge
	id    string
	token string
	epoch uint32
	ip    string

	up     *cable.Consumer // set once created
	redial bool            // the session outlives its upstream connection

	mu        sync.Mutex
	frames    []frame // seq-ordered, contiguous: frames[i].seq == first+i
	first     uint64  // seq of frames[0] (or next when empty)
	next      uint64  // seq the next frame gets; seqs start at 1
	bytes     int
	evicted   uint64 // frames dropped by the bounds before being acknowledged
	ackedTo   uint64 // the highest seq a client has acknowledged
	ping      []byte // the latest upstream ping frame
	pingN     uint64 // pings seen
	changed   chan struct{}
	ended     error     // set when the session is over; waiters return
	drained   bool      // ended, and a read has returned the last frame
	delivered uint64    // highest seq handed to a downstream
	welcomes  int       // upstream welcomes seen: more than one means redials
	lastSeen  time.Time // last client request
	attached  int       // downstreams attached now
	kick      [downKinds]context.CancelFunc
	kickID    [downKinds]uint64

	pollPingSeen uint64 // pings handed to long-poll answers

	sendMu sync.Mutex // one command batch in flight
	acked  uint64     // highest command sequence applied
	tokens float64    // command rate bucket
	refill time.Time
}

func newSession(b *Bridge, ip string) *session {
	now := time.Now()
	return &session{
		b: b, id: newID(), token: newID(), epoch: newEpoch(), ip: ip,
		first: 1, next: 1, changed: make(chan struct{}), lastSeen: now,
		tokens: 2 * b.cfg.commandsPerSecond, refill: now,
	}
}

// broadcast wakes every waiter. Call with s.mu held.
func (s *session) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// onFrame is the upstream consumer's frame hook: it runs on the upstream
// reader goroutine, numbers the frame and stores it.
func (s *session) onFrame(f cable.Frame) {
	data := f.Raw
	if _, isJSON := f.Codec.(protocol.JSONCodec); !isJSON {
		var err error
		if data, err = (protocol.JSONCodec{}).AppendMessage(nil, f.Message); err != nil {
			s.b.cfg.logger.Warn("bridge: upstream frame not representable as JSON; skipped", "session", s.id, "err", err)
			return
		}
	} else {
		data = append([]byte(nil), data...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return // after the last frame (Close's notice): nothing follows it
	}
	if f.Message.Type == protocol.TypePing {
		s.ping = data
		s.pingN++
		s.broadcast()
		return
	}
	switch f.Message.Type {
	case protocol.TypeWelcome:
		if s.welcomes++; s.welcomes > 1 {
			s.b.stats.upstreamReconnects.Add(1)
		}
	case protocol.TypeDisconnect:
		// The consumer stops after a final disconnect, and without redial
		// after any: this frame is the session's last.
		defer func() {
			if !s.redial || !f.Message.Reconnect || f.Message.Reason == protocol.ReasonUnauthorized {
				s.endLocked(errSessionEnded)
			}
		}()
	}
	s.frames = append(s.frames, frame{seq: s.next, data: data})
	s.next++
	s.bytes += len(data)
	s.b.stats.framesIn.Add(1)
	for len(s.frames) > s.b.cfg.queueFrames || (s.bytes > s.b.cfg.queueBytes && len(s.frames) > 1) {
		if s.frames[0].seq > s.delivered {
			// Never handed to any client: a real loss, which the client
			// learns as a reset when it asks for it.
			s.evicted++
			s.b.stats.evicted.Add(1)
		}
		s.bytes -= len(s.frames[0].data)
		s.frames[0] = frame{}
		s.frames = s.frames[1:]
		s.first++
	}
	if len(s.frames) == 0 {
		s.first = s.next
	}
	s.broadcast()
}

// errReset means the client asked for frames that are gone: evicted, or
// from another session epoch. It must start a new session.
var errReset = errors.New("bridge: frames evicted; start a new session")

// errSessionEnded means the upstream stopped for good (the reason was the
// last frame delivered).
var errSessionEnded = errors.New("bridge: session ended")

// acknowledge frees frames up to and including after, which a client
// says it has received (no further than what was handed to a downstream).
func (s *session) acknowledge(after uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acknowledgeLocked(min(after, s.delivered))
}

// acknowledgeLocked frees frames up to and including after.
func (s *session) acknowledgeLocked(after uint64) {
	s.ackedTo = max(s.ackedTo, min(after, s.next-1))
	for len(s.frames) > 0 && s.frames[0].seq <= after {
		s.bytes -= len(s.frames[0].data)
		s.frames[0] = frame{}
		s.frames = s.frames[1:]
		s.first++
	}
	if len(s.frames) == 0 {
		// Let the backing array go once drained, so idle sessions are small.
		s.frames = nil
		s.first = s.next
	}
}

// batch is what a downstream gets from one read.
type batch struct {
	frames []frame // copies of slice headers; data is immutable
	ping   []byte  // set when a ping newer than the caller's arrived
	pingN  uint64
	from   uint64 // the seq before frames[0]: the caller's after, or past what the client acknowledged
	next   uint64 // the seq after the last frame in the session
	more   bool   // frames after these are waiting already
}

// read acknowledges after and returns the frames after it (at most
// maxFrames, and no more than maxBytes of them unless the first alone is
// larger), plus the latest ping if the caller has not seen it.
func (s *session) read(after, pingSeen uint64, maxFrames, maxBytes int) (batch, error) {
	return s.readFrom(after, after, pingSeen, maxFrames, maxBytes)
}

// readFrom is read for a downstream whose client acknowledges less than
// it was sent: it frees frames up to ack (at most after) only, so that a
// client whose stream broke can resume from the last frame it received.
func (s *session) readFrom(ack, after, pingSeen uint64, maxFrames, maxBytes int) (batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if after >= s.next {
		return batch{}, errReset // a cursor from the future: another session's
	}
	if after+1 < s.first {
		if s.first-1 > s.ackedTo {
			return batch{}, errReset // evicted before the client had them
		}
		// The client acknowledged them through another downstream (it is
		// moving between two): it has them, so this one goes on after
		// them (from says so).
		after = s.first - 1
	}
	s.acknowledgeLocked(min(ack, after))
	pending := s.frames[after+1-s.first:]
	n, size := 0, 0
	for n < len(pending) && n < maxFrames && (n == 0 || size+len(pending[n].data) <= maxBytes) {
		size += len(pending[n].data)
		n++
	}
	out := batch{frames: append([]frame(nil), pending[:n]...), from: after, next: s.next, pingN: s.pingN, more: n < len(pending)}
	if n > 0 {
		s.delivered = max(s.delivered, pending[n-1].seq)
	}
	if s.pingN != pingSeen {
		out.ping = s.ping
	}
	if s.ended != nil {
		if n == 0 {
			return out, s.ended
		}
		if n == len(pending) && !s.drained {
			s.drained = true
			s.broadcast()
		}
	}
	return out, nil
}

// errTick is wait's answer when tick fired first.
var errTick = errors.New("bridge: tick")

// wait blocks until something newer than (after, pingSeen) exists, the
// session ends, tick fires (errTick) or ctx is done.
func (s *session) wait(ctx context.Context, after, pingSeen uint64, tick <-chan time.Time) error {
	for {
		s.mu.Lock()
		ready := s.next > after+1 || s.pingN != pingSeen || s.ended != nil
		ch := s.changed
		s.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-tick:
			return errTick
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// downKind is the kind of a downstream: a client reads a session through
// one downstream of each kind at a time.
type downKind uint8

const (
	downSSE downKind = iota
	downPoll
	downWS
	downKinds
)

// attach registers a downstream of kind k; the previous one of the same
// kind, if any, is told to go (its client reconnected, or polls again).
// Downstreams of different kinds may overlap: a client moving to another
// one runs it beside the old until a frame has come through. The returned
// context ends when a later downstream of kind k attaches or the session
// ends; detach must be called.
func (s *session) attach(ctx context.Context, k downKind) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	if s.kick[k] != nil {
		s.kick[k]()
	}
	s.kickID[k]++
	id := s.kickID[k]
	s.kick[k] = cancel
	s.attached++
	s.lastSeen = time.Now()
	s.mu.Unlock()
	return ctx, func() {
		cancel()
		s.mu.Lock()
		s.attached--
		s.lastSeen = time.Now()
		if s.kickID[k] == id {
			s.kick[k] = nil
		}
		s.mu.Unlock()
	}
}

// touch records client activity.
func (s *session) touch() {
	s.mu.Lock()
	s.lastSeen = time.Now()
	s.mu.Unlock()
}

// expired reports whether the session has been idle past the TTL.
func (s *session) expired(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attached > 0 {
		return false
	}
	// An ended session whose last frame was fetched has nothing more to
	// give; a client asking again gets 404 and starts over.
	return now.Sub(s.lastSeen) > s.b.cfg.sessionTTL || s.drained && now.Sub(s.lastSeen) > time.Second
}

// end marks the session over and wakes every waiter.
func (s *session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(err)
}

func (s *session) endLocked(err error) {
	if s.ended == nil {
		s.ended = err
		s.broadcast()
	}
}

// allowCommands takes n tokens from the session's rate bucket.
func (s *session) allowCommands(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	rate := s.b.cfg.commandsPerSecond
	s.tokens = min(2*rate, s.tokens+now.Sub(s.refill).Seconds()*rate)
	s.refill = now
	if s.tokens < float64(n) {
		return false
	}
	s.tokens -= float64(n)
	return true
}

// injectFinal appends a frame of the bridge's own (a shutdown notice) as
// the session's last, and ends the session after it.
func (s *session) injectFinal(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return
	}
	s.frames = append(s.frames, frame{seq: s.next, data: data})
	s.next++
	s.bytes += len(data)
	s.ended = errSessionEnded
	s.broadcast()
}

// upstreamLost is the last frame of a session whose upstream connection
// was lost without a disconnect frame: ActionCable clients reconnect (a
// new session) and resubscribe, as they would after Rails dropped them.
var upstreamLost = []byte(`{"type":"disconnect","reason":"upstream_lost","reconnect":true}`)

// upstreamGone is called once the upstream consumer of a session without
// redial has stopped, with the cause. Unless the bridge closed it, the
// client is told.
func (s *session) upstreamGone(cause error) {
	if errors.Is(cause, cable.ErrClosed) {
		return
	}
	s.b.cfg.logger.Info("bridge: upstream connection lost; the session ends", "session", s.id, "err", cause)
	s.injectFinal(upstreamLost)
}

// waitDrained waits until a client has been handed the session's last
// frame, the session has no client (none attached and none seen for a
// second: a long-poll client polls again at once), or ctx is done.
func (s *session) waitDrained(ctx context.Context) {
	for {
		s.mu.Lock()
		idle := s.attached == 0 && time.Since(s.lastSeen) > time.Second
		drained, ch := s.drained, s.changed
		s.mu.Unlock()
		if drained || idle {
			return
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

func (s *session) pollPing() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pollPingSeen
}

func (s *session) setPollPing(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pollPingSeen = n
}

// isEnded reports whether the session is over.
func (s *session) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended != nil
}
