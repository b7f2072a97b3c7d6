package session

import (
	"context"
	"time"
)

// Frames is what a bridge does with one session's log: its upstream
// appends, its downstreams read, wait, acknowledge and attach. *Log is the
// in-memory implementation. A store shared by several bridge processes
// (so that any of them can serve any session's downstreams) implements it
// too; the bridge's downstream adapters see only this interface.
type Frames interface {
	Append(ctx context.Context, data []byte) (uint64, error)
	Final(data []byte)
	SetPing(data []byte)
	End(err error)
	Release()

	Read(ack, after, pingSeen uint64, maxFrames, maxBytes int) (Batch, error)
	Wait(ctx context.Context, after, pingSeen uint64, tick <-chan time.Time) error
	Notify(after, pingSeen uint64, f func()) (stop func() bool)
	Ack(upTo uint64)
	Has(after uint64) bool

	AttachFunc(k Kind, kick func()) (detach func())
	Touch()
	Idle(now time.Time) time.Duration
	Drained() bool
	Ended() error
	WaitDrained(ctx context.Context, idle time.Duration)
	Stats() Stats
}

// Store makes the frame logs of new sessions.
type Store interface {
	// NewFrames returns the empty log of a new session.
	NewFrames(id string) Frames
}

// MemoryStore keeps every log in this process's memory (NewLog).
type MemoryStore struct {
	opts []Option
}

// NewMemoryStore returns a store whose logs are made with opts.
func NewMemoryStore(opts ...Option) *MemoryStore { return &MemoryStore{opts: opts} }

// NewFrames returns NewLog(opts...).
func (m *MemoryStore) NewFrames(string) Frames { return NewLog(m.opts...) }

var _ Frames = (*Log)(nil)
