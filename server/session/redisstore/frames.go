package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/server/session"
)

// Frames is one process's handle on a session's log in Redis: a
// session.SharedFrames. Its methods are safe for concurrent use.
type Frames struct {
	st   *Store
	id   string
	keys []string
	ch   string

	owned  atomic.Bool
	kickID atomic.Uint64 // this handle's attachments, for kicks across processes

	mu          sync.Mutex
	changed     chan struct{}
	notify      []notification
	notifyID    uint64
	kick        map[session.Kind]attachment
	attached    int
	lastSeen    time.Time // local client activity
	wanted      time.Time // last downstream activity here (for takeovers)
	onOwnership func(bool)
	closed      bool

	// What this process knows of the log's state: the highest next seq
	// and keep-alive count seen and whether it ended, learnt from the
	// session's events, reads and state checks. Once valid (filled from
	// Redis after the subscription was confirmed), every later change is
	// reflected or has its event on the way, which will wake the waiter:
	// a wake-up needs no round trip to tell whether there is news. A
	// resubscription (events may have been missed) invalidates it; gen
	// counts invalidations, so that a check started before one does not
	// make it valid again.
	known knownState
	gen   uint64
	retry *time.Timer // a takeover attempt as the owner's lease expires

	// Figures cached by the sweep (one pipeline per sweep for every handle).
	figures  session.Stats
	seen     time.Time
	drained  bool
	ended    error
	gone     bool
	hasFigs  bool
	failedBy error // set on a handle whose creation failed
}

type knownState struct {
	n, pn uint64
	ended bool
	valid bool
}

// learnLocked merges what was seen of the log's state into h.known.
func (h *Frames) learnLocked(n, pn uint64, ended bool) {
	h.known.n = max(h.known.n, n)
	h.known.pn = max(h.known.pn, pn)
	h.known.ended = h.known.ended || ended
}

// readyLocked reports whether something newer than (after, pingSeen)
// exists or the log ended, as far as h.known tells, and whether it can
// tell (ok false: ask Redis).
func (h *Frames) readyLocked(after, pingSeen uint64) (ready, ok bool) {
	if h.closed || h.gone || h.ended != nil || h.known.ended || h.known.n > after+1 {
		return true, true // n only grows: true whether or not known is complete
	}
	if !h.known.valid {
		return false, false
	}
	return h.known.pn != pingSeen, true
}

// event handles one of the session's events (see scripts.go): it records
// what it says of the log's state and wakes every waiter.
func (h *Frames) event(payload string) {
	kind, rest, _ := strings.Cut(payload, " ")
	h.mu.Lock()
	switch kind {
	case "a":
		nstr, end, _ := strings.Cut(rest, " ")
		if n, err := strconv.ParseUint(nstr, 10, 64); err == nil {
			h.learnLocked(n, 0, end == "e")
		} else {
			h.known.valid = false // not one of ours: ask Redis
		}
	case "p":
		if pn, err := strconv.ParseUint(rest, 10, 64); err == nil {
			h.learnLocked(0, pn, false)
		} else {
			h.known.valid = false
		}
	case "e":
		h.known.ended = true
	case "x":
		h.known.valid = false // gone: the next check finds out
	}
	h.wakeLocked(false)
	h.mu.Unlock()
}

// invalidate forgets that h.known is complete (events may have been
// missed) and wakes every waiter to check with Redis.
func (h *Frames) invalidate() {
	h.mu.Lock()
	h.known.valid = false
	h.gen++
	h.broadcastLocked()
	h.mu.Unlock()
}

type notification struct {
	id              uint64
	f               func()
	after, pingSeen uint64
}

type attachment struct {
	kick func()
	id   uint64 // this handle's
	num  uint64 // across processes (0: unknown)
}

var _ session.SharedFrames = (*Frames)(nil)

// failed is a log whose creation failed: it is ended with err.
func failed(err error) *Frames {
	return &Frames{failedBy: err, ended: err, gone: true}
}

// ctx bounds one Redis call of the handle.
func (h *Frames) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(h.st.ctx, 10*time.Second)
}

func (h *Frames) ttl() int64 { return h.st.cfg.ttl.Milliseconds() }

// broadcast wakes every waiter and starts every notification: something
// may have changed.
func (h *Frames) broadcast() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.broadcastLocked()
}

func (h *Frames) broadcastLocked() { h.wakeLocked(true) }

// wakeLocked wakes every waiter (they check for themselves) and starts
// the notifications: all of them, or only those h.known says have news
// (an event such as a reader's "d" is news to few).
func (h *Frames) wakeLocked(all bool) {
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	kept := h.notify[:0]
	for _, n := range h.notify {
		if ready, ok := h.readyLocked(n.after, n.pingSeen); all || ready || !ok {
			go n.f()
			continue
		}
		kept = append(kept, n)
	}
	clear(h.notify[len(kept):])
	h.notify = kept
}

func (h *Frames) changedLocked() chan struct{} {
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

// endError turns a stored end reason into the log's end error.
func endError(reason string) error {
	if reason == "" || reason == session.ErrEnded.Error() {
		return session.ErrEnded
	}
	return fmt.Errorf("%w: %s", session.ErrEnded, reason)
}

// Append adds data as the next frame (see session.Log.Append): it returns
// once the frame is in Redis, where a reader on any process may read it.
// It returns session.ErrNotOwner once this process lost the session's
// lease, and the Redis error when Redis fails; ctx done while the append
// waits for its turn or for readers: ctx.Err(), and nothing was appended.
func (h *Frames) Append(ctx context.Context, data []byte) (uint64, error) {
	if h.failedBy != nil {
		return 0, h.failedBy
	}
	var retry *time.Ticker
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		h.mu.Lock()
		ch := h.changedLocked() // before the check: no change is missed
		h.mu.Unlock()
		res, err := h.st.runGrouped(ctx, appendScript, h.keys, data, h.st.cfg.pendingFrames, h.st.cfg.pendingBytes,
			h.ttl(), h.st.cfg.node, 0, h.ch, "")
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return 0, err // never sent
		}
		if err != nil {
			return 0, fmt.Errorf("redisstore: append: %w", err)
		}
		switch code := res[0].(int64); {
		case code > 0:
			h.mu.Lock()
			h.learnLocked(uint64(code)+1, 0, false)
			h.mu.Unlock()
			return uint64(code), nil
		case code == -1:
			return 0, endError(str(res[1]))
		case code == -2:
			return 0, session.ErrEnded
		case code == -3:
			return 0, session.ErrNotOwner
		}
		// Held back: wait for a reader (a missed event costs a second).
		if retry == nil {
			retry = time.NewTicker(time.Second)
		}
		select {
		case <-ch:
		case <-retry.C:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Final appends data as the last frame and ends the log, if this process
// owns it and it is open.
func (h *Frames) Final(data []byte) {
	if h.failedBy != nil {
		return
	}
	ctx, cancel := h.ctx()
	defer cancel()
	if _, err := h.st.runGrouped(ctx, appendScript, h.keys, data, 0, 0, h.ttl(), h.st.cfg.node, 1, h.ch, session.ErrEnded.Error()); err != nil {
		h.st.cfg.logger.Warn("redisstore: final frame lost", "session", h.id, "err", err)
	}
}

// SetPing records data as the latest keep-alive.
func (h *Frames) SetPing(data []byte) {
	if h.failedBy != nil {
		return
	}
	ctx, cancel := h.ctx()
	defer cancel()
	if err := pingScript.Run(ctx, h.st.rdb, h.keys, data, h.ch, h.ttl(), h.st.cfg.node).Err(); err != nil {
		h.st.cfg.logger.Debug("redisstore: ping", "session", h.id, "err", err)
	}
}

// End ends the log with err (session.ErrEnded if nil); the first end
// counts, on whichever process it happens.
func (h *Frames) End(err error) {
	if h.failedBy != nil {
		return
	}
	reason := session.ErrEnded.Error()
	if err != nil {
		reason = err.Error()
	}
	ctx, cancel := h.ctx()
	defer cancel()
	if rerr := endScript.Run(ctx, h.st.rdb, h.keys, reason, h.ch).Err(); rerr != nil {
		h.st.cfg.logger.Warn("redisstore: end", "session", h.id, "err", rerr)
	}
	h.mu.Lock()
	if h.ended == nil {
		h.ended = endError(reason)
	}
	h.mu.Unlock()
	h.broadcast()
}

// Release deletes the session from Redis (it is over; no reader comes
// back) and closes the handle.
func (h *Frames) Release() {
	if h.failedBy != nil {
		return
	}
	ctx, cancel := h.ctx()
	defer cancel()
	h.st.rdb.Del(ctx, h.keys...)
	h.st.rdb.Publish(ctx, h.ch, "x")
	h.mu.Lock()
	h.gone = true
	if h.ended == nil {
		h.ended = session.ErrEnded
	}
	h.mu.Unlock()
	h.Close()
}

// Close drops this process's handle; the session goes on in Redis.
func (h *Frames) Close() {
	if h.failedBy != nil {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	if h.retry != nil {
		h.retry.Stop()
		h.retry = nil
	}
	h.mu.Unlock()
	h.owned.Store(false)
	s := h.st
	s.mu.Lock()
	mine := s.handles[h.ch] == h
	if mine {
		delete(s.handles, h.ch)
	}
	s.mu.Unlock()
	if mine {
		s.unsubscribe(h.ch)
	}
	h.broadcast()
}

// Read acknowledges ack (at most after) and returns the frames after
// after (see session.Log.Read). A Redis failure is returned as is: the
// caller's client retries at its cursor.
func (h *Frames) Read(ack, after, pingSeen uint64, maxFrames, maxBytes int) (session.Batch, error) {
	if h.failedBy != nil {
		return session.Batch{}, h.failedBy
	}
	h.markWanted()
	ctx, cancel := h.ctx()
	defer cancel()
	res, err := h.st.runGrouped(ctx, readScript, h.keys, ack, after, pingSeen, maxFrames, maxBytes,
		h.st.cfg.windowBytes, h.ttl(), h.ch)
	if err != nil {
		return session.Batch{}, fmt.Errorf("redisstore: read: %w", err)
	}
	status := res[0].(int64)
	switch status {
	case -2:
		h.markGone()
		return session.Batch{}, session.ErrEnded
	case -4:
		return session.Batch{}, &session.ResetError{Reason: session.ReasonBadCursor, After: after, First: uint64(res[1].(int64))}
	case -5:
		return session.Batch{}, &session.ResetError{Reason: session.ReasonTrimmed, After: after, First: uint64(res[1].(int64))}
	}
	bt := session.Batch{
		From: uint64(res[1].(int64)), Next: uint64(res[2].(int64)), PingN: uint64(res[3].(int64)),
		More: res[6].(int64) == 1,
	}
	if res[4].(int64) == 1 {
		bt.Ping = []byte(str(res[5]))
	}
	h.mu.Lock()
	h.learnLocked(bt.Next, bt.PingN, status == 1 || str(res[7]) != "")
	h.mu.Unlock()
	for i := 8; i+1 < len(res); i += 2 {
		bt.Frames = append(bt.Frames, session.Frame{Seq: uint64(res[i].(int64)), Data: []byte(str(res[i+1]))})
	}
	if status == 1 {
		return bt, endError(str(res[7]))
	}
	return bt, nil
}

// ready reports whether something newer than (after, pingSeen) exists or
// the log ended: from what this process knows when it can tell (no round
// trip), from Redis when it cannot or when ask is set.
func (h *Frames) ready(ctx context.Context, after, pingSeen uint64, ask bool) (bool, error) {
	h.mu.Lock()
	ready, ok := h.readyLocked(after, pingSeen)
	gen := h.gen
	h.mu.Unlock()
	if ready || ok && !ask {
		return ready, nil
	}
	vals, err := h.st.rdb.HMGet(ctx, h.keys[0], "n", "pn", "e").Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: %w", err)
	}
	if vals[0] == nil {
		h.markGone()
		return true, nil
	}
	n, _ := strconv.ParseUint(str(vals[0]), 10, 64)
	pn, _ := strconv.ParseUint(str(vals[1]), 10, 64)
	h.mu.Lock()
	h.learnLocked(n, pn, vals[2] != nil)
	if h.gen == gen {
		// Read after the subscription was confirmed, and no event was
		// missed since: h.known is complete.
		h.known.valid = true
	}
	h.mu.Unlock()
	return n > after+1 || pn != pingSeen || vals[2] != nil, nil
}

// Wait blocks until something newer than (after, pingSeen) exists, the
// log ends, tick fires (session.ErrTick) or ctx is done. A Redis failure
// ends the wait with nil: the read that follows reports it.
func (h *Frames) Wait(ctx context.Context, after, pingSeen uint64, tick <-chan time.Time) error {
	if h.failedBy != nil {
		return nil
	}
	h.markWanted()
	safety := time.NewTicker(time.Second) // a missed event costs a second
	defer safety.Stop()
	ask := false
	for {
		h.mu.Lock()
		ch := h.changedLocked() // before the check: no change is missed
		closed := h.closed
		h.mu.Unlock()
		if closed {
			return nil
		}
		ready, err := h.ready(ctx, after, pingSeen, ask)
		if err != nil || ready {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		ask = false
		select {
		case <-ch:
		case <-safety.C:
			ask = true
		case <-tick:
			return session.ErrTick
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Notify calls f once, on its own goroutine, as soon as something newer
// than (after, pingSeen) exists or the log ends (see session.Log.Notify):
// it holds no goroutine while it waits.
func (h *Frames) Notify(after, pingSeen uint64, f func()) (stop func() bool) {
	if h.failedBy != nil {
		go f()
		return func() bool { return false }
	}
	h.markWanted()
	h.mu.Lock()
	h.notifyID++
	id := h.notifyID
	h.notify = append(h.notify, notification{id: id, f: f, after: after, pingSeen: pingSeen})
	closed := h.closed
	h.mu.Unlock()
	stop = func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, n := range h.notify {
			if n.id == id {
				h.notify = slices.Delete(h.notify, i, i+1)
				return true
			}
		}
		return false
	}
	// Armed first, checked after: an event in between fires it.
	ctx, cancel := h.ctx()
	defer cancel()
	if ready, err := h.ready(ctx, after, pingSeen, false); closed || err != nil || ready {
		if stop() {
			go f()
		}
	}
	return stop
}

// Ack frees the frames up to and including upTo (no further than what was
// delivered).
func (h *Frames) Ack(upTo uint64) {
	if h.failedBy != nil {
		return
	}
	ctx, cancel := h.ctx()
	defer cancel()
	if err := ackScript.Run(ctx, h.st.rdb, h.keys, upTo, h.ttl()).Err(); err != nil {
		h.st.cfg.logger.Warn("redisstore: ack", "session", h.id, "err", err)
	}
}

// Has reports whether a reader can go on after after.
func (h *Frames) Has(after uint64) bool {
	if h.failedBy != nil {
		return false
	}
	ctx, cancel := h.ctx()
	defer cancel()
	vals, err := h.st.rdb.HMGet(ctx, h.keys[0], "n", "f", "ak").Result()
	if err != nil || vals[0] == nil {
		return false
	}
	var n, f, ak uint64
	fmt.Sscan(str(vals[0]), &n)
	fmt.Sscan(str(vals[1]), &f)
	fmt.Sscan(str(vals[2]), &ak)
	return after < n && (after+1 >= f || f-1 <= ak)
}

// AttachFunc registers a downstream of kind k (see session.Log.AttachFunc):
// the previous one of that kind is kicked, here or on any other process.
// Downstreams are numbered in Redis, so that a late announcement never
// kicks a newer downstream.
func (h *Frames) AttachFunc(k session.Kind, kick func()) (detach func()) {
	var num uint64
	if h.failedBy == nil {
		ctx, cancel := h.ctx()
		n, err := attachScript.Run(ctx, h.st.rdb, h.keys, int(k), h.st.cfg.node, h.ch).Int64()
		cancel()
		if err == nil {
			num = uint64(n)
		}
	}
	h.mu.Lock()
	if h.kick == nil {
		h.kick = map[session.Kind]attachment{}
	}
	prev := h.kick[k]
	if prev.kick != nil {
		go prev.kick()
	}
	id := h.kickID.Add(1)
	h.kick[k] = attachment{kick: kick, id: id, num: num}
	h.attached++
	h.lastSeen = time.Now()
	h.wanted = h.lastSeen
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		h.attached--
		h.lastSeen = time.Now()
		if a := h.kick[k]; a.id == id {
			h.kick[k] = attachment{id: id}
		}
		h.mu.Unlock()
	}
}

// remoteKick handles "k<kind> <node> <num>": downstream num of that kind
// attached on a process; one attached here before it goes.
func (h *Frames) remoteKick(payload string) {
	parts := strings.Fields(payload[1:])
	if len(parts) != 3 || parts[1] == h.st.cfg.node {
		return
	}
	k, err := strconv.ParseUint(parts[0], 10, 8)
	if err != nil {
		return
	}
	num, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return
	}
	h.mu.Lock()
	a := h.kick[session.Kind(k)]
	if a.kick != nil && a.num < num {
		go a.kick()
		h.kick[session.Kind(k)] = attachment{id: a.id}
	}
	h.mu.Unlock()
}

// Touch records client activity (see Idle).
func (h *Frames) Touch() {
	h.mu.Lock()
	h.lastSeen = time.Now()
	h.wanted = h.lastSeen
	h.mu.Unlock()
}

func (h *Frames) markWanted() {
	h.mu.Lock()
	h.wanted = time.Now()
	h.mu.Unlock()
}

func (h *Frames) markGone() {
	h.mu.Lock()
	h.gone = true
	if h.ended == nil {
		h.ended = session.ErrEnded
	}
	h.drained = true
	h.mu.Unlock()
}

// active reports whether a client was active here since the last sweep
// (or is attached): the sweep records it in Redis for the owner.
func (h *Frames) active(now time.Time, lease time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attached > 0 || now.Sub(h.lastSeen) < lease
}

// wantsLease reports whether this process serves the session's
// downstreams (now or lately), and so should take it over when its owner
// is gone.
func (h *Frames) wantsLease(now time.Time, lease time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.closed && !h.gone && (h.attached > 0 || now.Sub(h.wanted) < 10*lease)
}

func (h *Frames) setOwned(owned bool) {
	h.owned.Store(owned)
	h.mu.Lock()
	f := h.onOwnership
	h.mu.Unlock()
	if f != nil {
		go f(owned)
	}
}

func (h *Frames) cacheFigures(vals []any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if vals[0] == nil {
		h.gone, h.drained = true, true
		if h.ended == nil {
			h.ended = session.ErrEnded
		}
		return
	}
	u := func(i int) uint64 { n, _ := strconv.ParseUint(str(vals[i]), 10, 64); return n }
	n, f, dl := u(0), u(1), u(2)
	h.figures = session.Stats{
		Frames: int(n - f), Bytes: int(u(4)), Pending: int(n - 1 - dl),
		Delivered: dl, Acked: u(3), Trimmed: u(5),
	}
	h.drained = str(vals[6]) == "1"
	if vals[7] != nil && h.ended == nil {
		h.ended = endError(str(vals[7]))
	}
	if ms := u(8); ms > 0 {
		h.seen = time.UnixMilli(int64(ms))
	}
	h.hasFigs = true
}

// Idle reports for how long the session has had no downstream attached
// here and no client activity anywhere (as of the last sweep).
func (h *Frames) Idle(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.attached > 0 {
		return 0
	}
	last := h.lastSeen
	if h.seen.After(last) {
		last = h.seen
	}
	return max(now.Sub(last), 0)
}

// Drained reports whether the log has ended and a reader was handed its
// last frame (as of the last sweep, or a read here).
func (h *Frames) Drained() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.drained
}

// Ended returns the end error, or nil while the log is open (as of the
// last sweep, or an end here).
func (h *Frames) Ended() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ended
}

// WaitDrained waits until a reader was handed the last frame, the session
// has been idle for idle, or ctx is done.
func (h *Frames) WaitDrained(ctx context.Context, idle time.Duration) {
	t := time.NewTicker(max(idle/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		if h.failedBy != nil {
			return
		}
		rctx, cancel := h.ctx()
		vals, err := h.st.rdb.HMGet(rctx, h.keys[0], "dr", "seen").Result()
		cancel()
		if err != nil || vals[0] == nil || str(vals[0]) == "1" {
			return
		}
		h.mu.Lock()
		attached, last := h.attached, h.lastSeen
		h.mu.Unlock()
		var ms int64
		fmt.Sscan(str(vals[1]), &ms)
		if seen := time.UnixMilli(ms); seen.After(last) {
			last = seen
		}
		if attached == 0 && time.Since(last) > idle {
			return
		}
		h.mu.Lock()
		ch := h.changedLocked()
		h.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// Stats returns the log's figures as of the last sweep.
func (h *Frames) Stats() session.Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.figures
}

// Owner returns the process holding the session's lease ("" for none).
func (h *Frames) Owner(ctx context.Context) (string, error) {
	if h.failedBy != nil {
		return "", h.failedBy
	}
	o, err := h.st.rdb.Get(ctx, h.keys[2]).Result()
	if err != nil && !isNil(err) {
		return "", fmt.Errorf("redisstore: %w", err)
	}
	return o, nil
}

// Owned reports whether this process holds the lease, as last seen.
func (h *Frames) Owned() bool { return h.owned.Load() }

// OnOwnership sets the function called when this process gains or loses
// the session's lease.
func (h *Frames) OnOwnership(f func(owned bool)) {
	h.mu.Lock()
	h.onOwnership = f
	h.mu.Unlock()
}

// ID returns the session's name.
func (h *Frames) ID() string { return h.id }

func isNil(err error) bool { return errors.Is(err, redisNil) }

// Disown gives the session's lease up if this process holds it (a
// graceful stop): another process serving the session takes it over at
// its next sweep, without waiting for the lease to expire.
func (h *Frames) Disown() error {
	if h.failedBy != nil {
		return h.failedBy
	}
	h.owned.Store(false)
	ctx, cancel := h.ctx()
	defer cancel()
	if err := disownScript.Run(ctx, h.st.rdb, h.keys, h.st.cfg.node).Err(); err != nil {
		return fmt.Errorf("redisstore: disown: %w", err)
	}
	return nil
}
