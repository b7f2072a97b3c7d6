package compat

import (
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
)

// This file is the seam between the compat API and its per-session event
// log: a queue of seed events in msg_id order, bounded by poll-queue with
// the seed's rule (when full, the oldest go, counted as dropped if no
// listener was handed them), acknowledged by listeners.

// timeLayout is the "time" of events: RFC 3339, UTC, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// event is one queued seed event.
type event struct {
	id         uint64 // msg_id
	typ        string
	chanID     string
	at         time.Time
	identifier []byte // JSON
	message    []byte // JSON; nil is null
}

// appendJSON renders ev; long-poll answers leave session_id out (sid ""),
// as the seed does. Every string field but the two raw ones is URL-safe
// ASCII.
func (ev *event) appendJSON(dst []byte, sid string) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, ev.typ...)
	if sid != "" {
		dst = append(dst, `","session_id":"`...)
		dst = append(dst, sid...)
	}
	dst = append(dst, `","chan_id":"`...)
	dst = append(dst, ev.chanID...)
	dst = append(dst, `","msg_id":"`...)
	dst = strconv.AppendUint(dst, ev.id, 10)
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

// queue holds a session's events until a listener acknowledges them.
type queue struct {
	seq func() uint64 // the next msg_id (the events id's counter)
	max func() uint64 // the last msg_id handed out for the events id

	mu      sync.Mutex
	events  []event
	acked   uint64 // events up to this msg_id are acknowledged (gone)
	sent    uint64 // events up to this msg_id were handed to a listener
	limit   int
	dropped uint64 // events the bound evicted unsent, since the last long-poll answer
	ended   bool   // nothing will follow
	drained bool   // ended, and a listener was handed the last event
	changed chan struct{}
}

func newQueue(start uint64, seq, max func() uint64) *queue {
	return &queue{seq: seq, max: max, acked: start, sent: start, limit: DefaultPollQueue, changed: make(chan struct{})}
}

func (q *queue) broadcastLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// push numbers ev and queues it. After end it does nothing.
func (q *queue) push(ev event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ended {
		return
	}
	ev.id = q.seq()
	q.events = append(q.events, ev)
	q.trimLocked()
	q.broadcastLocked()
}

// end marks the queue complete: listeners hand out what is left and stop.
func (q *queue) end() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.ended {
		q.ended = true
		q.drained = q.lastLocked() <= q.sent
		q.broadcastLocked()
	}
}

func (q *queue) lastLocked() uint64 {
	if len(q.events) == 0 {
		return 0
	}
	return q.events[len(q.events)-1].id
}

// over reports whether the queue is ended and its last events were handed
// out.
func (q *queue) over() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ended && q.lastLocked() <= q.sent
}

// isDrained reports whether the queue ended and a listener was handed its
// last event, and returns a channel closed at the next change.
func (q *queue) isDrained() (bool, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.drained, q.changed
}

func (q *queue) setLimit(n int) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limit = n
	q.trimLocked()
}

// trimLocked applies the bound: the oldest events go, and those that no
// listener was handed count as dropped. Events handed out but not
// acknowledged stay while the bound allows, for resending.
func (q *queue) trimLocked() {
	for len(q.events) > q.limit {
		if q.events[0].id > q.sent {
			q.dropped++
		}
		q.events[0] = event{}
		q.events = q.events[1:]
	}
}

// validCursor tells whether n can be a msg_id this events id handed out.
func (q *queue) validCursor(n uint64) bool { return n <= q.max() }

// ack frees the events up to msg_id n: the client has them.
func (q *queue) ack(n uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ackLocked(n)
}

func (q *queue) ackLocked(n uint64) {
	if n <= q.acked || !q.validCursor(n) {
		return
	}
	q.acked = n
	q.sent = max(q.sent, n)
	i := sort.Search(len(q.events), func(i int) bool { return q.events[i].id > n })
	clear(q.events[:i])
	q.events = q.events[i:]
	if len(q.events) == 0 {
		q.events = nil
	}
}

// take hands out up to limit events after msg_id cur (acknowledging them
// too with ack) and returns them, how many more follow them, whether the
// queue has ended, and a channel closed at the next change.
func (q *queue) take(cur uint64, limit int, ack bool) (evs []event, rest int, ended bool, changed <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := sort.Search(len(q.events), func(i int) bool { return q.events[i].id > cur })
	n := min(len(q.events)-i, limit)
	evs, rest = slices.Clone(q.events[i:i+n]), len(q.events)-i-n
	if n > 0 {
		last := evs[n-1].id
		q.sent = max(q.sent, last)
		if ack {
			q.ackLocked(last)
		}
	}
	if q.ended && !q.drained && q.lastLocked() <= q.sent {
		q.drained = true
		defer q.broadcastLocked()
	}
	return evs, rest, q.ended, q.changed
}

// waitFor returns whether events follow msg_id cur, whether the queue has
// ended, and a channel closed at the next change.
func (q *queue) waitFor(cur uint64) (ready, ended bool, changed <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastLocked() > cur, q.ended, q.changed
}

// cursor is where a listener that names no cursor starts: after what was
// handed out already.
func (q *queue) cursor() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sent
}

func (q *queue) takeDropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.dropped
	q.dropped = 0
	return n
}
