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
// (server/session.Log), as the bridge's own sessions' frames are: frame
// seq n is the event with msg_id base+n, where base is the events id's
// last msg_id when the session began, so msg_ids grow across the sessions
// of an events id. The log does the numbering, delivery, acknowledgement,
// waiting and attachment; queue adds the seed's bound (poll-queue: when
// full, the oldest events go, counted as dropped if no listener was handed
// them) on top of it. Pings are not forwarded: the log's keep-alive is
// unused.

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

// appendJSON renders ev with msg_id id, in the long-poll form: without
// session_id, as the seed does (see withSession). Every string field but
// the two raw ones is URL-safe ASCII.
func (ev *event) appendJSON(dst []byte, id uint64) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, ev.typ...)
	dst = append(dst, `","chan_id":"`...)
	dst = append(dst, ev.chanID...)
	dst = append(dst, `","msg_id":"`...)
	dst = strconv.AppendUint(dst, id, 10)
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

// queue is a session's events: a log plus the seed's bound.
type queue struct {
	log  *core.Log
	base uint64               // msg_id of seq 0
	last func() uint64        // the events id's last msg_id
	set  func(msgID uint64)   // records a new last msg_id for the events id
	warn func(string, ...any) // logs a refused append

	mu      sync.Mutex // one writer at a time; the bound's counters
	seq     uint64     // seq of the last event queued
	limit   int
	dropped uint64 // events the bound removed unsent, since the last long-poll answer
}

func newQueue(base uint64, last func() uint64, set func(uint64), warn func(string, ...any), budget *core.Budget) *queue {
	opts := []core.Option{
		// The bound keeps fewer events than the pending limit, so Append
		// never waits (the writer is the upstream reader).
		core.WithPendingLimit(MaxPollQueue+1, math.MaxInt/2),
		core.WithWindowLimit(math.MaxInt / 2),
	}
	if budget != nil {
		opts = append(opts, core.WithBudget(budget))
	}
	return &queue{
		log:  core.NewLog(opts...),
		base: base, last: last, set: set, warn: warn, limit: DefaultPollQueue,
	}
}

// push queues ev as the next event. After end it does nothing.
func (q *queue) push(ev event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.log.Ended() != nil {
		return
	}
	q.boundLocked(q.limit - 1)
	id := q.base + q.seq + 1
	seq, err := q.log.Append(noWait, ev.appendJSON(nil, id))
	if err != nil {
		// The memory budget is spent and this session holds events
		// not handed out yet: this one goes, counted.
		q.dropped++
		q.warn("compat: memory budget spent; event dropped", "err", err)
		return
	}
	q.seq = seq
	q.set(id)
}

// boundLocked removes the oldest events until at most n are held; those
// no listener was handed count as dropped.
func (q *queue) boundLocked(n int) {
	for {
		st := q.log.Stats()
		if st.Frames <= max(n, 0) {
			return
		}
		oldest := q.seq + 1 - uint64(st.Frames)
		if oldest > st.Delivered {
			// Never handed out: hand it to nobody, and count it.
			q.log.Read(0, oldest-1, 0, 1, math.MaxInt)
			q.dropped++
		}
		q.log.Ack(oldest)
	}
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
	return q.log.Ended() != nil && q.log.Stats().Delivered >= q.seq
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

// validCursor tells whether n can be a msg_id this events id handed out.
func (q *queue) validCursor(n uint64) bool { return n <= q.last() }

// seqOf is the log's cursor for msg_id n.
func (q *queue) seqOf(n uint64) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n <= q.base {
		return 0 // before this session: from its start
	}
	return min(n-q.base, q.seq)
}

// ack frees the events up to msg_id n: the client has them.
func (q *queue) ack(n uint64) { q.log.Ack(q.seqOf(n)) }

// take hands out up to limit events after msg_id cur (acknowledging them
// too with ack) and returns them, how many more follow them, and whether
// the queue has ended with nothing after them.
func (q *queue) take(cur uint64, limit int, ack bool) (items []item, rest int, ended bool) {
	after := q.seqOf(cur)
	for {
		b, err := q.log.Read(0, after, 0, limit, math.MaxInt)
		var re *core.ResetError
		if errors.As(err, &re) {
			if re.Reason != core.ReasonTrimmed {
				return nil, 0, true // not a cursor of this log: nothing to give
			}
			after = re.First - 1 // gone from the window: go on after them
			continue
		}
		last := max(after, b.From)
		items = make([]item, len(b.Frames))
		for i, f := range b.Frames {
			items[i] = item{id: q.base + f.Seq, data: f.Data}
			last = f.Seq
		}
		if ack && len(b.Frames) > 0 {
			q.log.Ack(last)
		}
		rest = int(b.Next - 1 - last)
		return items, rest, err != nil || (rest == 0 && q.log.Ended() != nil)
	}
}

// wait blocks until an event follows msg_id cur, the queue ends, tick
// fires (core.ErrTick) or ctx is done.
// notify calls f, once, on a goroutine of its own, when an event follows
// cur or the queue ends.
func (q *queue) notify(cur uint64, f func()) (stop func() bool) {
	return q.log.Notify(q.seqOf(cur), 0, f)
}

func (q *queue) wait(ctx context.Context, cur uint64, tick <-chan time.Time) error {
	return q.log.Wait(ctx, q.seqOf(cur), 0, tick)
}

// cursor is where a listener that names no cursor starts: after what was
// handed out already.
func (q *queue) cursor() uint64 { return q.base + q.log.Stats().Delivered }

func (q *queue) takeDropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.dropped
	q.dropped = 0
	return n
}
