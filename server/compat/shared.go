package compat

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/transport/websocket"
	core "github.com/cableway/cableway/server/session"
)

// On a shared store (WithSharedStore) an events id's session lives in the
// store, as the bridge's own sessions do: its events are the frames of a
// store log, readable by a listener on any process at its msg_id cursor;
// its binding, session_id, msg_id base, poll-queue bound and channels are
// its State, so any process checks a request against it and any process
// can take it over. One process owns it (holds the lease and the upstream
// cable.Consumer): it appends the events. A POST landing elsewhere is
// forwarded to the owner. When the owner dies its lease expires and a
// process serving the session takes it over: it redials Rails with the
// stored credentials, tells the client of the lost connection as a single
// process does (disconnected, reason connection_lost, reconnect true),
// subscribes the stored channels again, and the events go on in the same
// log.

// Forwarder sends req to the process node sharing the store and returns
// its answer: the bridge wraps it into its own forwarded requests (the
// store has one Serve function per process) and hands it to the node's
// Handler.ServeForwarded.
type Forwarder func(ctx context.Context, node string, req []byte) ([]byte, error)

// WithSharedStore keeps the handler's sessions in st, shared with other
// processes running a Handler on the same upstream, behind a load
// balancer without stickiness; forward reaches the other processes'
// ServeForwarded (nil: st.Forward, for a process whose store Serve
// function is the Handler's ServeForwarded). The caller closes st after
// Close. Limits (WithSessionLimits, WithLimiter) count the sessions this
// process owns.
func WithSharedStore(st core.Shared, forward Forwarder) Option {
	return func(c *config) {
		if forward == nil && st != nil {
			forward = st.Forward
		}
		c.shared, c.forward = st, forward
	}
}

// StoreIDPrefix begins the shared store's name of every compat session
// (the events id follows): apart from the bridge's session ids, which
// never hold a ':'. The bridge refuses such ids on its own routes.
const StoreIDPrefix = "compat:"

// storeID is the store's name of an events id's session.
func storeID(id string) string { return StoreIDPrefix + id }

// sharedState is a session's State in the store.
type sharedState struct {
	SID   string        `json:"sid"`            // the seed's session_id
	Bind  string        `json:"bind"`           // hex digest of the credential headers
	Base  uint64        `json:"base"`           // msg_id of seq 0
	Last  uint64        `json:"last,omitempty"` // the last msg_id, once ended
	Limit int           `json:"limit"`          // poll-queue
	Ended bool          `json:"ended,omitempty"`
	Chans []sharedChann `json:"chans"` // in subscription order
}

type sharedChann struct {
	Identifier string `json:"i"`
	Confirmed  bool   `json:"c,omitempty"`
}

// shared is a session's part in the store.
type shared struct {
	h       core.SharedFrames
	storeID string
	bind    string
	base    uint64

	mu      sync.Mutex // serialises state writes
	written uint64     // the last version written
	ver     uint64     // the last version made (under session.mu)
}

// saveStateLocked writes the session's State to the store, on a goroutine
// of its own (it is called on the upstream reader), newest version last.
// Call with mu held. In memory it does nothing.
func (s *session) saveStateLocked() {
	sh := s.shared
	if sh == nil || s.c == nil && !s.ended {
		return // not the owner: the owner writes
	}
	st := sharedState{SID: s.id, Bind: sh.bind, Base: sh.base, Limit: s.q.limitNow(), Ended: s.ended}
	if s.ended {
		st.Last = s.e.seq.Load()
	}
	for _, ch := range s.orderedLocked() {
		st.Chans = append(st.Chans, sharedChann{Identifier: string(ch.identifier), Confirmed: ch.confirmed})
	}
	raw, _ := json.Marshal(st)
	sh.ver++
	ver := sh.ver
	s.h.background(func() {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if ver <= sh.written {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.h.cfg.shared.SetState(ctx, sh.storeID, raw); err != nil {
			s.h.cfg.logger.Warn("compat: session state not stored", "session", s.id, "err", err)
			return
		}
		sh.written = ver
	})
}

// background runs f on a goroutine of its own that Close waits for;
// after Close it does not run f.
func (h *Handler) background(f func()) {
	h.bgMu.Lock()
	defer h.bgMu.Unlock()
	if h.bgClosed {
		return
	}
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		f()
	}()
}

// stopBackground waits for the goroutines of background; later ones do
// not start.
func (h *Handler) stopBackground() {
	h.bgMu.Lock()
	h.bgClosed = true
	h.bgMu.Unlock()
	h.bg.Wait()
}

// remote reports whether the session is shared and owned by another
// process (or by none right now).
func (s *session) remote() bool {
	return s.shared != nil && s.consumer() == nil
}

// openShared returns the entry of an events id the store knows, with a
// handle on its session (nil when the store has none). Call with
// h.openMu held.
func (h *Handler) openShared(ctx context.Context, id string) (*entry, error) {
	fh, m, err := h.cfg.shared.Open(ctx, storeID(id))
	if errors.Is(err, core.ErrUnknownSession) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st sharedState
	if err := json.Unmarshal(m.State, &st); err != nil || st.SID == "" {
		fh.Close()
		return nil, fmt.Errorf("compat: events id %s…: bad state record in the store: %v", id[:6], err)
	}
	e := &entry{id: id, ip: m.IP}
	if b, err := hex.DecodeString(st.Bind); err == nil && len(b) == len(e.secrets) {
		copy(e.secrets[:], b)
	} else {
		fh.Close()
		return nil, fmt.Errorf("compat: events id %s…: bad binding record in the store", id[:6])
	}
	e.seq.Store(max(st.Base, st.Last))
	s := &session{
		h: h, e: e, id: st.SID, unreserve: func() {},
		chans:    map[string]*channel{},
		commands: newBucket(h),
		shared:   &shared{h: fh, storeID: storeID(id), bind: st.Bind, base: st.Base},
		ended:    st.Ended,
	}
	s.q = newSharedQueue(fh, st.Base, st.Limit, s.setLast, h.cfg.logger.Warn)
	s.q.failed = s.storeFailed
	e.s = s
	fh.OnOwnership(s.ownership)
	return e, nil
}

// loadShared returns the entry of an events id from the shared store
// (nil when the store has none), listed in the handler's entries.
func (h *Handler) loadShared(ctx context.Context, id string) (*entry, error) {
	h.openMu.Lock()
	defer h.openMu.Unlock()
	h.mu.Lock()
	e := h.entries[id]
	h.mu.Unlock()
	if e != nil {
		return e, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.createTimeout)
	defer cancel()
	e, err := h.openShared(ctx, id)
	if e == nil || err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		e.s.shared.h.Close()
		return nil, nil
	}
	h.entries[id] = e
	return e, nil
}

// handOver gives a session this process owns up at Close: its lease
// goes, so that a process serving it takes it over at once, and its
// upstream closes without a word to its client. A session owned
// elsewhere only loses this process's handle.
func (s *session) handOver() {
	fh := s.shared.h
	fh.OnOwnership(nil)
	if !s.remote() {
		if err := fh.Disown(); err != nil {
			s.h.cfg.logger.Warn("compat: session not handed over; its lease lapses", "session", s.id, "err", err)
		}
		s.letGo()
	}
	fh.Close()
}

// releaseShared deletes the store's record of a session this process
// owned, unless another process began a new session of the events id
// meanwhile (then it only drops its handle).
func (s *session) releaseShared() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.shared.h.OnOwnership(nil)
	m, err := s.h.cfg.shared.Meta(ctx, s.shared.storeID)
	var st sharedState
	if err == nil && json.Unmarshal(m.State, &st) == nil && st.SID == s.id {
		s.q.release()
		return
	}
	s.shared.h.Close()
}

// setLast records msg_id n as the events id's last.
func (s *session) setLast(n uint64) {
	if n > s.e.seq.Load() {
		s.e.seq.Store(n)
	}
}

// createShared makes the store's record of a new session s of e, owned
// here, before Rails is dialled. On failure it has answered the request.
func (h *Handler) createShared(ctx context.Context, w http.ResponseWriter, r *http.Request, s *session, ip string) bool {
	bind := hex.EncodeToString(s.e.secrets[:])
	base := s.e.seq.Load()
	st, _ := json.Marshal(sharedState{SID: s.id, Bind: bind, Base: base, Limit: DefaultPollQueue})
	fh, err := h.cfg.shared.Create(ctx, storeID(s.e.id), core.Meta{
		Token: newID(), IP: ip, Upstream: h.upstream, Header: h.upstreamHeader(r), State: st,
	})
	if err != nil {
		h.cfg.logger.Warn("compat: session not stored", "err", err)
		h.writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the session store failed")
		return false
	}
	s.shared = &shared{h: fh, storeID: storeID(s.e.id), bind: bind, base: base}
	s.q = newSharedQueue(fh, base, DefaultPollQueue, s.setLast, h.cfg.logger.Warn)
	s.q.failed = s.storeFailed
	fh.OnOwnership(s.ownership)
	return true
}

// storeFailed lets the session go once the store refused an event. Called
// with mu held.
func (s *session) storeFailed(error) {
	if s.c == nil {
		return
	}
	s.h.background(s.letGo)
}

// ownership handles a change of the lease on a shared session: gained,
// this process takes it over; lost, it lets its upstream go without
// ending the session (the new owner has its own).
func (s *session) ownership(owned bool) {
	if !owned {
		s.h.cfg.logger.Warn("compat: session lease lost; another process owns it now", "session", s.id)
		s.letGo()
		return
	}
	s.takeover()
}

// letGo drops the upstream of a session this process owned, without a
// word to its client: the session goes on in the store.
func (s *session) letGo() {
	s.mu.Lock()
	c := s.c
	s.c = nil
	s.upGen++ // the consumer's last events are not the session's
	for _, ch := range s.chans {
		if ch.withdraw != nil {
			ch.withdraw()
		}
	}
	unreserve := s.unreserve
	s.unreserve = func() {}
	s.mu.Unlock()
	unreserve()
	if c != nil {
		c.Close()
	}
}

// takeover makes this process the owner of a shared session whose owner
// is gone: it redials Rails with the stored credentials, tells the client
// of the lost connection, and subscribes the stored channels again.
func (s *session) takeover() {
	h := s.h
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.createTimeout)
	defer cancel()
	m, err := h.cfg.shared.Meta(ctx, s.shared.storeID)
	var st sharedState
	if err == nil {
		err = json.Unmarshal(m.State, &st)
	}
	if err != nil {
		h.cfg.logger.Warn("compat: takeover: session record unreadable", "session", s.id, "err", err)
		return // the lease lapses and another try follows
	}
	if st.Ended {
		return
	}
	unreserve, err := h.reserve(m.IP)
	if err != nil {
		unreserve = func() {} // taken over all the same: its client is here
	}
	now := time.Now()
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		unreserve()
		return
	}
	s.unreserve = unreserve
	s.gen, s.evGen, s.lostGen, s.frameWhy = 0, 0, 0, nil
	s.chans = map[string]*channel{}
	for _, c := range st.Chans {
		s.chanSeq++
		ch := &channel{identifier: []byte(c.Identifier), chanID: chanIDOf(c.Identifier), order: s.chanSeq,
			ready: make(chan struct{}), withdraw: func() {}}
		s.chans[c.Identifier] = ch
		if c.Confirmed {
			// As a single process tells of a lost upstream connection.
			s.q.push(event{typ: "disconnected", chanID: ch.chanID, at: now, identifier: ch.identifier,
				message: reasonConnectionLost.message()})
		}
	}
	s.mu.Unlock()
	if st.Limit > 0 {
		s.q.setLimit(st.Limit)
	}
	frame, event := s.hooks()
	up := h.cfg.upstream
	if up == nil {
		up = websocket.New(websocket.WithReadLimit(h.cfg.maxFrameBytes))
	}
	header := m.Header
	c, err := cable.Dial(ctx, m.Upstream,
		cable.WithTransport(up),
		cable.WithHeaderFunc(func(context.Context) (map[string][]string, error) { return header, nil }),
		cable.WithFrameHook(frame),
		cable.WithEventHandler(event),
		cable.WithFrameLimit(int(h.cfg.maxFrameBytes)),
		cable.WithStaleTimeout(h.cfg.upstreamStale),
		cable.WithBackoff(h.cfg.backoff),
		cable.WithLogger(h.cfg.logger),
		cable.WithDialRetry(false),
		cable.WithReconnect(true),
	)
	if err != nil && h.ctx.Err() != nil {
		s.letGo() // this process is closing: another takes the session over
		return
	}
	if err != nil {
		h.cfg.logger.Warn("compat: takeover: Rails redial failed; the session ends", "session", s.id, "err", err)
		s.mu.Lock()
		s.c = nil
		s.mu.Unlock()
		s.finish(reason{"upstream_unavailable", false})
		return
	}
	s.mu.Lock()
	if s.ended || !s.shared.h.Owned() {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.c = c
	for _, ch := range s.orderedLocked() {
		s.startLocked(ch)
	}
	s.mu.Unlock()
	h.stats.takeovers.Add(1)
	h.stats.upstreamReconnects.Add(1)
	h.cfg.logger.Info("compat: session taken over from a dead owner", "session", s.id)
}

// forwardedPost is a POST forwarded to the owner of a shared session.
type forwardedPost struct {
	ID    string          `json:"id"`
	Limit int             `json:"limit,omitempty"`
	Body  json.RawMessage `json:"body"`
}

// forwardAnswer is the owner's answer; Status 0: not the owner (ask
// again).
type forwardAnswer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// ServeForwarded answers a request another process forwarded to this one
// (see WithSharedStore): a POST for a session this process owns.
func (h *Handler) ServeForwarded(ctx context.Context, req []byte) []byte {
	var f forwardedPost
	if err := json.Unmarshal(req, &f); err != nil || checkEventsID(f.ID) != nil {
		return mustJSON(forwardAnswer{Status: http.StatusBadRequest, Body: mustJSON(apiError{Error: "bad_forward"})})
	}
	var reqs []request
	if err := json.Unmarshal(f.Body, &reqs); err != nil {
		return mustJSON(forwardAnswer{Status: http.StatusBadRequest, Body: mustJSON(apiError{Error: "bad_body"})})
	}
	h.mu.Lock()
	e := h.entries[f.ID]
	h.mu.Unlock()
	var s *session
	if e != nil {
		s = e.current()
	}
	if s == nil || s.remote() {
		return mustJSON(forwardAnswer{Status: 0})
	}
	s.touch()
	status, body := s.post(ctx, reqs, f.Limit)
	return mustJSON(forwardAnswer{Status: status, Body: mustJSON(body)})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the package's own types, which always encode
	}
	return b
}

// forwardPost has the owner of shared session s perform a POST's
// requests, retrying while the session has no owner (a takeover is under
// way) or moved, until ctx is done; when this process turns out to own
// it, it performs them itself.
func (h *Handler) forwardPost(ctx context.Context, s *session, id string, reqs []request, body []byte, limit int) (int, any) {
	raw := mustJSON(forwardedPost{ID: id, Limit: limit, Body: body})
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for {
		owner, err := s.shared.h.Owner(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				return http.StatusServiceUnavailable, apiError{Error: "store_unavailable", Detail: "the session store failed"}
			}
		case owner == h.cfg.shared.Node():
			if !s.remote() {
				return s.post(ctx, reqs, limit)
			}
		case owner != "":
			if ans, err := h.cfg.forward(ctx, owner, raw); err == nil {
				var a forwardAnswer
				if json.Unmarshal(ans, &a) != nil {
					return http.StatusBadGateway, apiError{Error: "bad_forward_answer"}
				}
				if a.Status != 0 {
					h.stats.forwarded.Add(1)
					return a.Status, a.Body
				}
			}
		}
		select {
		case <-retry.C:
		case <-ctx.Done():
			return http.StatusServiceUnavailable, apiError{Error: "owner_unavailable",
				Detail: "no process holds the session's upstream right now; retry"}
		}
	}
}
