package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/compat"
	core "github.com/cableway/cableway/server/session"
)

// WithSharedStore makes the bridge one of several processes sharing st
// (server/session/redisstore), behind a load balancer with no sticky
// sessions: any of them serves any session's SSE, long-poll and WebSocket
// re-attach from the store at the client's cursor; commands POSTed to any
// of them reach the process holding the session's upstream connection
// (its owner) and keep their cseq idempotence; when an owner dies, a
// process serving one of its sessions takes the session over: it redials
// Rails with the session's credentials, and the new welcome passes through
// so that the client resubscribes. The per-session limits of WithQueue and
// WithResumeWindow are the store's own (redisstore.WithLimits);
// WithMemoryBudget does not apply. The compat API (WithCompatPrefix) keeps
// its sessions in st too (see compat.WithSharedStore): its POSTs reach the
// owner through the same forwarding. The caller closes st after Close.
func WithSharedStore(st core.Shared) Option { return func(c *config) { c.shared = st } }

// cluster is a bridge's part in a shared store: the sessions this process
// serves without owning them, and the forwarding of commands.
type cluster struct {
	b  *Bridge
	st core.Shared

	mu     sync.Mutex
	remote map[string]*session // open here, owned elsewhere
	openMu sync.Mutex          // serialises opens from the store

	forwarded, takeovers, leasesLost atomic.Uint64

	compat atomic.Pointer[compat.Handler] // set once the routes are made
}

// newCluster returns nil without a shared store: the in-memory bridge has
// no cluster code on its paths.
func newCluster(b *Bridge) *cluster {
	if b.cfg.shared == nil {
		return nil
	}
	cl := &cluster{b: b, st: b.cfg.shared, remote: map[string]*session{}}
	cl.st.Serve(cl.serve)
	b.store = cl.st
	b.wg.Add(1)
	go cl.janitor()
	return cl
}

// create records a new session in the store, owned here, before its
// upstream is dialled (the welcome is its first frame).
func (cl *cluster) create(ctx context.Context, s *session, upstreamURL string, header map[string][]string) error {
	h, err := cl.st.Create(ctx, s.id, core.Meta{
		Token: s.token, Epoch: s.epoch, IP: s.ip, Upstream: upstreamURL, Header: header,
	})
	if err != nil {
		return err
	}
	s.log = h
	h.OnOwnership(func(owned bool) { cl.ownership(s, owned) })
	return nil
}

// abandon deletes a session whose upstream could not be dialled.
func (cl *cluster) abandon(s *session) {
	if cl != nil && s.log != nil {
		s.log.Release()
	}
}

// open returns the session id for a request that landed on a process that
// does not own it: nil when the store has no such session.
func (cl *cluster) open(ctx context.Context, id string) (*session, error) {
	if strings.HasPrefix(id, compat.StoreIDPrefix) {
		return nil, nil // the compat API's, not a bridge session
	}
	cl.mu.Lock()
	s := cl.remote[id]
	cl.mu.Unlock()
	if s != nil {
		return s, nil
	}
	// One open at a time: the store keeps one handle per session and
	// process, and two concurrent opens of one session would make two.
	cl.openMu.Lock()
	defer cl.openMu.Unlock()
	cl.mu.Lock()
	s = cl.remote[id]
	cl.mu.Unlock()
	if s != nil {
		return s, nil
	}
	if s := cl.b.session(id); s != nil { // taken over meanwhile
		return s, nil
	}
	h, m, err := cl.st.Open(ctx, id)
	if errors.Is(err, core.ErrUnknownSession) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s = &session{b: cl.b, id: id, token: m.Token, epoch: m.Epoch, ip: m.IP, log: h, acked: m.Acked}
	cl.mu.Lock()
	cl.remote[id] = s
	cl.mu.Unlock()
	h.OnOwnership(func(owned bool) { cl.ownership(s, owned) })
	return s, nil
}

// ownership handles a change of the lease on s: gained, this process
// takes the session over; lost, it lets its upstream go (the new owner
// has its own) without ending the session.
func (cl *cluster) ownership(s *session, owned bool) {
	b := cl.b
	if !owned {
		cl.leasesLost.Add(1)
		b.cfg.logger.Warn("bridge: session lease lost; another process owns it now", "session", s.id)
		up := s.upstream()
		s.setUpstream(nil)
		b.mu.Lock()
		if b.sessions[s.id] == s {
			delete(b.sessions, s.id)
			b.releaseIPLocked(s.ip)
		}
		b.mu.Unlock()
		cl.mu.Lock()
		cl.remote[s.id] = s
		cl.mu.Unlock()
		if up != nil {
			up.Close() // cable.ErrClosed: upstreamGone leaves the session alone
		}
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.createTimeout)
	defer cancel()
	m, err := cl.st.Meta(ctx, s.id)
	if err != nil {
		b.cfg.logger.Warn("bridge: takeover: session metadata unreadable", "session", s.id, "err", err)
		return // the lease lapses and another try follows
	}
	header := m.Header
	c, err := cable.Dial(ctx, m.Upstream,
		cable.WithTransport(b.upTrans),
		cable.WithHeaderFunc(func(context.Context) (map[string][]string, error) { return header, nil }),
		cable.WithFrameHook(s.onFrame),
		cable.WithFrameLimit(int(b.cfg.maxFrameBytes)),
		cable.WithStaleTimeout(b.cfg.upstreamStale),
		cable.WithBackoff(b.cfg.backoff),
		cable.WithLogger(b.upLog),
		cable.WithDialRetry(false),
		cable.WithReconnect(false),
	)
	if err != nil {
		b.cfg.logger.Warn("bridge: takeover: upstream redial failed; the session ends", "session", s.id, "err", err)
		s.injectFinal(upstreamLost)
		return
	}
	s.sendMu.Lock()
	s.mu.Lock()
	s.up = c
	s.mu.Unlock()
	s.acked = max(s.acked, m.Acked)
	s.sendMu.Unlock()
	context.AfterFunc(c.Context(), func() { s.upstreamGone(context.Cause(c.Context())) })
	cl.mu.Lock()
	delete(cl.remote, s.id)
	cl.mu.Unlock()
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.sessions[s.id] = s
		b.perIP[s.ip]++
	}
	b.mu.Unlock()
	if closed {
		c.Close()
		return
	}
	cl.takeovers.Add(1)
	b.cfg.logger.Info("bridge: session taken over from a dead owner", "session", s.id)
}

// appendFailed handles a frame the store refused. Once the lease is gone
// the ownership change handles it; when the store fails, this process
// lets go of the session (its upstream closes) rather than drop frames in
// silence: its lease lapses, and once the store is back a process serving
// the session takes it over.
func (cl *cluster) appendFailed(s *session, err error) {
	if errors.Is(err, core.ErrEnded) || errors.Is(err, core.ErrNotOwner) {
		return
	}
	cl.b.cfg.logger.Warn("bridge: frame not stored; this process lets the session go", "session", s.id, "err", err)
	go cl.letGo(s)
}

// janitor drops the handles of sessions owned elsewhere that no client
// used here for the session TTL, or that ended.
func (cl *cluster) janitor() {
	b := cl.b
	defer b.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			cl.mu.Lock()
			for id, s := range cl.remote {
				if h, ok := s.log.(core.SharedFrames); ok {
					h.Close()
				}
				delete(cl.remote, id)
			}
			cl.mu.Unlock()
			return
		case now := <-t.C:
			cl.mu.Lock()
			for id, s := range cl.remote {
				if s.expired(now) {
					delete(cl.remote, id)
					if h, ok := s.log.(core.SharedFrames); ok {
						go h.Close()
					}
				}
			}
			cl.mu.Unlock()
		}
	}
}

// forwarded is a request from a process that does not own a session to
// its owner: a /send body, one WebSocket command, or a compat API request
// (handed to the compat Handler's ServeForwarded as is).
type forwarded struct {
	SID     string          `json:"sid"`
	Send    []byte          `json:"send,omitempty"`
	Command json.RawMessage `json:"cmd,omitempty"`
	Compat  json.RawMessage `json:"compat,omitempty"`
}

// forwardAnswer is the owner's answer. Status notOwner: ask again (the
// session moved).
type forwardAnswer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body,omitempty"`
}

const notOwner = 0

// serve answers a request forwarded by another process.
func (cl *cluster) serve(ctx context.Context, req []byte) []byte {
	var f forwarded
	if err := json.Unmarshal(req, &f); err != nil {
		return mustJSON(forwardAnswer{Status: http.StatusBadRequest, Body: mustJSON(bridgewire.Error{Error: "bad_forward"})})
	}
	if f.Compat != nil {
		if h := cl.compat.Load(); h != nil {
			return h.ServeForwarded(ctx, f.Compat)
		}
		return mustJSON(forwardAnswer{Status: notOwner})
	}
	s := cl.b.session(f.SID)
	if s == nil {
		return mustJSON(forwardAnswer{Status: notOwner})
	}
	if f.Command != nil {
		var cmd protocol.Command
		if err := (protocol.JSONCodec{}).DecodeCommand(f.Command, &cmd); err != nil {
			return mustJSON(forwardAnswer{Status: http.StatusBadRequest})
		}
		up := s.upstream()
		if up == nil {
			return mustJSON(forwardAnswer{Status: notOwner})
		}
		if err := up.SendCommand(ctx, &cmd); err != nil {
			return mustJSON(forwardAnswer{Status: http.StatusServiceUnavailable})
		}
		cl.b.stats.commands.Add(1)
		return mustJSON(forwardAnswer{Status: http.StatusOK})
	}
	batch, cmds, err := bridgewire.ParseSend(f.Send)
	if err != nil {
		return mustJSON(forwardAnswer{Status: http.StatusBadRequest, Body: mustJSON(bridgewire.Error{Error: "bad_body"})})
	}
	status, body, moved := cl.b.applySend(ctx, s, batch, cmds, nil)
	if moved {
		return mustJSON(forwardAnswer{Status: notOwner})
	}
	return mustJSON(forwardAnswer{Status: status, Body: mustJSON(body)})
}

func mustJSON(v any) []byte {
	if raw, ok := v.(json.RawMessage); ok {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the bridge's own types, which always encode
	}
	return b
}

// forward sends req for session s to its owner and returns the owner's
// answer. It retries while the session has no owner (a takeover is under
// way) or moved, until ctx is done. local is called instead when this
// process turns out to own the session, with its upstream up.
func (cl *cluster) forward(ctx context.Context, s *session, req forwarded, local func() (int, any, bool)) (int, any) {
	h, _ := s.log.(core.SharedFrames)
	raw := mustJSON(req)
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for {
		owner := ""
		var err error
		if h != nil {
			owner, err = h.Owner(ctx)
		}
		switch {
		case err != nil:
			if ctx.Err() == nil {
				return http.StatusServiceUnavailable, bridgewire.Error{Error: "store_unavailable", Detail: "the session store failed"}
			}
		case owner == cl.st.Node():
			if status, body, moved := local(); !moved {
				return status, body
			}
		case owner != "":
			ans, err := cl.st.Forward(ctx, owner, raw)
			if err == nil {
				var a forwardAnswer
				if json.Unmarshal(ans, &a) != nil {
					return http.StatusBadGateway, bridgewire.Error{Error: "bad_forward_answer"}
				}
				if a.Status != notOwner {
					cl.forwarded.Add(1)
					return a.Status, a.Body
				}
			}
		}
		select {
		case <-retry.C:
		case <-ctx.Done():
			return http.StatusServiceUnavailable, bridgewire.Error{Error: "owner_unavailable", Detail: "no process holds the session's upstream right now; retry"}
		}
	}
}

// sendCommand relays one WebSocket command: upstream when this process
// owns the session, else through its owner.
func (b *Bridge) sendCommand(ctx context.Context, s *session, cmd *protocol.Command) error {
	if b.cluster == nil {
		return s.up.SendCommand(ctx, cmd)
	}
	if up := s.upstream(); up != nil {
		return up.SendCommand(ctx, cmd)
	}
	raw, err := (protocol.JSONCodec{}).AppendCommand(nil, cmd)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, b.cfg.createTimeout)
	defer cancel()
	status, body := b.cluster.forward(fctx, s, forwarded{SID: s.id, Command: raw}, func() (int, any, bool) {
		up := s.upstream()
		if up == nil {
			return 0, nil, true
		}
		if err := up.SendCommand(ctx, cmd); err != nil {
			return http.StatusServiceUnavailable, nil, false
		}
		return http.StatusOK, nil, false
	})
	if status != http.StatusOK {
		return fmt.Errorf("bridge: command not relayed by the session's owner: HTTP %d %s", status, body)
	}
	return nil
}

// clusterStats adds the cluster's figures to s.
func (cl *cluster) stats(s *Stats) {
	cl.mu.Lock()
	s.RemoteSessions = len(cl.remote)
	cl.mu.Unlock()
	s.Forwarded = cl.forwarded.Load()
	s.Takeovers = cl.takeovers.Load()
	s.LeasesLost = cl.leasesLost.Load()
}

// recordAcked stores the session's command sequence, so that a process
// taking the session over keeps cseq idempotence. Called with sendMu held.
func (cl *cluster) recordAcked(s *session) {
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(cl.b.ctx, 5*time.Second)
	defer cancel()
	if err := cl.st.SetAcked(ctx, s.id, s.acked); err != nil {
		cl.b.cfg.logger.Warn("bridge: command sequence not stored", "session", s.id, "err", err)
	}
}

// upstream returns the session's upstream consumer (nil on a process
// that does not own it). Writers hold sendMu and mu.
func (s *session) upstream() *cable.Consumer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// setUpstream sets the session's upstream consumer.
func (s *session) setUpstream(c *cable.Consumer) {
	s.sendMu.Lock()
	s.mu.Lock()
	s.up = c
	s.mu.Unlock()
	s.sendMu.Unlock()
}

// handOver gives up the sessions this process owns, at Close: each one's
// lease goes (another process serving it takes it over at once, or the
// next process a client's request lands on) and its upstream closes
// without a frame; the session goes on in the store. It returns the
// sessions it could not hand over (the store failed), which end as with
// the in-memory store.
func (cl *cluster) handOver(sessions []*session) []*session {
	var kept []*session
	for _, s := range sessions {
		h, ok := s.log.(core.SharedFrames)
		if !ok {
			kept = append(kept, s)
			continue
		}
		if err := h.Disown(); err != nil {
			cl.b.cfg.logger.Warn("bridge: session not handed over; it ends", "session", s.id, "err", err)
			kept = append(kept, s)
			continue
		}
		cl.letGo(s)
	}
	return kept
}

// letGo drops a session this process owned without ending it: its
// upstream closes without a frame, its handle closes, its lease (if still
// held) lapses.
func (cl *cluster) letGo(s *session) {
	if h, ok := s.log.(core.SharedFrames); ok {
		h.OnOwnership(nil)
		defer h.Close()
	}
	up := s.upstream()
	s.setUpstream(nil)
	cl.b.mu.Lock()
	if cl.b.sessions[s.id] == s {
		delete(cl.b.sessions, s.id)
		cl.b.releaseIPLocked(s.ip)
	}
	cl.b.mu.Unlock()
	if up != nil {
		up.Close() // cable.ErrClosed: no frame for the client
	}
}

// storeFailed reports a read that failed for the shared store's sake (not
// a reset, not the session's end): the client is told to come back at
// its cursor, not that its session ended. The in-memory log never fails
// so.
func storeFailed(err error) bool {
	return err != nil && !errors.Is(err, core.ErrEnded) && !errors.Is(err, core.ErrReset)
}
