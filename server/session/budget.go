package session

import "sync/atomic"

// Budget bounds the bytes that every Log sharing it holds together. Over
// it, logs trim their resume windows and writers wait for readers (see
// Log.Append). It is safe for concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64

	wake atomic.Pointer[chan struct{}] // closed when bytes are freed while someone waits
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
	if n < 0 && b.wake.Load() != nil {
		if ch := b.wake.Swap(nil); ch != nil {
			close(*ch)
		}
	}
}

// changed returns a channel closed the next time bytes are freed.
// A caller checks its condition again after taking the channel, so that a
// free between the two is not missed.
func (b *Budget) changed() <-chan struct{} {
	for {
		if ch := b.wake.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if b.wake.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}
