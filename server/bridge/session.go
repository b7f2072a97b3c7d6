package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/internal/ratelimit"
	core "github.com/cableway/cableway/server/session"
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

// session is one client's view of Rails: an upstream consumer, the log of
// the frames it produced (the session core, server/session), and the
// client's command sequence.
type session struct {
	b     *Bridge
	id    string
	token string
	epoch uint32
	ip    string

	up  *cable.Consumer // set once created; it does not redial
	log core.Frames

	pollPingSeen atomic.Uint64 // pings handed to long-poll answers

	sendMu sync.Mutex // one command batch in flight; guards acked
	acked  uint64     // highest command sequence applied

	mu       sync.Mutex // guards commands
	commands ratelimit.Bucket
}

func newSession(b *Bridge, ip string) *session {
	now := time.Now()
	s := &session{
		b: b, id: newID(), token: newID(), epoch: newEpoch(), ip: ip,
		commands: ratelimit.Full(2*b.cfg.commandsPerSecond, now),
	}
	if b.cluster == nil { // a shared store's log is made by cluster.create
		s.log = b.store.NewFrames(s.id)
	}
	return s
}

// onFrame is the upstream consumer's frame hook: it runs on the upstream
// reader goroutine and appends the frame to the session's log. While the
// client is behind by the pending limit it blocks, which stops the upstream
// read: Rails is held back by TCP, as it would be by a slow direct client,
// and nothing is dropped. The session's end releases it.
func (s *session) onFrame(f cable.Frame) {
	var data []byte
	if _, isJSON := f.Codec.(protocol.JSONCodec); isJSON {
		data = append([]byte(nil), f.Raw...)
	} else {
		var err error
		if data, err = (protocol.JSONCodec{}).AppendMessage(nil, f.Message); err != nil {
			s.b.cfg.logger.Warn("bridge: upstream frame not representable as JSON; skipped", "session", s.id, "err", err)
			return
		}
	}
	data = bridgewire.ValidText(data) // a text frame downstream must be text
	if f.Message.Type == protocol.TypePing {
		s.log.SetPing(data)
		return
	}
	if _, err := s.log.Append(context.Background(), data); err != nil {
		if s.b.cluster != nil {
			s.b.cluster.appendFailed(s, err)
		}
		return // after the last frame (Close's notice): nothing follows it
	}
	s.b.stats.framesIn.Add(1)
	if f.Message.Type == protocol.TypeDisconnect {
		// The consumer does not redial: this frame is the session's last.
		s.log.End(errSessionEnded)
	}
}

// errReset means the client asked for frames that are gone (see
// core.ResetError for why); it must start a new session.
var errReset = core.ErrReset

// resetReason is the reason sent to a client with a reset.
func resetReason(err error) string {
	if re, ok := errors.AsType[*core.ResetError](err); ok {
		return re.Reason
	}
	return core.ReasonTrimmed
}

// errSessionEnded means the upstream stopped for good (the reason was the
// last frame delivered).
var errSessionEnded = core.ErrEnded

// acknowledge frees frames up to and including after, which a client
// says it has received (no further than what was handed to a downstream).
func (s *session) acknowledge(after uint64) { s.log.Ack(after) }

// read acknowledges after and returns the frames after it (at most
// maxFrames, and no more than maxBytes of them unless the first alone is
// larger), plus the latest ping if the caller has not seen it.
func (s *session) read(after, pingSeen uint64, maxFrames, maxBytes int) (core.Batch, error) {
	return s.log.Read(after, after, pingSeen, maxFrames, maxBytes)
}

// readFrom is read for a downstream whose client acknowledges less than
// it was sent: it frees frames up to ack (at most after) only, so that a
// client whose stream broke can resume from the last frame it received.
func (s *session) readFrom(ack, after, pingSeen uint64, maxFrames, maxBytes int) (core.Batch, error) {
	return s.log.Read(ack, after, pingSeen, maxFrames, maxBytes)
}

// errTick is wait's answer when tick fired first.
var errTick = core.ErrTick

// wait blocks until something newer than (after, pingSeen) exists, the
// session ends, tick fires (errTick) or ctx is done.
func (s *session) wait(ctx context.Context, after, pingSeen uint64, tick <-chan time.Time) error {
	return s.log.Wait(ctx, after, pingSeen, tick)
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

// attach registers a downstream of kind k (see core.Attach).
func (s *session) attach(ctx context.Context, k downKind) (context.Context, func()) {
	return core.Attach(ctx, s.log, core.Kind(k))
}

// touch records client activity.
func (s *session) touch() { s.log.Touch() }

// expired reports whether the session has been idle past the TTL, or has
// ended and its last frame was fetched a second ago: a client asking again
// gets 404 and starts over.
func (s *session) expired(now time.Time) bool {
	idle := s.log.Idle(now)
	return idle > s.b.cfg.sessionTTL || s.log.Drained() && idle > time.Second
}

// end marks the session over and wakes every waiter.
func (s *session) end(err error) { s.log.End(err) }

// allowCommands takes n tokens from the session's rate bucket.
func (s *session) allowCommands(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rate := s.b.cfg.commandsPerSecond
	ok, _ := s.commands.Take(float64(n), rate, 2*rate, time.Now())
	return ok
}

// injectFinal appends a frame of the bridge's own (a shutdown notice) as
// the session's last, and ends the session after it.
func (s *session) injectFinal(data []byte) { s.log.Final(data) }

// upstreamLost is the last frame of a session whose upstream connection
// was lost without a disconnect frame: ActionCable clients reconnect (a
// new session) and resubscribe, as they would after Rails dropped them.
var upstreamLost = []byte(`{"type":"disconnect","reason":"upstream_lost","reconnect":true}`)

// upstreamGone is called once the upstream consumer of a session has
// stopped, with the cause. Unless the bridge closed it, the
// client is told.
func (s *session) upstreamGone(cause error) {
	if errors.Is(cause, cable.ErrClosed) {
		return
	}
	st := s.log.Stats()
	s.b.cfg.logger.Info("bridge: upstream connection lost; the session ends", "session", s.id, "err", cause,
		"pending", st.Pending, "held_bytes", st.Bytes, "client_idle", s.log.Idle(time.Now()).Round(time.Millisecond))
	s.injectFinal(upstreamLost)
}

// waitDrained waits until a client has been handed the session's last
// frame, the session has no client (none attached and none seen for a
// second: a long-poll client polls again at once), or ctx is done.
func (s *session) waitDrained(ctx context.Context) { s.log.WaitDrained(ctx, time.Second) }

func (s *session) pollPing() uint64 { return s.pollPingSeen.Load() }

func (s *session) setPollPing(n uint64) { s.pollPingSeen.Store(n) }

// isEnded reports whether the session is over.
func (s *session) isEnded() bool { return s.log.Ended() != nil }
