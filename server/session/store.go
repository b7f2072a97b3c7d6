package session

import (
	"context"
	"errors"
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

// Meta is what a shared store keeps of a session besides its frames, so
// that any bridge process sharing it can serve the session's downstreams
// and, once the process that holds its upstream is gone, redial it.
type Meta struct {
	Token    string              // the client's secret for the session's URLs
	Epoch    uint32              // the epoch of the session's cursors
	IP       string              // the client key the session counts against
	Upstream string              // the URL the upstream was dialled with
	Header   map[string][]string // the upstream handshake's headers (credentials)
	Acked    uint64              // the highest client command sequence applied
	// State is what the session's kind keeps besides, opaque to the
	// store (the compat API's subscriptions, say); SetState replaces it.
	State []byte
}

// Shared is a Store that several bridge processes share (see
// server/session/redisstore): a session is created by one process, its
// owner, which holds its upstream connection and a lease on it; any
// process opens it to serve its downstreams. Commands reach the owner
// through Forward.
type Shared interface {
	Store
	// Node names this process among those sharing the store.
	Node() string
	// Create makes the log and metadata of a new session owned by this
	// process.
	Create(ctx context.Context, id string, m Meta) (SharedFrames, error)
	// Open returns a handle on an existing session (ErrUnknownSession when
	// there is none) and its metadata.
	Open(ctx context.Context, id string) (SharedFrames, Meta, error)
	// Meta reads a session's metadata as it is now.
	Meta(ctx context.Context, id string) (Meta, error)
	// SetAcked records the highest command sequence applied to a session.
	SetAcked(ctx context.Context, id string, acked uint64) error
	// SetState replaces a session's State.
	SetState(ctx context.Context, id string, state []byte) error
	// Forward sends req to the process node and returns its answer (see
	// Serve). ErrNoOwner: no such process listens.
	Forward(ctx context.Context, node string, req []byte) ([]byte, error)
	// Serve sets the function that answers the requests other processes
	// Forward to this one.
	Serve(f func(ctx context.Context, req []byte) []byte)
}

// SharedFrames is one process's handle on a session of a Shared store.
type SharedFrames interface {
	Frames
	// Owner returns the process that holds the session's lease ("" when
	// none does: the owner died and no one took over yet).
	Owner(ctx context.Context) (string, error)
	// Owned reports whether this process holds the lease (as last seen).
	Owned() bool
	// OnOwnership sets the function called, on a goroutine of its own,
	// when this process gains (true) or loses (false) the session's lease.
	// A process that serves a session's downstreams takes the lease over
	// once it has expired.
	OnOwnership(f func(owned bool))
	// Disown gives the lease up, if this process holds it, so that
	// another process takes the session over at once (a graceful stop).
	Disown() error
	// Close drops this process's handle; the session goes on.
	Close()
}

// Errors of a shared store.
var (
	// ErrUnknownSession: the store has no such session (never made,
	// released, or expired).
	ErrUnknownSession = errors.New("session: unknown session")
	// ErrNotOwner: the process does not hold the session's lease; its
	// write was refused.
	ErrNotOwner = errors.New("session: not the session's owner")
	// ErrNoOwner: no process answered for the session.
	ErrNoOwner = errors.New("session: no owner answered")
)
