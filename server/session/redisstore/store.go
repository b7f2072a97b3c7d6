// Package redisstore keeps the Cableway bridge's sessions in Redis, so
// that several bridge processes behind a plain round-robin load balancer
// serve any session: whichever process a client's SSE, long-poll or
// WebSocket re-attach lands on reads the session's frames from Redis at
// the client's cursor, and commands POSTed to any process reach the one
// that holds the session's upstream connection.
//
// Each session is four keys in Redis: a hash of the log's counters, a
// List of its frames (the oldest held first: a frame's seq is its index
// plus the oldest seq's, so cursors stay the bridge's numbers), its owner
// lease and a string of its metadata. The log keeps the in-memory log's contract (server/session.Log): the
// writer is held back past the pending limit, delivered frames are kept
// until acknowledged within the resume window, a reader asking for
// trimmed frames gets a *session.ResetError. Every change is one Lua
// script, so the counters and the List never disagree. Waiting readers
// are woken through Redis pub/sub: each process holds one subscription
// connection, subscribed to the channels of the sessions it has open,
// and one goroutine reads it; no goroutine per session.
//
// # Round trips
//
// An Append is one round trip to Redis, and returns once its frame is
// there (a reader on any process may read it then), as with the memory
// log; the appends and reads of all the sessions of a process that are
// made while others are on their way go together in one pipeline. A
// session's events carry what changed (the next seq, the keep-alive
// count), so a woken reader knows without asking Redis whether there is
// news: a delivery costs the append's round trip and the read's. One
// session's throughput is bound by the append's round trip, since the
// bridge appends a session's frames one at a time.
//
// # Failure model
//
// The process that created a session (its owner) holds its upstream
// WebSocket and a lease in Redis (SET NX PX), renewed every third of the
// lease. Its appends are fenced by the lease: a process that lost it (a
// pause longer than the lease, a partition) cannot write. When the owner
// dies its lease expires; a process serving one of the session's
// downstreams takes the lease as it expires (its sweep, every third of
// the lease, sees how long the lease has left and tries again then;
// OnOwnership) and redials, and the frames
// already in Redis stay readable throughout: the seq goes on. Frames
// Rails sent the dead owner but that were not in Redis yet are lost, as
// are broadcasts made before the new upstream's subscriptions are
// confirmed (as after any ActionCable reconnect).
//
// When Redis is unreachable, writes fail: appends return the error (the
// bridge ends the session's upstream), reads return it (the client's
// stream breaks and it retries at its cursor). Nothing is kept in the
// process's memory instead: a session's frames are where Redis keeps
// them, with Redis's own durability (none without persistence). Keys
// carry a TTL refreshed on every write, so sessions no process serves
// any more expire.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cableway/cableway/server/session"
)

// Defaults of the Store options.
const (
	DefaultPrefix = "cableway:"
	DefaultLease  = 3 * time.Second
	DefaultTTL    = 2 * time.Minute
)

// Option configures a Store.
type Option func(*config)

type config struct {
	prefix        string
	node          string
	lease         time.Duration
	ttl           time.Duration
	pendingFrames int
	pendingBytes  int
	windowBytes   int
	logger        *slog.Logger
}

// WithPrefix sets the prefix of every key and channel (default
// "cableway:"), so that unrelated deployments can share one Redis.
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithNode names this process among those sharing the store (default: a
// random name). Names must be unique.
func WithNode(name string) Option {
	return func(c *config) {
		if name != "" {
			c.node = name
		}
	}
}

// WithLease sets how long an owner's lease lasts without renewal
// (default 3 s): the time a dead owner's sessions wait for a takeover.
func WithLease(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.lease = d
		}
	}
}

// WithTTL sets how long a session's keys outlive its last write (default
// 2 min). Keep it above the bridge's session TTL.
func WithTTL(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.ttl = d
		}
	}
}

// WithLimits bounds each session's log as session.WithPendingLimit and
// session.WithWindowLimit do (defaults: the session package's).
func WithLimits(pendingFrames, pendingBytes, windowBytes int) Option {
	return func(c *config) {
		if pendingFrames > 0 {
			c.pendingFrames = pendingFrames
		}
		if pendingBytes > 0 {
			c.pendingBytes = pendingBytes
		}
		if windowBytes >= 0 {
			c.windowBytes = windowBytes
		}
	}
}

// WithLogger sets where the store logs (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// Store is a session.Shared on one Redis. Create it with New and stop it
// with Close. It is safe for concurrent use.
type Store struct {
	cfg    config
	rdb    *redis.Client
	ps     *redis.PubSub
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nodeCh string

	mu      sync.Mutex
	handles map[string]*Frames       // by event channel: sessions open here
	subWait map[string]chan struct{} // channel → closed once subscribed
	calls   map[string]chan []byte   // forwarded request id → answer
	serve   func(context.Context, []byte) []byte
	closed  bool

	amu     sync.Mutex
	aq      []*scriptReq // scripts waiting for a group on its way to end (grouped.go)
	agroups int          // groups on their way

	stats counters
}

type counters struct {
	forwarded, served, acquired, lost, errors atomic.Uint64
}

// Stats are a store's counters, for metrics.
type Stats struct {
	Handles   int    // sessions open in this process
	Owned     int    // of which this process holds the lease
	Forwarded uint64 // requests forwarded to other processes
	Served    uint64 // requests answered for other processes
	Acquired  uint64 // leases taken over from a dead owner
	Lost      uint64 // leases this process lost
	Errors    uint64 // Redis errors seen by the background work
}

// New connects to the Redis at rawURL (redis://[user:password@]host:port/db
// or rediss://…) and returns a store. ctx bounds the connection check.
func New(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	cfg := config{
		prefix: DefaultPrefix, lease: DefaultLease, ttl: DefaultTTL,
		pendingFrames: session.DefaultPendingFrames, pendingBytes: session.DefaultPendingBytes,
		windowBytes: session.DefaultWindowBytes, logger: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.node == "" {
		cfg.node = randomID()
	}
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	ro.DisableIdentity = true
	rdb := redis.NewClient(ro)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redisstore: redis at %s: %w", ro.Addr, err)
	}
	s := &Store{
		cfg: cfg, rdb: rdb, nodeCh: cfg.prefix + "node:" + cfg.node,
		handles: map[string]*Frames{}, subWait: map[string]chan struct{}{}, calls: map[string]chan []byte{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ps = rdb.Subscribe(s.ctx)
	msgs := s.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	s.wg.Add(2)
	go s.dispatch(msgs)
	go s.sweep()
	if err := s.subscribe(ctx, s.nodeCh); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Node returns this process's name among those sharing the store.
func (s *Store) Node() string { return s.cfg.node }

// Client returns the store's Redis client (for tests and diagnostics).
func (s *Store) Client() *redis.Client { return s.rdb }

// Close stops the store's background work and closes its connections.
// Handles still open stop working.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	handles := make([]*Frames, 0, len(s.handles))
	for _, h := range s.handles {
		handles = append(handles, h)
	}
	s.mu.Unlock()
	s.cancel()
	s.ps.Close()
	s.wg.Wait()
	for _, h := range handles {
		h.broadcast()
	}
	return s.rdb.Close()
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	st := Stats{Handles: len(s.handles)}
	for _, h := range s.handles {
		if h.owned.Load() {
			st.Owned++
		}
	}
	s.mu.Unlock()
	st.Forwarded = s.stats.forwarded.Load()
	st.Served = s.stats.served.Load()
	st.Acquired = s.stats.acquired.Load()
	st.Lost = s.stats.lost.Load()
	st.Errors = s.stats.errors.Load()
	return st
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// keys of session id: meta hash, frame list, owner lease, record (see
// record); and its event channel.
func (s *Store) keys(id string) ([]string, string) {
	base := s.cfg.prefix + "{" + id + "}:"
	return []string{base + "m", base + "s", base + "o", base + "c"}, base + "e"
}

// subscribe adds channel to the store's subscription and waits until
// Redis confirmed it, so that no event published after it is missed.
func (s *Store) subscribe(ctx context.Context, channel string) error {
	s.mu.Lock()
	ch, ok := s.subWait[channel]
	if !ok {
		ch = make(chan struct{})
		s.subWait[channel] = ch
	}
	s.mu.Unlock()
	if !ok {
		if err := s.ps.Subscribe(ctx, channel); err != nil {
			s.mu.Lock()
			delete(s.subWait, channel)
			s.mu.Unlock()
			return fmt.Errorf("redisstore: subscribe: %w", err)
		}
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("redisstore: subscribe: no confirmation from redis within 5s")
	case <-s.ctx.Done():
		return errors.New("redisstore: closed")
	}
}

func (s *Store) unsubscribe(channel string) {
	s.mu.Lock()
	delete(s.subWait, channel)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	s.ps.Unsubscribe(ctx, channel)
}

// dispatch reads the store's subscription: session events wake the
// session's waiters, node messages are forwarded requests and answers.
func (s *Store) dispatch(msgs <-chan any) {
	defer s.wg.Done()
	for m := range msgs {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			again := false
			s.mu.Lock()
			if ch, ok := s.subWait[m.Channel]; ok {
				select {
				case <-ch:
					again = true
				default:
					close(ch)
				}
			}
			h := s.handles[m.Channel]
			s.mu.Unlock()
			if h != nil && again { // a resubscription after a reconnect: events may have been missed
				h.invalidate()
			}
		case *redis.Message:
			if m.Channel == s.nodeCh {
				s.nodeMessage(m.Payload)
				continue
			}
			s.mu.Lock()
			h := s.handles[m.Channel]
			s.mu.Unlock()
			if h == nil {
				continue
			}
			if strings.HasPrefix(m.Payload, "k") {
				h.remoteKick(m.Payload)
				continue
			}
			h.event(m.Payload)
		}
	}
}

// envelope is a message between processes.
type envelope struct {
	Answer bool   `json:"a,omitempty"`
	ID     string `json:"id"`
	From   string `json:"from,omitempty"`
	Body   []byte `json:"b"`
}

func (s *Store) nodeMessage(payload string) {
	var e envelope
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		s.cfg.logger.Warn("redisstore: malformed node message", "err", err)
		return
	}
	if e.Answer {
		s.mu.Lock()
		ch := s.calls[e.ID]
		delete(s.calls, e.ID)
		s.mu.Unlock()
		if ch != nil {
			ch <- e.Body
		}
		return
	}
	s.mu.Lock()
	serve := s.serve
	s.mu.Unlock()
	if serve == nil {
		return
	}
	s.stats.served.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		ans, _ := json.Marshal(envelope{Answer: true, ID: e.ID, Body: serve(ctx, e.Body)})
		if err := s.rdb.Publish(ctx, s.cfg.prefix+"node:"+e.From, ans).Err(); err != nil {
			s.stats.errors.Add(1)
			s.cfg.logger.Warn("redisstore: answer to a forwarded request lost", "node", e.From, "err", err)
		}
	}()
}

// Serve sets the function that answers requests other processes Forward
// here; it runs on a goroutine per request.
func (s *Store) Serve(f func(ctx context.Context, req []byte) []byte) {
	s.mu.Lock()
	s.serve = f
	s.mu.Unlock()
}

// Forward sends req to process node and waits for its answer until ctx
// is done. session.ErrNoOwner: no process of that name listens.
func (s *Store) Forward(ctx context.Context, node string, req []byte) ([]byte, error) {
	id := randomID()
	ch := make(chan []byte, 1)
	s.mu.Lock()
	s.calls[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.calls, id)
		s.mu.Unlock()
	}()
	msg, _ := json.Marshal(envelope{ID: id, From: s.cfg.node, Body: req})
	n, err := s.rdb.Publish(ctx, s.cfg.prefix+"node:"+node, msg).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: forward: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("redisstore: forward to %s: %w", node, session.ErrNoOwner)
	}
	s.stats.forwarded.Add(1)
	select {
	case ans := <-ch:
		return ans, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("redisstore: forward to %s: no answer: %w", node, ctx.Err())
	}
}

// NewFrames makes the log of a new session owned by this process, with no
// metadata (session.Store). A Redis failure ends the log at once with it.
func (s *Store) NewFrames(id string) session.Frames {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	h, err := s.Create(ctx, id, session.Meta{})
	if err != nil {
		return failed(err)
	}
	return h
}

// Create makes the log and metadata of a new session, owned by this
// process.
func (s *Store) Create(ctx context.Context, id string, m session.Meta) (session.SharedFrames, error) {
	h := s.handle(id)
	rec, err := json.Marshal(record{Token: m.Token, Epoch: m.Epoch, IP: m.IP, Upstream: m.Upstream, Header: m.Header})
	if err != nil {
		return nil, fmt.Errorf("redisstore: create: %w", err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, h.keys...)
		p.HSet(ctx, h.keys[0], "n", 1, "f", 1, "dl", 0, "ak", 0, "b", 0, "pb", 0, "tr", 0, "pn", 0,
			"cs", m.Acked, "st", m.State, "seen", time.Now().UnixMilli())
		p.PExpire(ctx, h.keys[0], s.cfg.ttl)
		p.Set(ctx, h.keys[2], s.cfg.node, s.cfg.lease)
		p.Set(ctx, h.keys[3], rec, s.cfg.ttl)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: create: %w", err)
	}
	h.owned.Store(true)
	if err := s.register(ctx, h); err != nil {
		s.rdb.Del(context.Background(), h.keys...)
		return nil, err
	}
	h.mu.Lock()
	if h.gen == 0 { // a new log, no event missed since
		h.known = knownState{n: 1, valid: true}
	}
	h.mu.Unlock()
	return h, nil
}

// Open returns a handle on an existing session and its metadata
// (session.ErrUnknownSession when there is none).
func (s *Store) Open(ctx context.Context, id string) (session.SharedFrames, session.Meta, error) {
	h := s.handle(id)
	// Subscribed first: no event after the state read below is missed.
	if err := s.register(ctx, h); err != nil {
		return nil, session.Meta{}, err
	}
	h.mu.Lock()
	gen := h.gen
	h.mu.Unlock()
	m, vals, err := s.readMeta(ctx, id, h.keys, "n", "pn", "e")
	if err != nil {
		h.Close()
		return nil, session.Meta{}, err
	}
	n, _ := strconv.ParseUint(str(vals[0]), 10, 64)
	pn, _ := strconv.ParseUint(str(vals[1]), 10, 64)
	h.mu.Lock()
	h.learnLocked(n, pn, vals[2] != nil)
	h.known.valid = h.gen == gen
	h.mu.Unlock()
	return h, m, nil
}

// record is what a session's record key holds: its metadata that never
// changes, apart from the meta hash so that the hash stays small enough
// for Redis's compact encoding (a value over 64 bytes, such as a header,
// would make it a hash table several times its size).
type record struct {
	Token    string              `json:"t"`
	Epoch    uint32              `json:"e"`
	IP       string              `json:"i,omitempty"`
	Upstream string              `json:"u,omitempty"`
	Header   map[string][]string `json:"h,omitempty"`
}

// readMeta reads session id's metadata (session.ErrUnknownSession when
// there is no such session) and the meta hash's fields extra, in one
// round trip.
func (s *Store) readMeta(ctx context.Context, id string, keys []string, extra ...string) (session.Meta, []any, error) {
	var rec *redis.StringCmd
	var fields *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.Get(ctx, keys[3])
		fields = p.HMGet(ctx, keys[0], append([]string{"cs", "st"}, extra...)...)
		return nil
	})
	if err != nil && !isNil(err) {
		return session.Meta{}, nil, fmt.Errorf("redisstore: %w", err)
	}
	vals := fields.Val()
	raw, err := rec.Bytes()
	if isNil(err) || len(vals) < 2 || vals[0] == nil {
		return session.Meta{}, nil, session.ErrUnknownSession
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return session.Meta{}, nil, fmt.Errorf("redisstore: session %s: bad record: %w", id, err)
	}
	m := session.Meta{Token: r.Token, Epoch: r.Epoch, IP: r.IP, Upstream: r.Upstream, Header: r.Header}
	m.Acked, _ = strconv.ParseUint(str(vals[0]), 10, 64)
	if st := str(vals[1]); st != "" {
		m.State = []byte(st)
	}
	return m, vals[2:], nil
}

// Meta reads session id's metadata (session.ErrUnknownSession when there
// is no such session).
func (s *Store) Meta(ctx context.Context, id string) (session.Meta, error) {
	keys, _ := s.keys(id)
	m, _, err := s.readMeta(ctx, id, keys)
	return m, err
}

func str(v any) string { s, _ := v.(string); return s }

// SetAcked records the highest command sequence applied to session id.
func (s *Store) SetAcked(ctx context.Context, id string, acked uint64) error {
	keys, _ := s.keys(id)
	if err := s.rdb.HSet(ctx, keys[0], "cs", acked).Err(); err != nil {
		return fmt.Errorf("redisstore: %w", err)
	}
	return nil
}

// SetState replaces session id's State.
func (s *Store) SetState(ctx context.Context, id string, state []byte) error {
	keys, _ := s.keys(id)
	if err := s.rdb.HSet(ctx, keys[0], "st", state).Err(); err != nil {
		return fmt.Errorf("redisstore: %w", err)
	}
	return nil
}

func (s *Store) handle(id string) *Frames {
	keys, ch := s.keys(id)
	return &Frames{st: s, id: id, keys: keys, ch: ch, lastSeen: time.Now()}
}

// register subscribes to h's events and lists it for the sweep. A second
// handle on the same session in one process replaces the first's events.
func (s *Store) register(ctx context.Context, h *Frames) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("redisstore: closed")
	}
	s.handles[h.ch] = h
	s.mu.Unlock()
	if err := s.subscribe(ctx, h.ch); err != nil {
		h.Close()
		return err
	}
	return nil
}

// sweep runs every third of the lease: it renews the leases this process
// holds, takes over those of sessions it serves whose owner died, records
// client activity seen here and refreshes every handle's cached figures,
// all in one pipeline.
func (s *Store) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.sweepOnce()
		}
	}
}

// acquireAt tries to take h's lease again once the one another process
// holds expires in d, when that comes before the next sweep: a dead
// owner's session is taken over as soon as its lease allows, not up to a
// sweep later.
func (s *Store) acquireAt(h *Frames, d time.Duration) {
	if d >= s.cfg.lease/3 {
		return // the next sweep comes first
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retry != nil || h.closed {
		return
	}
	h.retry = time.AfterFunc(d+2*time.Millisecond, func() {
		h.mu.Lock()
		h.retry = nil
		h.mu.Unlock()
		if s.ctx.Err() != nil || h.owned.Load() || !h.wantsLease(time.Now(), s.cfg.lease) {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.lease/3)
		defer cancel()
		got, err := acquireScript.Run(ctx, s.rdb, h.keys, s.cfg.node, s.cfg.lease.Milliseconds()).Int()
		if err != nil {
			s.stats.errors.Add(1)
			return
		}
		if got == 1 && !h.owned.Load() {
			s.stats.acquired.Add(1)
			h.setOwned(true)
		}
	})
}

func (s *Store) sweepOnce() {
	s.mu.Lock()
	handles := make([]*Frames, 0, len(s.handles))
	for _, h := range s.handles {
		handles = append(handles, h)
	}
	s.mu.Unlock()
	if len(handles) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.lease/3)
	defer cancel()
	now := time.Now()
	lease := s.cfg.lease.Milliseconds()
	type pending struct {
		h      *Frames
		owned  bool
		lease  *redis.Cmd
		figure *redis.SliceCmd
	}
	ps := make([]pending, len(handles))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range handles {
			ps[i].h = h
			ps[i].owned = h.owned.Load()
			switch {
			case ps[i].owned:
				// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT.
				ps[i].lease = renewScript.Eval(ctx, p, h.keys, s.cfg.node, lease)
			case h.wantsLease(now, s.cfg.lease):
				ps[i].lease = acquireScript.Eval(ctx, p, h.keys, s.cfg.node, lease)
			}
			if h.active(now, s.cfg.lease) {
				p.HSet(ctx, h.keys[0], "seen", now.UnixMilli())
				p.PExpire(ctx, h.keys[0], s.cfg.ttl)
				p.PExpire(ctx, h.keys[1], s.cfg.ttl)
				p.PExpire(ctx, h.keys[3], s.cfg.ttl)
			}
			ps[i].figure = p.HMGet(ctx, h.keys[0], "n", "f", "dl", "ak", "b", "tr", "dr", "e", "seen")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		s.stats.errors.Add(1)
		s.cfg.logger.Warn("redisstore: sweep", "err", err)
		if ctx.Err() != nil {
			return
		}
	}
	for _, p := range ps {
		if p.lease != nil {
			if got, err := p.lease.Int(); err == nil {
				switch {
				case p.owned && got == 0:
					s.stats.lost.Add(1)
					p.h.setOwned(false)
				case !p.owned && got == 1:
					s.stats.acquired.Add(1)
					p.h.setOwned(true)
				case !p.owned && got < 0:
					s.acquireAt(p.h, time.Duration(-1-got)*time.Millisecond)
				}
			}
		}
		if vals, err := p.figure.Result(); err == nil {
			p.h.cacheFigures(vals)
		}
	}
}
