package compat

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"time"

	core "github.com/cableway/cableway/server/session"
)

// A session's seed events are the frames of a session-core log
// (server/session.Frames: a *session.Log in memory, or a shared store's
// log), as the bridge's own sessions' frames are: frame seq n is the event
// with msg_id base+n, where base is the events id's last msg_id when the
// session began, so msg_ids grow across the sessions of an events id. A
// frame holds the event without its msg_id, which is rendered in as it is
// read: a process that takes a shared session over appends without
// knowing the last seq. The log does the numbering, delivery,
// acknowledgement, waiting and attachment; queue adds the seed's bound
// (poll-queue: when full, the oldest events go, counted as dropped if no
// listener was handed them) on top of it. Pings are not forwarded: the
// log's keep-alive is unused.

// timeLayout is the "time" of events: RFC 3339, UTC, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// listener is the one downstream kind of the compat API: a new listener,
// SSE or long-poll, replaces the previous one whatever its kind.
const listener core.Kind = 0

// event is one seed event before it is queued.
type event struct {
	typ        string
	chanID     string
	at         time.Time
	identifier []byte // JSON
	message    []byte // JSON; nil is null
}

// appendJSON renders ev as queued: the long-poll form without its msg_id
// (see withMsgID) and without session_id, as the seed does (see
// withSession). Every string field but the two raw ones is URL-safe ASCII.
func (ev *event) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, ev.typ...)
	dst = append(dst, `","chan_id":"`...)
	dst = append(dst, ev.chanID...)
	dst = append(dst, `","time":"`...)
	dst = ev.at.UTC().AppendFormat(dst, timeLayout)
	dst = append(dst, `","identifier":`...)
	dst = append(dst, ev.identifier...)
	dst = append(dst, `,"message":`...)
	if ev.message == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, ev.message...)
	}
	return append(dst, '}')
}

// withSession appends an event as queued (the long-poll form) with
// session_id sid after its type, as SSE events carry it.
func withSession(dst, data []byte, sid string) []byte {
	const at = `,"chan_id":"` // the type before it is a plain word
	i := bytes.Index(data, []byte(at))
	if i < 0 {
		return append(dst, data...)
	}
	dst = append(dst, data[:i]...)
	dst = append(dst, `,"session_id":"`...)
	dst = append(dst, sid...)
	dst = append(dst, '"')
	return append(dst, data[i:]...)
}

// withMsgID appends a queued event with msg_id id after its chan_id, in
// the long-poll form.
func withMsgID(dst, data []byte, id uint64) []byte {
	const at = `,"time":"` // type and chan_id before it are plain words
	i := bytes.Index(data, []byte(at))
	if i < 0 {
		return append(dst, data...)
	}
	dst = append(dst, data[:i]...)
	dst = append(dst, `,"msg_id":"`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, '"')
	return append(dst, data[i:]...)
}

// item is a queued event handed to a listener.
type item struct {
	id   uint64 // msg_id
	data []byte // the long-poll form
}

// noWait makes Append fail instead of blocking: queue makes room first,
// so it never has to wait.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// sharedAppendWait bounds an append to a shared store's log.
const sharedAppendWait = 5 * time.Second

// queue is a session's events: a log plus the seed's bound.
type queue struct {
	log  core.Frames
	base uint64               // msg_id of seq 0
	set  func(msgID uint64)   // records a new last msg_id for the events id
	warn func(string, ...any) // logs a refused append
	// failed, on a shared store, lets the session go when the store
	// refuses an append (called with the session's mu held).
	failed func(error)
	// exact: the log is this process's own (*core.Log), whose figures
	// are exact; a shared store's are as of its last sweep, so the bound
	// probes the log instead and dropped events are counted by the
	// long-poll answers that skip them (see take).
	exact bool

	mu      sync.Mutex // one writer at a time; the bound's counters
	seq     uint64     // seq of the last event this process queued (0: none yet)
	floor   uint64     // the bound removed every event up to this seq
	limit   int
	dropped uint64 // events the bound removed unsent, since the last long-poll answer
}

// newMemoryQueue returns the queue of a session kept in this process.
func newMemoryQueue(base uint64, set func(uint64), warn func(string, ...any), budget *core.Budget) *queue {
	opts := []core.Option{
		// The bound keeps fewer events than the pending limit, so Append
		// never waits (the writer is the upstream reader).
		core.WithPendingLimit(MaxPollQueue+1, math.MaxInt/2),
		core.WithWindowLimit(math.MaxInt / 2),
	}
	if budget != nil {
		opts = append(opts, core.WithBudget(budget))
	}
	return &queue{log: core.NewLog(opts...), base: base, set: set, warn: warn, limit: DefaultPollQueue, exact: true}
}

// newSharedQueue returns the queue of a session on a shared store, on
// this process's handle log.
func newSharedQueue(log core.Frames, base uint64, limit int, set func(uint64), warn func(string, ...any)) *queue {
	if limit <= 0 {
		limit = DefaultPollQueue
	}
	return &queue{log: log, base: base, set: set, warn: warn, limit: limit}
}

// push queues ev as the next event. After end it does nothing.
func (q *queue) push(ev event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.exact && q.log.Ended() != nil {
		return
	}
	q.boundLocked(q.limit - 1)
	ctx := noWait
	if !q.exact {
		// A store's append is a round trip: it may not be cancelled
		// before. It is held back only past the store's pending byte
		// limit; then it waits a little, then the event is dropped.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), sharedAppendWait)
		defer cancel()
	}
	seq, err := q.log.Append(ctx, ev.appendJSON(nil))
	if err != nil {
		if errors.Is(err, core.ErrEnded) || errors.Is(err, core.ErrNotOwner) {
			return // over, or another process writes it now
		}
		if q.failed != nil && !errors.Is(err, context.DeadlineExceeded) {
			// The store failed: rather than drop events in silence, this
			// process lets the session go (its lease lapses; once the
			// store is back a process serving it takes it over).
			q.warn("compat: event not stored; this process lets the session go", "err", err)
			q.failed(err)
			return
		}
		// The memory budget (or a shared store's pending byte limit) is
		// spent and this session holds events not handed out yet: this
		// one goes, counted.
		q.dropped++
		q.warn("compat: event queue full or store failed; event dropped", "err", err)
		return
	}
	q.seq = seq
	q.set(q.base + seq)
	if !q.exact {
		q.boundLocked(q.limit)
	}
}

// boundLocked removes the oldest events until at most n are held; those
// no listener was handed count as dropped (in memory; see take for a
// shared store).
func (q *queue) boundLocked(n int) {
	n = max(n, 0)
	if q.seq <= uint64(n) {
		return
	}
	upTo := q.seq - uint64(n)
	if upTo <= q.floor {
		return
	}
	if q.exact {
		st := q.log.Stats()
		first := q.seq + 1 - uint64(st.Frames)
		if upTo >= first {
			if from := max(st.Delivered, first-1); upTo > from {
				q.dropped += upTo - from // never handed out: counted
			}
			q.markDelivered(upTo)
		}
	} else if q.log.Stats().Acked < upTo { // else a listener freed them already
		// A cursor past the end is refused without a change, naming the
		// oldest seq held.
		var re *core.ResetError
		if _, err := q.log.Read(0, q.seq+1, 0, 1, 1); errors.As(err, &re) && upTo >= re.First {
			q.markDelivered(upTo)
		}
	}
	q.floor = upTo
}

// markDelivered hands the events up to seq upTo (all held) to nobody and
// frees them.
func (q *queue) markDelivered(upTo uint64) {
	q.log.Read(0, upTo-1, 0, 1, math.MaxInt)
	q.log.Ack(upTo)
}

// end marks the queue complete: listeners hand out what is left and stop.
func (q *queue) end() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.log.End(nil)
}

// release drops every event: the session is gone.
func (q *queue) release() { q.log.Release() }

// over reports whether the queue has ended and its last events were
// handed out.
func (q *queue) over() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.exact {
		return q.log.Ended() != nil && q.log.Drained()
	}
	return q.log.Ended() != nil && q.log.Stats().Delivered >= q.seq
}

func (q *queue) limitNow() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.limit
}

func (q *queue) setLimit(n int) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limit = n
	q.boundLocked(n)
}

// validCursor tells whether n can be a msg_id this events id handed out:
// one of an earlier session (from the start of this one), or one held.
func (q *queue) validCursor(n uint64) bool { return n <= q.base || q.log.Has(n-q.base) }

// seqOf is the log's cursor for msg_id n (a valid cursor).
func (q *queue) seqOf(n uint64) uint64 {
	if n <= q.base {
		return 0 // before this session: from its start
	}
	return n - q.base
}

// ack frees the events up to msg_id n: the client has them.
func (q *queue) ack(n uint64) { q.log.Ack(q.seqOf(n)) }

// take hands out up to limit events after msg_id cur (acknowledging them
// too with ack) and returns them, how many more follow them, whether the
// queue has ended with nothing after them, and how many events the bound
// removed between cur and the first of them (skipped).
func (q *queue) take(cur uint64, limit int, ack bool) (items []item, rest int, ended bool, skipped uint64) {
	after := q.seqOf(cur)
	for {
		b, err := q.log.Read(0, after, 0, limit, math.MaxInt)
		var re *core.ResetError
		if errors.As(err, &re) {
			if re.Reason != core.ReasonTrimmed {
				return nil, 0, true, skipped // not a cursor of this log: nothing to give
			}
			skipped += re.First - 1 - after
			after = re.First - 1 // gone from the window: go on after them
			continue
		}
		if b.From > after {
			skipped += b.From - after // freed before they were read here
		}
		last := max(after, b.From)
		items = make([]item, len(b.Frames))
		for i, f := range b.Frames {
			id := q.base + f.Seq
			items[i] = item{id: id, data: withMsgID(nil, f.Data, id)}
			last = f.Seq
		}
		if ack && len(b.Frames) > 0 {
			q.log.Ack(last)
		}
		rest = 0
		if b.Next > last+1 {
			rest = int(b.Next - 1 - last)
		}
		return items, rest, err != nil || (rest == 0 && q.log.Ended() != nil), skipped
	}
}

// notify calls f, once, on a goroutine of its own, when an event follows
// cur or the queue ends.
func (q *queue) notify(cur uint64, f func()) (stop func() bool) {
	return q.log.Notify(q.seqOf(cur), 0, f)
}

// wait blocks until an event follows msg_id cur, the queue ends, tick
// fires (core.ErrTick) or ctx is done.
func (q *queue) wait(ctx context.Context, cur uint64, tick <-chan time.Time) error {
	return q.log.Wait(ctx, q.seqOf(cur), 0, tick)
}

// cursor is where a listener that names no cursor starts: after what was
// handed out already (on a shared store, as of its last sweep).
func (q *queue) cursor() uint64 { return q.base + q.log.Stats().Delivered }

func (q *queue) takeDropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.dropped
	q.dropped = 0
	return n
}
