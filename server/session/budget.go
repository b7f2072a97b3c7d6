package session

import (
	"sync"
	"sync/atomic"
)

// Budget bounds the bytes that every Log sharing it holds together. Over
// it, logs trim their resume windows and writers wait for readers (see
// Log.Append), first come first served. It is safe for concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64

	waiting atomic.Int32 // len(queue), read without the lock
	mu      sync.Mutex
	queue   []*budgetWaiter // FIFO
}

// budgetWaiter is one writer waiting for room.
type budgetWaiter struct {
	need  int64
	ready chan struct{} // closed when room was freed for it
}

// NewBudget returns a budget of limit bytes (0 or less: no limit).
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used returns the bytes held now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Limit returns the budget's limit.
func (b *Budget) Limit() int64 { return b.limit }

// over reports whether adding n bytes would pass the limit.
func (b *Budget) over(n int) bool {
	return b.limit > 0 && b.used.Load()+int64(n) > b.limit
}

// pressed reports whether more than three quarters of the budget are
// used: logs then keep no resume window.
func (b *Budget) pressed() bool {
	return b.limit > 0 && b.used.Load() > b.limit/4*3
}

func (b *Budget) add(n int) {
	b.used.Add(int64(n))
	if n < 0 && b.waiting.Load() > 0 {
		b.wakeSome()
	}
}

// wakeSome wakes the waiters at the front of the queue for whom the room
// now free suffices. Waking them one by one, in order, instead of all at
// once keeps thousands of held-back sessions from stampeding on each free.
func (b *Budget) wakeSome() {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.limit - b.used.Load()
	n := 0
	for n < len(b.queue) && b.queue[n].need <= room {
		room -= b.queue[n].need
		close(b.queue[n].ready)
		n++
	}
	if n > 0 {
		clear(b.queue[:n])
		b.queue = b.queue[n:]
		if len(b.queue) == 0 {
			b.queue = nil
		}
		b.waiting.Store(int32(len(b.queue)))
	}
}

// wait queues a writer that needs need bytes and returns a channel closed
// when room was freed for it, and a func that takes it out of the queue,
// to call once it stops waiting. The caller checks the budget again after
// wait, so that a free between its check and wait is not missed.
func (b *Budget) wait(need int) (<-chan struct{}, func()) {
	w := &budgetWaiter{need: int64(need), ready: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, w)
	b.waiting.Store(int32(len(b.queue)))
	b.mu.Unlock()
	return w.ready, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, q := range b.queue {
			if q == w {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				b.waiting.Store(int32(len(b.queue)))
				return
			}
		}
	}
}
