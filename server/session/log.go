// Package session is the session core of the Cableway bridge: the log of
// sequenced frames that one upstream connection writes and a session's
// downstreams (SSE, long-poll, WebSocket re-attach, the compat API) read.
//
// A Log holds three kinds of frames, in sequence order:
//
//   - acknowledged frames are gone: a client said it has them;
//   - delivered frames were handed to a downstream but not acknowledged
//     yet: they form the resume window a client whose stream broke
//     resumes from;
//   - pending frames were appended but no downstream has read them yet.
//
// The writer is held back when pending frames exceed the log's pending
// limit (Append blocks: backpressure reaches the upstream socket, as TCP
// does for a direct WebSocket), so a slow client loses nothing. Delivered
// frames beyond the window limit are trimmed, oldest first: a client that
// later asks for a trimmed frame it did not acknowledge gets a
// *ResetError. A Budget shared by every Log of a process bounds the bytes
// they hold together: over it, logs trim their windows first and writers
// wait for readers.
//
// All methods of Log are safe for concurrent use by any number of
// goroutines. Append is meant for one writer goroutine.
package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Defaults of a Log's limits.
const (
	DefaultPendingFrames = 1024
	DefaultPendingBytes  = 1 << 20
	DefaultWindowBytes   = 1 << 20
)

// ErrEnded is what Append returns once a log has ended, and the end
// error of a log ended by Final.
var ErrEnded = errors.New("session: ended")

// ErrTick is Wait's answer when its tick fired first.
var ErrTick = errors.New("session: tick")

// ErrReset matches every *ResetError (errors.Is).
var ErrReset = errors.New("session: reset")

// Reasons of a ResetError, sent to clients with the reset.
const (
	// ReasonTrimmed: frames the client was sent but had not acknowledged
	// were trimmed from the resume window (window or memory budget).
	ReasonTrimmed = "evicted"
	// ReasonBadCursor: the cursor is not one this log handed out.
	ReasonBadCursor = "bad_cursor"
)

// ResetError means a reader asked for frames the log cannot give: the
// client must start a new session. Reason is one of the Reason constants.
type ResetError struct {
	Reason string
	After  uint64 // the cursor asked for
	First  uint64 // the oldest frame the log still holds
}

func (e *ResetError) Error() string {
	switch e.Reason {
	case ReasonTrimmed:
		return fmt.Sprintf("session reset: frames %d to %d were trimmed from the resume window before the client acknowledged them", e.After+1, e.First-1)
	default:
		return fmt.Sprintf("session reset: cursor %d is not one this session handed out", e.After)
	}
}

// Is makes errors.Is(err, ErrReset) true.
func (e *ResetError) Is(target error) bool { return target == ErrReset }

// Frame is one sequenced frame. Data is never modified after Append.
type Frame struct {
	Seq  uint64
	Data []byte
}

// Option configures a Log.
type Option func(*Log)

// WithPendingLimit bounds the frames appended but not read yet (frames and
// bytes; the first frame is always taken). Append blocks beyond it.
func WithPendingLimit(frames, bytes int) Option {
	return func(l *Log) {
		if frames > 0 {
			l.maxPending = frames
		}
		if bytes > 0 {
			l.maxPendingBytes = bytes
		}
	}
}

// WithWindowLimit bounds the bytes of delivered but unacknowledged frames
// kept for resuming; beyond it the oldest are trimmed.
func WithWindowLimit(bytes int) Option {
	return func(l *Log) {
		if bytes >= 0 {
			l.maxWindowBytes = bytes
		}
	}
}

// WithBudget makes the log count its bytes against b.
func WithBudget(b *Budget) Option { return func(l *Log) { l.budget = b } }

// Log is one session's frames. The zero value is not usable: use NewLog.
type Log struct {
	maxPending      int
	maxPendingBytes int
	maxWindowBytes  int
	budget          *Budget

	mu           sync.Mutex
	frames       []Frame   // seq-ordered, contiguous: frames[i].Seq == first+i
	first        uint64    // seq of frames[0] (or next when empty)
	next         uint64    // seq the next frame gets; seqs start at 1
	bytes        int       // of frames
	delivered    uint64    // highest seq handed to a reader
	pendingBytes int       // of frames after delivered
	ackedTo      uint64    // highest seq a client acknowledged
	ackedAt      time.Time // when ackedTo last grew (or the log was made)
	ackGrace     time.Duration
	trimmed      uint64 // delivered frames trimmed before acknowledgement
	ping         []byte // the latest keep-alive
	pingN        uint64 // keep-alives seen
	changed      chan struct{}
	notify       []notification // called at the next change
	notifyID     uint64
	ended        error // set once; no frame follows
	drained      bool  // ended, and a read returned the last frame
	lastSeen     time.Time
	attached     int
	kick         map[Kind]attachment
}

type attachment struct {
	kick func()
	id   uint64
}

// Kind is the kind of a downstream; see Attach.
type Kind uint8

// NewLog returns an empty log; its first frame gets seq 1.
func NewLog(opts ...Option) *Log {
	l := &Log{
		maxPending: DefaultPendingFrames, maxPendingBytes: DefaultPendingBytes, maxWindowBytes: DefaultWindowBytes,
		first: 1, next: 1, lastSeen: time.Now(), ackedAt: time.Now(), ackGrace: defaultAckGrace,
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

type notification struct {
	id uint64
	f  func()
}

// broadcastLocked wakes every waiter and starts every notification.
func (l *Log) broadcastLocked() {
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	for i, n := range l.notify {
		go n.f()
		l.notify[i] = notification{}
	}
	l.notify = l.notify[:0]
}

// changedLocked returns the channel closed at the next change.
func (l *Log) changedLocked() chan struct{} {
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// Append adds data as the next frame and returns its seq. It blocks while
// the log's pending frames are over the pending limit, or the budget is
// spent and this log has pending frames of its own, until readers catch up,
// the log ends (ErrEnded, or the error End was given) or ctx is done
// (ctx.Err()). The log keeps data: the caller must not modify it.
func (l *Log) Append(ctx context.Context, data []byte) (uint64, error) {
	l.mu.Lock()
	for {
		if l.ended != nil {
			l.mu.Unlock()
			return 0, l.ended
		}
		pending := int(l.next - 1 - l.delivered)
		over := pending > 0 && (pending >= l.maxPending || l.pendingBytes+len(data) > l.maxPendingBytes)
		var (
			budgetCh <-chan struct{}
			unqueue  func()
		)
		if !over && pending > 0 && l.budget != nil && l.budget.over(len(data)) {
			// A log with nothing pending always takes a frame, so that
			// every session makes progress: the budget is exceeded by at
			// most one frame per session.
			l.trimIdleWindowLocked()
			budgetCh, unqueue = l.budget.wait(len(data)) // before the check: no free is missed
			if over = l.budget.over(len(data)); !over {
				unqueue()
			}
		} else if !over && l.budget != nil && l.budget.pressed() {
			l.trimIdleWindowLocked()
		}
		if !over {
			break
		}
		ch := l.changedLocked()
		l.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-budgetCh:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if unqueue != nil {
			unqueue()
		}
		if err != nil {
			return 0, err
		}
		l.mu.Lock()
	}
	seq := l.appendLocked(data)
	l.mu.Unlock()
	return seq, nil
}

func (l *Log) appendLocked(data []byte) uint64 {
	seq := l.next
	if len(l.frames) == 0 {
		l.first = seq
	}
	l.frames = append(l.frames, Frame{Seq: seq, Data: data})
	l.next++
	l.bytes += len(data)
	l.pendingBytes += len(data)
	if l.budget != nil {
		l.budget.add(len(data))
	}
	l.broadcastLocked()
	return seq
}

// Final appends data as the log's last frame, without waiting, and ends
// the log (ErrEnded). After End or Final it does nothing.
func (l *Log) Final(data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended != nil {
		return
	}
	l.appendLocked(data)
	l.ended = ErrEnded
}

// End ends the log with err (ErrEnded if nil): Append returns it, waiters
// wake, and readers get it once they have read every frame. Only the
// first End or Final counts.
func (l *Log) End(err error) {
	if err == nil {
		err = ErrEnded
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended == nil {
		l.ended = err
		l.broadcastLocked()
	}
}

// Release returns every frame's bytes to the budget and drops them. Call
// it once the log is ended and no reader will come back (the session is
// gone).
func (l *Log) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropLocked(len(l.frames))
	l.frames = nil
	l.first = l.next
	if l.ended == nil {
		l.ended = ErrEnded
	}
	l.broadcastLocked()
}

// SetPing records data as the latest keep-alive frame. Keep-alives are
// not sequenced: a reader gets only the latest one it has not seen.
func (l *Log) SetPing(data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended != nil {
		return
	}
	l.ping = data
	l.pingN++
	l.broadcastLocked()
}

// dropLocked removes the n oldest frames.
func (l *Log) dropLocked(n int) {
	freed := 0
	for i := range n {
		f := &l.frames[i]
		freed += len(f.Data)
		if f.Seq > l.delivered {
			l.pendingBytes -= len(f.Data)
		}
		*f = Frame{}
	}
	l.frames = l.frames[n:]
	l.first += uint64(n)
	l.bytes -= freed
	if len(l.frames) == 0 {
		l.frames = nil // let the backing array go: idle logs are small
		l.first = l.next
	}
	if l.budget != nil && freed > 0 {
		l.budget.add(-freed)
	}
}

// trimWindowLocked trims delivered, unacknowledged frames, oldest first,
// until the window holds at most keep bytes.
func (l *Log) trimWindowLocked(keep int) {
	window := l.bytes - l.pendingBytes
	n := 0
	for n < len(l.frames) && l.frames[n].Seq <= l.delivered && window > keep {
		window -= len(l.frames[n].Data)
		n++
	}
	if n > 0 {
		l.trimmed += uint64(n)
		l.dropLocked(n)
	}
}

// Ack frees the frames up to and including upTo, which a client says it
// has; it acknowledges nothing beyond what was delivered.
func (l *Log) Ack(upTo uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ackLocked(min(upTo, l.delivered))
}

func (l *Log) ackLocked(upTo uint64) {
	if upTo <= l.ackedTo && upTo < l.first {
		return
	}
	if upTo > l.ackedTo {
		l.ackedAt = time.Now()
	}
	l.ackedTo = max(l.ackedTo, upTo)
	n := 0
	for n < len(l.frames) && l.frames[n].Seq <= upTo {
		n++
	}
	if n > 0 {
		l.dropLocked(n)
	}
}

// Batch is what one Read returns.
type Batch struct {
	Frames []Frame // data is shared and immutable
	Ping   []byte  // the latest keep-alive, when newer than the caller's
	PingN  uint64  // keep-alives seen: the caller's next pingSeen
	From   uint64  // the seq before Frames[0]: after, or past what the client acknowledged elsewhere
	Next   uint64  // the seq the log's next frame gets
	More   bool    // frames after these are waiting already
}

// Read acknowledges ack (at most after: a client whose stream broke may
// resume from ack) and returns the frames after after — at most maxFrames
// of them, and no more than maxBytes unless the first alone is larger —
// plus the latest keep-alive if the caller has not seen pingSeen of them.
// It never blocks (see Wait). Frames it returns count as delivered.
//
// It returns a *ResetError when the frames after after are gone (trimmed
// before the client acknowledged them) or after is not a cursor of this
// log, and the end error once the log has ended and no frame is left after
// after.
func (l *Log) Read(ack, after, pingSeen uint64, maxFrames, maxBytes int) (Batch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if after >= l.next {
		return Batch{}, &ResetError{Reason: ReasonBadCursor, After: after, First: l.first}
	}
	if after+1 < l.first {
		if l.first-1 > l.ackedTo {
			return Batch{}, &ResetError{Reason: ReasonTrimmed, After: after, First: l.first}
		}
		// The client acknowledged them through another downstream (it is
		// moving between two): it has them, so this one goes on after
		// them (From says so).
		after = l.first - 1
	}
	l.ackLocked(min(ack, after))
	pending := l.frames[after+1-l.first:]
	n, size := 0, 0
	for n < len(pending) && n < maxFrames && (n == 0 || size+len(pending[n].Data) <= maxBytes) {
		size += len(pending[n].Data)
		n++
	}
	out := Batch{Frames: append([]Frame(nil), pending[:n]...), From: after, Next: l.next, PingN: l.pingN, More: n < len(pending)}
	if n > 0 && pending[n-1].Seq > l.delivered {
		for _, f := range pending[:n] {
			if f.Seq > l.delivered {
				l.pendingBytes -= len(f.Data)
			}
		}
		l.delivered = pending[n-1].Seq
		l.trimWindowLocked(l.windowKeepLocked())
		l.broadcastLocked() // a held-back writer may go on
	}
	if l.pingN != pingSeen {
		out.Ping = l.ping
	}
	if l.ended != nil {
		if n == 0 {
			return out, l.ended
		}
		if n == len(pending) && !l.drained {
			l.drained = true
			l.broadcastLocked()
		}
	}
	return out, nil
}

// windowKeepLocked is how many window bytes the log may keep now: none
// while the budget is pressed and the client does not acknowledge (see
// trimIdleWindowLocked).
func (l *Log) windowKeepLocked() int {
	if l.budget != nil && l.budget.pressed() && !l.ackingLocked() {
		return 0
	}
	return l.maxWindowBytes
}

// defaultAckGrace is how recently a client must have acknowledged frames
// for its window to be kept while the budget is pressed: the Cableway
// clients acknowledge once a second.
const defaultAckGrace = 10 * time.Second

func (l *Log) ackingLocked() bool { return time.Since(l.ackedAt) < l.ackGrace }

// trimIdleWindowLocked drops the window of a log whose client has not
// acknowledged anything lately, to make room in a spent budget. A client
// that acknowledges keeps its window: trimming it would turn a broken
// stream into a reset, while its next acknowledgement frees the room
// anyway (writers wait for it meanwhile).
func (l *Log) trimIdleWindowLocked() {
	if !l.ackingLocked() {
		l.trimWindowLocked(0)
	}
}

// Wait blocks until something newer than (after, pingSeen) exists, the
// log ends, tick fires (ErrTick) or ctx is done (ctx.Err()).
func (l *Log) Wait(ctx context.Context, after, pingSeen uint64, tick <-chan time.Time) error {
	for {
		l.mu.Lock()
		if l.next > after+1 || l.pingN != pingSeen || l.ended != nil {
			l.mu.Unlock()
			return nil
		}
		ch := l.changedLocked()
		l.mu.Unlock()
		select {
		case <-ch:
		case <-tick:
			return ErrTick
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Notify arranges for f to be called once, in its own goroutine, as soon
// as something newer than (after, pingSeen) exists or the log ends — at
// once if that is so already. It is Wait without a waiting goroutine: a
// downstream that writes only when there is something to write holds no
// goroutine while idle. stop cancels the call; it reports false if f was
// started already (or is being started). Each Notify is one call at most:
// a downstream arms it again after each write.
func (l *Log) Notify(after, pingSeen uint64, f func()) (stop func() bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next > after+1 || l.pingN != pingSeen || l.ended != nil {
		go f()
		return func() bool { return false }
	}
	l.notifyID++
	id := l.notifyID
	l.notify = append(l.notify, notification{id, f})
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, n := range l.notify {
			if n.id == id {
				l.notify = slices.Delete(l.notify, i, i+1)
				return true
			}
		}
		return false
	}
}

// AttachFunc registers a downstream of kind k; the previous one of the
// same kind, if any, is told to go (its client reconnected, or polls
// again): its kick is called, once, on a goroutine of its own. Downstreams
// of different kinds may overlap: a client moving to another one runs it
// beside the old until a frame has come through. detach must be called
// when the downstream is done; after it, kick is not called.
func (l *Log) AttachFunc(k Kind, kick func()) (detach func()) {
	l.mu.Lock()
	if l.kick == nil {
		l.kick = map[Kind]attachment{}
	}
	prev := l.kick[k]
	if prev.kick != nil {
		go prev.kick()
	}
	id := prev.id + 1
	l.kick[k] = attachment{kick, id}
	l.attached++
	l.lastSeen = time.Now()
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.attached--
		l.lastSeen = time.Now()
		if a := l.kick[k]; a.id == id {
			l.kick[k] = attachment{id: id}
		}
		l.mu.Unlock()
	}
}

// Attach is AttachFunc for a downstream that runs on one goroutine: the
// returned context ends when a later downstream of kind k attaches or ctx
// ends; detach must be called when the downstream is done.
func Attach(ctx context.Context, f Frames, k Kind) (_ context.Context, detach func()) {
	ctx, cancel := context.WithCancel(ctx)
	d := f.AttachFunc(k, cancel)
	return ctx, func() {
		cancel()
		d()
	}
}

// Touch records client activity (see Idle).
func (l *Log) Touch() {
	l.mu.Lock()
	l.lastSeen = time.Now()
	l.mu.Unlock()
}

// Idle reports for how long the log has had no downstream attached and no
// Touch: zero while one is attached.
func (l *Log) Idle(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attached > 0 {
		return 0
	}
	return now.Sub(l.lastSeen)
}

// Drained reports whether the log has ended and a reader was handed its
// last frame.
func (l *Log) Drained() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.drained
}

// Ended returns the end error, or nil while the log is open.
func (l *Log) Ended() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended
}

// WaitDrained waits until a reader has been handed the log's last frame,
// the log has been idle (no downstream, no Touch) for idle, or ctx is done.
func (l *Log) WaitDrained(ctx context.Context, idle time.Duration) {
	for {
		l.mu.Lock()
		gone := l.attached == 0 && time.Since(l.lastSeen) > idle
		drained := l.drained
		ch := l.changedLocked()
		l.mu.Unlock()
		if drained || gone {
			return
		}
		t := time.NewTimer(idle / 4)
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

// Stats are a log's figures.
type Stats struct {
	Frames    int    // held now (window and pending)
	Bytes     int    // held now
	Pending   int    // frames not read yet
	Delivered uint64 // highest seq read
	Acked     uint64 // highest seq acknowledged
	Trimmed   uint64 // delivered frames trimmed from the window unacknowledged
}

// Stats returns the log's figures.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{
		Frames: len(l.frames), Bytes: l.bytes, Pending: int(l.next - 1 - l.delivered),
		Delivered: l.delivered, Acked: l.ackedTo, Trimmed: l.trimmed,
	}
}

// Has reports whether a reader can go on after after: the frames after it
// are held, or were acknowledged.
func (l *Log) Has(after uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return after < l.next && (after+1 >= l.first || l.first-1 <= l.ackedTo)
}
