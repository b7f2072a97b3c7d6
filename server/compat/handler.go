package compat

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// Handler serves the seed API. Create it with New and stop it with Close.
// It is safe for concurrent use.
type Handler struct {
	upstream string
	cfg      config

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the janitor

	openMu sync.Mutex // one open from the shared store at a time

	bgMu     sync.Mutex     // guards bgClosed and bg.Add
	bg       sync.WaitGroup // goroutines of background (shared store)
	bgClosed bool

	mu       sync.Mutex
	entries  map[string]*entry
	perIP    map[string]int
	sessions int // live and dialling, for the limits
	closed   bool

	stats counters
}

type counters struct {
	sessionsCreated, eventsOut, commands, upstreamReconnects atomic.Uint64
	takeovers, forwarded                                     atomic.Uint64
	refused                                                  sync.Map // reason → *atomic.Uint64
}

// Stats are the handler's counters, for metrics.
type Stats struct {
	Sessions           int               // open now (dialling included)
	SessionsCreated    uint64            // since start
	EventsOut          uint64            // events handed to listeners
	Commands           uint64            // commands sent to Rails
	UpstreamReconnects uint64            // upstream sockets redialled after a loss (or taken over)
	Takeovers          uint64            // shared sessions taken over from a dead owner
	Forwarded          uint64            // POSTs performed by another process, the owner
	Refused            map[string]uint64 // refused requests by reason
}

// New returns a Handler whose sessions connect to the ActionCable endpoint
// upstream (ws:// or wss://). It starts a janitor goroutine that expires
// idle sessions; Close stops it.
func New(upstream string, opts ...Option) *Handler {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	h := &Handler{upstream: upstream, cfg: cfg, entries: map[string]*entry{}, perIP: map[string]int{}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.wg.Add(1)
	go h.janitor()
	return h
}

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	n := h.sessions
	h.mu.Unlock()
	s := Stats{
		Sessions:           n,
		SessionsCreated:    h.stats.sessionsCreated.Load(),
		EventsOut:          h.stats.eventsOut.Load(),
		Commands:           h.stats.commands.Load(),
		UpstreamReconnects: h.stats.upstreamReconnects.Load(),
		Takeovers:          h.stats.takeovers.Load(),
		Forwarded:          h.stats.forwarded.Load(),
		Refused:            map[string]uint64{},
	}
	h.stats.refused.Range(func(k, v any) bool {
		s.Refused[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return s
}

// Close stops the handler: every session's channels get a disconnected
// event with reason server_restart and reconnect true, and its listeners
// end once they were handed it; then the upstream sockets close. Close
// waits for that until ctx is done. New requests get 503 from the start.
func (h *Handler) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var sessions []*session
	for _, e := range h.entries {
		if s := e.current(); s != nil {
			sessions = append(sessions, s)
		}
	}
	h.mu.Unlock()

	if h.cfg.shared != nil {
		// The sessions go on in the store: their leases go, so that a
		// process serving them takes them over at once, and their
		// upstreams close without a word to their clients.
		for _, s := range sessions {
			s.handOver()
		}
		h.cancel()
		done := make(chan struct{})
		go func() { h.wg.Wait(); h.stopBackground(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, s := range sessions {
		s.stop(reasonServerRestart)
	}
	for _, s := range sessions {
		s.waitDrained(ctx)
	}
	h.cancel()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() { // each upstream close may wait for Rails' answer
			defer wg.Done()
			s.release()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// entry is one events id: the client it is bound to and its current
// session. It outlives sessions that end and are recreated for the same
// client; the janitor deletes it once its session is gone.
type entry struct {
	id      string
	ip      string   // binding: clientIP of the creating request
	secrets [32]byte // binding: digest of its credential headers

	seq atomic.Uint64 // msg_id of the last event, across this entry's sessions

	mu   sync.Mutex // held while a session is being created
	s    *session
	dead bool // deleted from Handler.entries; look the id up again
}

func (e *entry) current() *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.s
}

func (e *entry) boundTo(ip string, secrets [32]byte) bool {
	ipOK := subtle.ConstantTimeCompare([]byte(e.ip), []byte(ip)) == 1
	secretsOK := subtle.ConstantTimeCompare(e.secrets[:], secrets[:]) == 1
	return ipOK && secretsOK
}

// credentials digests the request's credential headers: Cookie,
// Authorization and the pass headers, the headers Rails may authenticate
// with. An events id is bound to them.
func (h *Handler) credentials(r *http.Request) [32]byte {
	d := sha256.New()
	for _, k := range h.credentialHeaders() {
		vs := r.Header.Values(k)
		fmt.Fprintf(d, "%s:%d\n", http.CanonicalHeaderKey(k), len(vs))
		for _, v := range vs {
			fmt.Fprintf(d, "%d:%s\n", len(v), v)
		}
	}
	var out [32]byte
	d.Sum(out[:0])
	return out
}

func (h *Handler) credentialHeaders() []string {
	return append([]string{"Cookie", "Authorization"}, h.cfg.passHeaders...)
}

// hasCredentials reports whether the request carries a header that Rails
// may take as a credential.
func (h *Handler) hasCredentials(r *http.Request) bool {
	for _, k := range h.credentialHeaders() {
		if len(r.Header.Values(k)) > 0 {
			return true
		}
	}
	return false
}

// Events id rule: see checkEventsID.
const (
	idMin  = 22
	idMax  = 128
	hexMin = 32
)

// checkEventsID enforces the events id rule: 22 to 128 characters from the
// URL-safe alphabet A–Z a–z 0–9 '-' '_', and, when every character is a
// hex digit or '-' (hex strings, UUIDs), at least 32 hex digits. Either
// way the id has room for 128 bits; the client must fill it at random.
func checkEventsID(id string) error {
	if len(id) < idMin || len(id) > idMax {
		return fmt.Errorf("the events id must be %d to %d characters long (got %d)", idMin, idMax, len(id))
	}
	hexDigits, hexLike := 0, true
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			hexDigits++
		case c == '-':
		case 'g' <= c && c <= 'z', 'G' <= c && c <= 'Z', c == '_':
			hexLike = false
		default:
			return fmt.Errorf("the events id may hold only A-Z a-z 0-9 - _ (found %q)", c)
		}
	}
	if hexLike && hexDigits < hexMin {
		return fmt.Errorf("a hex events id needs at least %d hex digits (got %d)", hexMin, hexDigits)
	}
	return nil
}

// ServeHTTP serves /{events-id}: mount the Handler under its prefix with
// http.StripPrefix (the prefix without its trailing slash).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/")
	if !ok || strings.Contains(id, "/") {
		h.writeError(w, http.StatusNotFound, "not_found", r.URL.Path)
		return
	}
	if r.Method == http.MethodOptions {
		// A preflight (with Origin) was answered by the CORS layer in
		// front; this is a plain OPTIONS.
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := checkEventsID(id); err != nil {
		h.writeError(w, http.StatusBadRequest, "bad_events_id", err.Error())
		return
	}
	if !h.sameSiteOrNoBrowser(r) {
		h.writeError(w, http.StatusForbidden, "cross_site_request",
			"a request with credentials but no Origin header must come from this site or an allowed origin")
		return
	}
	q := r.URL.Query()
	limit, err := pollQueue(q.Get("poll-queue"))
	if err != nil {
		h.writeError(w, http.StatusBadRequest, "bad_poll_queue", err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet:
		if wantsJSON(r.Header.Get("Accept")) {
			h.poll(w, r, id, limit)
			return
		}
		h.sse(w, r, id, limit)
	case http.MethodPost:
		h.post(w, r, id, limit)
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		h.writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method)
	}
}

// pollQueue reads the poll-queue parameter: 0 (the default bound) when
// empty, else an integer ≥ 1 capped at MaxPollQueue.
func pollQueue(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errors.New("poll-queue must be an integer ≥ 1: " + v)
	}
	return min(n, MaxPollQueue), nil
}

// sameSiteOrNoBrowser decides on a request that carries credentials but no
// Origin header, which a browser sends on a cross-site GET made by a link,
// an image or a script (cookies included): it may pass only when the
// browser says it is same-origin or user-initiated (Sec-Fetch-Site), or,
// from a browser that does not send Sec-Fetch-Site, when its Referer is
// this site or an allowed origin. A request with neither header is not a
// browser's cross-site request and passes. Requests with an Origin were
// decided by the CORS layer in front.
func (h *Handler) sameSiteOrNoBrowser(r *http.Request) bool {
	if r.Header.Get("Origin") != "" || !h.hasCredentials(r) {
		return true
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return true
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" {
		return false
	}
	return h.cfg.originAllowed(r, u.Scheme+"://"+u.Host)
}

// sameOrigin is the default origin policy: the request's own scheme and
// Host.
func sameOrigin(r *http.Request, origin string) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(origin, scheme+"://"+r.Host)
}

// wantsJSON tells a long-poll GET (Accept: application/json) from an
// EventSource one; anything that does not name application/json without
// also naming text/event-stream gets SSE, as in the seed.
func wantsJSON(accept string) bool {
	a := strings.ToLower(accept)
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/event-stream")
}

// session returns the events id's live session. When there is none (or
// the last one is over) a GET (create) makes one, dialling Rails with the
// request's credentials; a POST gets 404. On failure the request has been
// answered.
func (h *Handler) session(w http.ResponseWriter, r *http.Request, id string, create bool) (*session, bool) {
	ip, secrets := h.cfg.clientIP(r), h.credentials(r)
	reloaded := false
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			h.writeError(w, http.StatusServiceUnavailable, "shutting_down", "")
			return nil, false
		}
		e := h.entries[id]
		h.mu.Unlock()
		if e == nil && h.cfg.shared != nil {
			var err error
			if e, err = h.loadShared(r.Context(), id); err != nil {
				h.cfg.logger.Warn("compat: session store unavailable", "err", err)
				h.writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the session store failed")
				return nil, false
			}
		}
		h.mu.Lock()
		if e == nil {
			e = h.entries[id]
		}
		if e == nil {
			if !create {
				h.mu.Unlock()
				h.writeError(w, http.StatusNotFound, "unknown_events_id",
					"no session has this events id; open it with a GET (EventSource or long-poll) first")
				return nil, false
			}
			e = &entry{id: id, ip: ip, secrets: secrets}
			h.entries[id] = e
		}
		h.mu.Unlock()
		if !e.boundTo(ip, secrets) {
			h.writeError(w, http.StatusForbidden, "not_session_owner",
				"this events id belongs to another client (the IP address and the credential headers must match the request that opened it)")
			return nil, false
		}
		e.mu.Lock()
		if e.dead {
			e.mu.Unlock()
			continue
		}
		if old := e.s; old != nil && h.cfg.shared != nil && !reloaded && old.remote() && (old.released() || old.isEnded()) {
			// Over as seen here, owned elsewhere: another process may
			// have begun a new session of the events id. Read the store
			// again.
			e.dead = true
			e.mu.Unlock()
			h.mu.Lock()
			if h.entries[id] == e {
				delete(h.entries, id)
			}
			h.mu.Unlock()
			old.release()
			reloaded = true
			continue
		}
		if old := e.s; old != nil {
			// Reuse it unless it is over: then its client starts afresh.
			// A POST wants a working session; a GET first collects the
			// last events of one that Rails ended (not of one that
			// expired: its client was gone).
			if !old.released() && (!old.isEnded() || (create && !old.q.over())) {
				e.mu.Unlock()
				old.touch()
				return old, true
			}
			if !create {
				e.mu.Unlock()
				h.writeError(w, http.StatusNotFound, "unknown_events_id",
					"the session of this events id has ended; open a new one with a GET first")
				return nil, false
			}
			old.release()
		}
		s, ok := h.create(w, r, e, ip, secrets)
		if !ok {
			e.dead = true
			h.mu.Lock()
			if h.entries[id] == e {
				delete(h.entries, id)
			}
			h.mu.Unlock()
		}
		e.s = s
		e.mu.Unlock()
		return s, ok
	}
}

// reserve counts a session against the limits before Rails is dialled, so
// a flood of creations cannot exceed them: the shared Limiter's, or the
// handler's own (WithSessionLimits). release gives the place back, once.
func (h *Handler) reserve(ip string) (release func(), err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, &LimitError{Status: http.StatusServiceUnavailable, Reason: "shutting_down"}
	case h.cfg.limiter == nil && h.sessions >= h.cfg.maxSessions:
		return nil, &LimitError{Status: http.StatusServiceUnavailable, Reason: "too_many_sessions"}
	case h.cfg.limiter == nil && h.perIP[ip] >= h.cfg.maxSessionsPerIP:
		return nil, &LimitError{Status: http.StatusTooManyRequests, Reason: "too_many_sessions_for_ip"}
	}
	shared := func() {}
	if h.cfg.limiter != nil {
		if shared, err = h.cfg.limiter.Reserve(ip); err != nil {
			return nil, err
		}
	}
	h.perIP[ip]++
	h.sessions++
	return sync.OnceFunc(func() {
		shared()
		h.mu.Lock()
		defer h.mu.Unlock()
		h.sessions--
		if h.perIP[ip]--; h.perIP[ip] <= 0 {
			delete(h.perIP, ip)
		}
	}), nil
}

// upstreamHeader picks the request headers the upstream handshake carries.
func (h *Handler) upstreamHeader(r *http.Request) map[string][]string {
	out := map[string][]string{}
	for _, k := range append([]string{"Origin"}, h.credentialHeaders()...) {
		if v := r.Header.Values(k); len(v) > 0 {
			out[http.CanonicalHeaderKey(k)] = v
		}
	}
	return out
}

// create dials Rails for a new session of e and returns once Rails has
// welcomed it. On failure it has answered the request.
func (h *Handler) create(w http.ResponseWriter, r *http.Request, e *entry, ip string, secrets [32]byte) (*session, bool) {
	release, err := h.reserve(ip)
	if err != nil {
		le := &LimitError{Status: http.StatusServiceUnavailable, Reason: "too_many_sessions"}
		errors.As(err, &le)
		if le.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(le.RetryAfter.Seconds())))))
		}
		h.writeError(w, le.Status, le.Reason, "")
		return nil, false
	}
	s := newSession(h, e, release)
	header := h.upstreamHeader(r)
	up := h.cfg.upstream
	if up == nil {
		up = websocket.New(websocket.WithReadLimit(h.cfg.maxFrameBytes))
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.createTimeout)
	defer cancel()
	if h.cfg.shared != nil {
		if !h.createShared(ctx, w, r, s, ip) {
			release()
			return nil, false
		}
	}
	frame, event := s.hooks()
	c, err := cable.Dial(ctx, h.upstream,
		cable.WithTransport(up),
		cable.WithHeaderFunc(func(context.Context) (map[string][]string, error) { return header, nil }),
		cable.WithFrameHook(frame),
		cable.WithEventHandler(event),
		cable.WithFrameLimit(int(h.cfg.maxFrameBytes)),
		cable.WithStaleTimeout(h.cfg.upstreamStale),
		cable.WithBackoff(h.cfg.backoff),
		cable.WithLogger(h.cfg.logger),
		cable.WithDialRetry(false), // answer the client now; it retries itself
		cable.WithReconnect(true),  // the session outlives its upstream connection
	)
	if err != nil {
		release()
		if s.shared != nil {
			s.shared.h.OnOwnership(nil)
			s.q.release() // deletes the store's record
		}
		var (
			de *cable.DisconnectError
			he *transport.HandshakeError
		)
		switch {
		case errors.As(err, &de) && errors.Is(err, cable.ErrUnauthorized):
			h.writeError(w, http.StatusUnauthorized, "unauthorized", "Rails refused the connection")
		case errors.As(err, &de):
			h.writeError(w, http.StatusBadGateway, "upstream_disconnected", de.Error())
		case errors.As(err, &he):
			h.writeError(w, http.StatusBadGateway, "upstream_refused", fmt.Sprintf("Rails answered HTTP %d", he.StatusCode))
		case ctx.Err() != nil && r.Context().Err() == nil:
			h.writeError(w, http.StatusGatewayTimeout, "upstream_timeout", "no welcome from Rails in time")
		default: // the error names the upstream's address: logged, not told
			h.cfg.logger.Warn("compat: upstream unavailable", "err", err)
			h.writeError(w, http.StatusBadGateway, "upstream_unavailable", "Rails could not be reached")
		}
		return nil, false
	}
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		c.Close()
		release()
		if s.shared != nil {
			s.shared.h.OnOwnership(nil)
			s.q.release()
		}
		h.writeError(w, http.StatusServiceUnavailable, "shutting_down", "")
		return nil, false
	}
	h.stats.sessionsCreated.Add(1)
	h.cfg.logger.Info("compat: session created", "events_id_prefix", e.id[:6], "session", s.id)
	return s, true
}

// janitor expires idle sessions and forgets events ids whose session is
// gone, until Close.
func (h *Handler) janitor() {
	defer h.wg.Done()
	// Every second: an ended session goes about a second after its last
	// event was handed out, as the bridge's.
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			h.sweep(now)
		}
	}
}

func (h *Handler) sweep(now time.Time) {
	var expired []*session
	h.mu.Lock()
	for id, e := range h.entries {
		if !e.mu.TryLock() {
			continue // being created; next round
		}
		switch {
		case e.s == nil || e.s.released():
			e.dead = true
			delete(h.entries, id)
		case e.s.expired(now, h.cfg.sessionTTL):
			expired = append(expired, e.s)
		}
		e.mu.Unlock()
	}
	h.mu.Unlock()
	for _, s := range expired {
		h.cfg.logger.Info("compat: session expired", "session", s.id)
		if !s.remote() { // else only this process's handle goes
			s.stop(reasonSessionEnded)
		}
		s.release()
	}
}

func (h *Handler) countRefusal(reason string) {
	v, _ := h.stats.refused.LoadOrStore(reason, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// apiError is the JSON body of every refusal, as the bridge's.
type apiError struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

// writeError answers with status and a JSON error, counting the refusal.
func (h *Handler) writeError(w http.ResponseWriter, status int, reason, detail string) {
	h.countRefusal(reason)
	writeJSON(w, status, apiError{Error: reason, Detail: detail})
}

// writeJSON answers with v as JSON. HTML escaping is off so that messages
// embedded as json.RawMessage reach the client byte for byte as Rails sent
// them.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// remoteIP is the default client IP: the connection's remote address.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
