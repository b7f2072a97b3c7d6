package bridge

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
	"github.com/cableway/cableway/server/compat"
	core "github.com/cableway/cableway/server/session"
)

// Bridge is the http.Handler serving ActionCable sessions. Create it with
// New and stop it with Close. It is safe for concurrent use.
type Bridge struct {
	upstream string
	cfg      config
	mux      *http.ServeMux
	compat   *compat.Handler // nil when the compat prefix is off

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // janitor and session watchers

	upLog   *slog.Logger // the upstream consumers' logger (see demoteInfo)
	upTrans transport.Transport
	budget  *core.Budget // every session's frames together (with the default store)
	store   core.Store
	buffers sync.Pool // *[]byte: write buffers of downstreams, borrowed per batch
	cluster *cluster  // nil unless WithSharedStore

	mu       sync.Mutex
	sessions map[string]*session
	perIP    map[string]int
	pending  int // sessions reserved but still dialling
	closed   bool

	stats counters
}

type counters struct {
	sessionsCreated, framesIn, framesOut, trimmed, commands atomic.Uint64
	refused                                                 sync.Map // reason → *atomic.Uint64
}

// Stats are the bridge's counters, for metrics.
type Stats struct {
	Sessions           int               // open now
	SessionsCreated    uint64            // since start
	FramesIn           uint64            // sequenced frames from upstream
	FramesOut          uint64            // frames written to clients (pings included)
	Evicted            uint64            // frames sent but trimmed from resume windows before acknowledgement (sessions gone)
	BufferedBytes      int64             // frames held by all sessions now (the memory budget's use)
	Commands           uint64            // client commands relayed upstream
	UpstreamReconnects uint64            // upstream sockets redialled after a loss (compat sessions; a bridge session ends with its socket)
	Refused            map[string]uint64 // refused requests by reason

	// With a shared store (WithSharedStore): sessions this process serves
	// but another owns, requests it forwarded to owners, sessions it took
	// over from a dead owner, leases it lost.
	RemoteSessions                   int
	Forwarded, Takeovers, LeasesLost uint64
}

// New returns a Bridge relaying to the ActionCable endpoint upstream
// (ws:// or wss://). It starts a janitor goroutine that expires idle
// sessions; Close stops it.
func New(upstream string, opts ...Option) *Bridge {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	b := &Bridge{upstream: upstream, cfg: cfg, sessions: map[string]*session{}, perIP: map[string]int{}}
	b.upLog = slog.New(demoteInfo{cfg.logger.Handler()})
	// One upstream transport for every session (it holds no connection).
	b.upTrans = cfg.upstream
	if b.upTrans == nil {
		b.upTrans = websocket.New(websocket.WithReadLimit(cfg.maxFrameBytes))
	}
	b.budget = core.NewBudget(cfg.memoryBudget)
	b.store = cfg.store
	if b.store == nil {
		b.store = core.NewMemoryStore(
			core.WithPendingLimit(cfg.queueFrames, cfg.queueBytes),
			core.WithWindowLimit(cfg.windowBytes),
			core.WithBudget(b.budget),
		)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.cluster = newCluster(b)
	b.routes()
	b.wg.Add(1)
	go b.janitor()
	return b
}

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	b.mu.Lock()
	n := len(b.sessions)
	trimmed := b.stats.trimmed.Load()
	for _, s := range b.sessions {
		trimmed += s.log.Stats().Trimmed
	}
	b.mu.Unlock()
	s := Stats{
		Sessions:        n,
		SessionsCreated: b.stats.sessionsCreated.Load(),
		FramesIn:        b.stats.framesIn.Load(),
		FramesOut:       b.stats.framesOut.Load(),
		Evicted:         trimmed,
		BufferedBytes:   b.budget.Used(),
		Commands:        b.stats.commands.Load(),
		Refused:         map[string]uint64{},
	}
	b.stats.refused.Range(func(k, v any) bool {
		s.Refused[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	if b.cluster != nil {
		b.cluster.stats(&s)
	}
	if b.compat != nil { // the compat API's sessions are the bridge's too
		cs := b.compat.Stats()
		s.Sessions += cs.Sessions
		s.SessionsCreated += cs.SessionsCreated
		s.FramesOut += cs.EventsOut
		s.Commands += cs.Commands
		s.UpstreamReconnects += cs.UpstreamReconnects
		s.Takeovers += cs.Takeovers
		s.Forwarded += cs.Forwarded
		for k, v := range cs.Refused {
			s.Refused[k] += v
		}
	}
	return s
}

func (b *Bridge) countRefusal(reason string) {
	v, _ := b.stats.refused.LoadOrStore(reason, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// Close stops the bridge: every session gets a server_restart disconnect
// frame, so its client reconnects over its own transport (to this bridge's
// successor), then sessions end and their upstream sockets close. Close
// waits for that until ctx is done. New requests get 503 from the start.
// With a shared store (WithSharedStore) sessions do not end: this process
// gives up their leases and upstreams, and the other processes take them
// over.
func (b *Bridge) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	sessions := make([]*session, 0, len(b.sessions))
	for _, s := range b.sessions {
		sessions = append(sessions, s)
	}
	b.mu.Unlock()
	if b.cluster != nil {
		sessions = b.cluster.handOver(sessions)
	}

	compatDone := make(chan error, 1)
	go func() {
		if b.compat == nil {
			compatDone <- nil
			return
		}
		compatDone <- b.compat.Close(ctx)
	}()
	defer func() { <-compatDone }()

	restart, _ := (protocol.JSONCodec{}).AppendMessage(nil, &protocol.Message{
		Type: protocol.TypeDisconnect, Reason: protocol.ReasonServerRestart, Reconnect: true, HasReconnect: true,
	})
	for _, s := range sessions {
		s.injectFinal(restart)
	}
	// Give clients the time ctx allows to fetch that frame.
	for _, s := range sessions {
		s.waitDrained(ctx)
	}
	b.cancel()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() { // each upstream close may wait for Rails' answer
			defer wg.Done()
			b.removeSession(s)
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// draining reports whether Close has begun.
func (b *Bridge) draining() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func (b *Bridge) janitor() {
	defer b.wg.Done()
	// Every second: an ended session goes about a second after its last
	// frame was fetched.
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			b.mu.Lock()
			var expired []*session
			for _, s := range b.sessions {
				if s.expired(now) {
					expired = append(expired, s)
				}
			}
			b.mu.Unlock()
			for _, s := range expired {
				b.cfg.logger.Info("bridge: session expired", "session", s.id)
				b.removeSession(s)
			}
		}
	}
}

// errLimit is returned by addSession with the refusal's status and reason.
type errLimit struct {
	status int
	reason string
}

func (e *errLimit) Error() string { return e.reason }

// reserve counts a session against the limits before its upstream is
// dialled, so a flood of creations cannot exceed them.
func (b *Bridge) reserve(ip string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return &errLimit{http.StatusServiceUnavailable, "shutting_down"}
	case len(b.sessions)+b.pendingLocked() >= b.cfg.maxSessions:
		return &errLimit{http.StatusServiceUnavailable, "too_many_sessions"}
	case b.perIP[ip] >= b.cfg.maxSessionsPerIP:
		return &errLimit{http.StatusTooManyRequests, "too_many_sessions_for_ip"}
	}
	b.perIP[ip]++
	b.pending++
	return nil
}

func (b *Bridge) pendingLocked() int { return b.pending }

// unreserve undoes reserve for a creation that failed.
func (b *Bridge) unreserve(ip string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending--
	b.releaseIPLocked(ip)
}

func (b *Bridge) releaseIPLocked(ip string) {
	if b.perIP[ip]--; b.perIP[ip] <= 0 {
		delete(b.perIP, ip)
	}
}

// addSession turns a reservation into a registered session.
func (b *Bridge) addSession(s *session) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending--
	if b.closed {
		b.releaseIPLocked(s.ip)
		return false
	}
	b.sessions[s.id] = s
	b.stats.sessionsCreated.Add(1)
	return true
}

func (b *Bridge) session(id string) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[id]
}

// removeSession unregisters s and closes its upstream.
func (b *Bridge) removeSession(s *session) {
	b.mu.Lock()
	_, ok := b.sessions[s.id]
	if ok {
		delete(b.sessions, s.id)
		b.releaseIPLocked(s.ip)
		b.stats.trimmed.Add(s.log.Stats().Trimmed)
	}
	b.mu.Unlock()
	s.end(errSessionEnded)
	if up := s.upstream(); up != nil {
		up.Close()
	}
	s.log.Release()
}

// demoteInfo logs a session's upstream consumer: its info records (one
// connection's connected and disconnected, which are a session's opening
// and end) at debug level, for the bridge logs those itself; warnings and
// errors pass unchanged.
type demoteInfo struct{ h slog.Handler }

func (d demoteInfo) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return d.h.Enabled(ctx, l)
}

func (d demoteInfo) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		r.Level = slog.LevelDebug
	}
	return d.h.Handle(ctx, r)
}

func (d demoteInfo) WithAttrs(as []slog.Attr) slog.Handler { return demoteInfo{d.h.WithAttrs(as)} }

func (d demoteInfo) WithGroup(name string) slog.Handler { return demoteInfo{d.h.WithGroup(name)} }

// remoteIP is the default client IP: the connection's remote address.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
