package bridge

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
)

func (b *Bridge) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sessions", b.create)
	mux.HandleFunc("GET "+bridgewire.OpenSSEPath, b.openSSE)
	mux.HandleFunc("GET /sessions/{sid}/sse", b.sse)
	mux.HandleFunc("GET /sessions/{sid}/poll", b.poll)
	mux.HandleFunc("POST /sessions/{sid}/send", b.send)
	mux.HandleFunc("GET /sessions/{sid}/ws", b.reattach)
	mux.HandleFunc("POST /sessions/{sid}/ack", b.ack)
	mux.HandleFunc("DELETE /sessions/{sid}", b.delete)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if b.draining() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "draining": true})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "sessions": b.Stats().Sessions})
	})
	mux.HandleFunc("/", b.root)
	b.compatRoutes(mux)
	b.mux = mux
}

// ServeHTTP routes a request.
func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.withOrigin(b.mux).ServeHTTP(w, r)
}

func (b *Bridge) root(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		b.proxy(w, r)
		return
	}
	b.writeError(w, http.StatusNotFound, "not_found", r.URL.Path)
}

// upstreamHeader picks the request headers the upstream handshake carries.
func (b *Bridge) upstreamHeader(r *http.Request) map[string][]string {
	h := map[string][]string{}
	for _, k := range append([]string{"Cookie", "Authorization", "Origin"}, b.cfg.passHeaders...) {
		if v := r.Header.Values(k); len(v) > 0 {
			h[http.CanonicalHeaderKey(k)] = v
		}
	}
	return h
}

func (b *Bridge) create(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, b.cfg.maxBodyBytes)); err != nil {
		b.bodyError(w, err)
		return
	}
	s, ok := b.openSessionQuery(w, r, r.URL.RawQuery)
	if !ok {
		return
	}
	writeJSON(w, http.StatusCreated, b.created(s))
}

// openSSE is the single-request open, GET /sessions/sse
// (bridgewire.OpenSSEPath): it creates a session as POST /sessions does,
// sends Rails a subscribe command for each "subscribe" parameter once the
// welcome is in (the session's commands 1…n), and answers with the
// session's event stream from cursor 0, its first event the session's
// name and token (bridgewire.SessionEvent). One request instead of
// three (create, stream, send): no round trip waits on another.
func (b *Bridge) openSSE(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(bridgewire.LastEventID) != "" {
		// An EventSource reconnecting to the URL it was given: its
		// session is at its own URL, and a new one would be a silent gap.
		refuseStream(w, r, bridgewire.ReasonBadCursor)
		return
	}
	if b.crossSiteWithoutOrigin(r) {
		// A GET dials Rails with the request's cookies: a link or an image
		// on another site must not open (and subscribe) a session.
		b.writeError(w, http.StatusForbidden, "cross_site_request", "a browser's cross-site request without Origin")
		return
	}
	idents, rawQuery, err := splitSubscribe(r.URL.RawQuery)
	if err != nil {
		b.writeError(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	cmds := make([]protocol.Command, len(idents))
	for i, id := range idents {
		cmds[i] = protocol.Command{Command: protocol.CommandSubscribe, Identifier: id}
		if err := protocol.ValidateCommand(&cmds[i]); err != nil {
			reason := "bad_command"
			if errors.Is(err, protocol.ErrInvalidUTF8) {
				reason = "invalid_utf8"
			}
			b.writeError(w, http.StatusBadRequest, reason, fmt.Sprintf("%s %d: %v", bridgewire.SubscribeParam, i, err))
			return
		}
	}
	if float64(len(cmds)) > 2*b.cfg.commandsPerSecond {
		// More than a new session's command bucket holds.
		b.writeError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("at most %v commands per second", b.cfg.commandsPerSecond))
		return
	}
	s, ok := b.openSessionQuery(w, r, rawQuery)
	if !ok {
		return
	}
	if len(cmds) > 0 {
		s.allowCommands(len(cmds)) // a new session's bucket holds them (checked above)
		s.sendMu.Lock()
		for i := range cmds {
			// A failure means the upstream is gone: the stream tells the
			// client so, with its last frame.
			if s.up.SendCommand(r.Context(), &cmds[i]) != nil {
				break
			}
			s.acked++
			b.stats.commands.Add(1)
		}
		s.sendMu.Unlock()
		// The head waits for Rails' answers (for at most openHold): the
		// client then gets its session, the welcome and the answers in
		// one write, and reads them at once.
		t := time.NewTimer(openHold)
		s.wait(r.Context(), uint64(s.acked), 0, t.C) // frames 1 (the welcome) … acked+1 are in
		t.Stop()
	}
	b.stream(w, r, s, 0, bridgewire.AppendSession(slices.Clip(retryPrelude), b.created(s)))
}

// openHold bounds how long GET /sessions/sse holds its answer back for
// Rails' answers to the subscriptions it sent.
const openHold = 100 * time.Millisecond

// crossSiteWithoutOrigin reports a browser's cross-site request that
// carries credentials (Cookie, Authorization) but no Origin, as a link, an
// image or a script on another site makes (an EventSource or fetch sends
// an Origin, which the origin policy decides): its Sec-Fetch-Site is
// anything but same-origin or none or, from a browser without
// Sec-Fetch-Site, its Referer is neither the bridge's origin nor an
// allowed one. A request with neither header is not a browser's.
func (b *Bridge) crossSiteWithoutOrigin(r *http.Request) bool {
	if r.Header.Get("Origin") != "" || r.Header.Get("Cookie") == "" && r.Header.Get("Authorization") == "" {
		return false
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site != "same-origin" && site != "none"
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return false
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" {
		return true
	}
	origin := u.Scheme + "://" + u.Host
	return !b.cfg.allowedOrigins[origin] && !b.sameOrigin(r, origin)
}

// created is the description of a new session that its client is given.
func (b *Bridge) created(s *session) bridgewire.Created {
	return bridgewire.Created{
		SID: s.id, Token: s.token, Epoch: s.epoch,
		TTL: int(b.cfg.sessionTTL / time.Second), MaxBody: b.cfg.maxBodyBytes,
	}
}

// splitSubscribe takes the subscribe parameters out of a query: the
// identifiers, in order, and the rest of the query as it was written.
func splitSubscribe(rawQuery string) (idents []string, rest string, err error) {
	var kept []string
	for part := range strings.SplitSeq(rawQuery, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, "", fmt.Errorf("the query does not parse: %w", err)
		}
		if key != bridgewire.SubscribeParam {
			kept = append(kept, part)
			continue
		}
		id, err := url.QueryUnescape(v)
		if err != nil {
			return nil, "", fmt.Errorf("the query does not parse: %w", err)
		}
		if len(idents) == bridgewire.MaxSubscribe {
			return nil, "", fmt.Errorf("at most %d %s parameters", bridgewire.MaxSubscribe, bridgewire.SubscribeParam)
		}
		idents = append(idents, id)
	}
	return idents, strings.Join(kept, "&"), nil
}

// upstreamURL is the upstream with the client's query added: browsers
// cannot set Authorization, so tokens travel as ?token=… as they would to
// Rails directly. The operator's own query in the upstream URL wins: a
// client parameter whose name it already has is left out (Rails, like
// Rack, would take the last of repeated names). A client query that does
// not parse is an error, never silently dropped.
func (b *Bridge) upstreamURL(rawQuery string) (string, error) {
	if rawQuery == "" {
		return b.upstream, nil
	}
	client, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", fmt.Errorf("the query does not parse: %w", err)
	}
	u, err := url.Parse(b.upstream)
	if err != nil {
		return b.upstream, nil // the dial reports it (not the client's fault)
	}
	operator, _ := url.ParseQuery(u.RawQuery)
	extra := url.Values{}
	for k, vs := range client {
		if _, taken := operator[k]; !taken {
			extra[k] = vs
		}
	}
	if len(extra) == 0 {
		return b.upstream, nil
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += extra.Encode()
	return u.String(), nil
}

// openSessionQuery dials Rails for a new session with the request's
// credentials, rawQuery added to the upstream URL, and returns once Rails
// has welcomed it. On failure it has answered the request itself. The
// session ends when its upstream connection does, with Rails' disconnect
// frame or an "upstream_lost" one as its last frame, so that the client
// learns of the gap as it would from Rails itself.
func (b *Bridge) openSessionQuery(w http.ResponseWriter, r *http.Request, rawQuery string) (*session, bool) {
	upstreamURL, err := b.upstreamURL(rawQuery)
	if err != nil {
		b.writeError(w, http.StatusBadRequest, "bad_query", err.Error())
		return nil, false
	}
	ip := ClientKey(b.cfg.clientIP(r)) // an IPv6 /64 is one client
	if !b.allowCreate(w, ip) {
		return nil, false
	}
	if err := b.reserve(ip); err != nil {
		var le *errLimit
		errors.As(err, &le)
		b.writeError(w, le.status, le.reason, "")
		return nil, false
	}
	s := newSession(b, ip)
	header := b.upstreamHeader(r)
	ctx, cancel := context.WithTimeout(r.Context(), b.cfg.createTimeout)
	defer cancel()
	if b.cluster != nil {
		if err := b.cluster.create(ctx, s, upstreamURL, header); err != nil {
			b.unreserve(ip)
			b.cfg.logger.Warn("bridge: session store", "err", err)
			b.writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the session store failed; retry")
			return nil, false
		}
	}
	// No event handler and no watcher goroutine: the frame hook sees
	// welcomes (reconnects) and final disconnects, which keeps an idle
	// session to the Consumer's own goroutines.
	c, err := cable.Dial(ctx, upstreamURL,
		cable.WithTransport(b.upTrans),
		cable.WithHeaderFunc(func(context.Context) (map[string][]string, error) { return header, nil }),
		cable.WithFrameHook(s.onFrame),
		cable.WithFrameLimit(int(b.cfg.maxFrameBytes)), // whatever the upstream transport
		cable.WithStaleTimeout(b.cfg.upstreamStale),
		cable.WithBackoff(b.cfg.backoff),
		cable.WithLogger(b.upLog),
		cable.WithDialRetry(false), // answer the client now; it retries itself
		cable.WithReconnect(false), // a new welcome must not pass for the old session
	)
	if err != nil {
		b.unreserve(ip)
		b.cluster.abandon(s)
		var (
			de *cable.DisconnectError
			he *transport.HandshakeError
		)
		switch {
		case errors.As(err, &de) && errors.Is(err, cable.ErrUnauthorized):
			b.writeError(w, http.StatusUnauthorized, "unauthorized", "Rails refused the connection")
		case errors.As(err, &de):
			b.writeError(w, http.StatusBadGateway, "upstream_disconnected", de.Error())
		case errors.As(err, &he):
			b.writeError(w, http.StatusBadGateway, "upstream_refused", fmt.Sprintf("Rails answered HTTP %d", he.StatusCode))
		case ctx.Err() != nil && r.Context().Err() == nil:
			b.writeError(w, http.StatusGatewayTimeout, "upstream_timeout", "no welcome from Rails in time")
		default: // the error names the upstream's address: logged, not told
			b.cfg.logger.Warn("bridge: upstream unavailable", "err", err)
			b.writeError(w, http.StatusBadGateway, "upstream_unavailable", "Rails could not be reached")
		}
		return nil, false
	}
	s.up = c
	context.AfterFunc(c.Context(), func() { s.upstreamGone(context.Cause(c.Context())) })
	if !b.addSession(s) {
		c.Close()
		b.writeError(w, http.StatusServiceUnavailable, "shutting_down", "")
		return nil, false
	}
	b.cfg.logger.Debug("bridge: session created", "session", s.id, "ip", ip)
	return s, true
}

// lookup finds the session of a request and checks its token (query
// "token" or header "Cableway-Token"), answering the refusal itself.
func (b *Bridge) lookup(w http.ResponseWriter, r *http.Request) *session {
	s := b.session(r.PathValue("sid"))
	if s == nil && b.cluster != nil { // owned by another process?
		var err error
		if s, err = b.cluster.open(r.Context(), r.PathValue("sid")); err != nil {
			b.cfg.logger.Warn("bridge: session store", "err", err)
			b.writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the session store failed; retry")
			return nil
		}
	}
	if s == nil {
		b.writeError(w, http.StatusNotFound, "unknown_session", "the session does not exist or has expired; create a new one")
		return nil
	}
	tok := r.URL.Query().Get("token")
	if tok == "" {
		tok = r.Header.Get(bridgewire.TokenHeader)
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) != 1 {
		b.writeError(w, http.StatusForbidden, "bad_token", "")
		return nil
	}
	s.touch()
	return s
}

// cursor reads the client's position: Last-Event-ID "<epoch>:<seq>" (SSE
// resumption) or the "after" parameter (with an optional "epoch").
func cursor(r *http.Request, s *session) (uint64, bool) {
	if id := r.Header.Get(bridgewire.LastEventID); id != "" {
		// Both parts, as the bridge writes them: ":5" or "7:" is no
		// cursor of this session.
		e, n, ok := bridgewire.ParseEventID(id)
		return n, ok && e == s.epoch
	}
	raw, epoch := r.URL.Query().Get("after"), r.URL.Query().Get("epoch")
	if epoch != "" && epoch != strconv.FormatUint(uint64(s.epoch), 10) {
		return 0, false
	}
	if raw == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(raw, 10, 64)
	return n, err == nil
}

// Bounds of one batch of frames written to a downstream. A long-poll
// answer is bounded by the client's max_bytes too (at least one frame is
// always sent), so that a proxy that cuts large responses cannot stop a
// client's progress.
const (
	maxBatch      = 256
	maxBatchBytes = 16 << 10
	maxPollBytes  = 64 << 10
)

// getBuffer borrows an empty write buffer; putBuffer gives it back.
func (b *Bridge) getBuffer() []byte {
	if p, ok := b.buffers.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 4<<10)
}

func (b *Bridge) putBuffer(buf []byte) {
	if cap(buf) > 2*maxBatchBytes {
		return // an unusually large frame's: let it go
	}
	buf = buf[:0]
	b.buffers.Put(&buf)
}

// pollTimeout reads a long-poll's timeout parameter, in seconds (decimal
// allowed): DefaultPollTimeout when empty, capped at MaxPollTimeout; ok is
// false unless it is a finite number ≥ 0.
func pollTimeout(v string) (time.Duration, bool) {
	if v == "" {
		return DefaultPollTimeout, true
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, false
	}
	// Clamp in seconds first: a huge n overflows a Duration.
	return time.Duration(min(n, MaxPollTimeout.Seconds()) * float64(time.Second)), true
}

func (b *Bridge) poll(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r)
	if s == nil {
		return
	}
	timeout, ok := pollTimeout(r.URL.Query().Get("timeout"))
	if !ok {
		b.writeError(w, http.StatusBadRequest, "bad_timeout", r.URL.Query().Get("timeout"))
		return
	}
	maxBytes := maxPollBytes
	if v := r.URL.Query().Get("max_bytes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.writeError(w, http.StatusBadRequest, "bad_max_bytes", v)
			return
		}
		maxBytes = min(n, maxPollBytes)
	}
	after, ok := cursor(r, s)
	if !ok {
		writeJSON(w, http.StatusOK, bridgewire.Polled{Epoch: s.epoch, Frames: []json.RawMessage{}, Reset: true, Reason: bridgewire.ReasonBadCursor})
		return
	}
	ctx, detach := s.attach(r.Context(), downPoll)
	defer detach()
	pingSeen := s.pollPing()
	if timeout > 0 {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		s.wait(wctx, after, pingSeen, nil)
		cancel()
	}
	bt, err := s.read(after, pingSeen, maxBatch, maxBytes)
	if storeFailed(err) {
		b.writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the session store failed; poll again at your cursor")
		return
	}
	out := bridgewire.Polled{Epoch: s.epoch, Frames: make([]json.RawMessage, 0, len(bt.Frames)+1), Next: after}
	switch {
	case errors.Is(err, errReset):
		out.Reset, out.Reason = true, resetReason(err)
	case err != nil:
		out.Ended = true
	}
	if bt.From > after {
		out.After, out.Next = bt.From, bt.From
	}
	for _, f := range bt.Frames {
		out.Frames = append(out.Frames, f.Data)
		out.Next = f.Seq
	}
	if bt.Ping != nil {
		out.Frames = append(out.Frames, bt.Ping)
		s.setPollPing(bt.PingN)
	}
	b.stats.framesOut.Add(uint64(len(out.Frames)))
	writeJSON(w, http.StatusOK, out)
}

func (b *Bridge) send(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r)
	if s == nil {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, b.cfg.maxBodyBytes))
	if err != nil {
		b.bodyError(w, err)
		return
	}
	batch, cmds, err := bridgewire.ParseSend(body)
	if err != nil {
		var se *bridgewire.SendError
		errors.As(err, &se)
		b.writeError(w, http.StatusBadRequest, se.Reason, se.Detail)
		return
	}
	status, ans, _ := b.applySend(r.Context(), s, batch, cmds, body)
	writeJSON(w, status, ans)
}

// applySend applies a /send batch to session s and returns the answer.
// A process that does not hold the session's upstream (a shared store's)
// forwards raw to the one that does; moved reports that it has none and
// raw was nil (a forwarded request: its sender asks again).
func (b *Bridge) applySend(ctx context.Context, s *session, batch []bridgewire.Command, cmds []protocol.Command, raw []byte) (status int, ans any, moved bool) {
	s.sendMu.Lock()
	if s.up == nil && b.cluster != nil {
		s.sendMu.Unlock()
		if raw == nil {
			return 0, nil, true
		}
		fctx, cancel := context.WithTimeout(ctx, b.cfg.createTimeout)
		defer cancel()
		status, ans := b.cluster.forward(fctx, s, forwarded{SID: s.id, Send: raw}, func() (int, any, bool) {
			return b.applySend(ctx, s, batch, cmds, nil)
		})
		return status, ans, false
	}
	defer s.sendMu.Unlock()
	defer b.cluster.recordAcked(s)
	fresh := 0
	for _, c := range batch {
		if c.CSeq > s.acked {
			fresh++
		}
	}
	if !s.allowCommands(fresh) {
		b.countRefusal("rate_limited")
		return http.StatusTooManyRequests, apiError{Error: "rate_limited", Detail: fmt.Sprintf("at most %v commands per second", b.cfg.commandsPerSecond)}, false
	}
	for i, c := range batch {
		if c.CSeq <= s.acked {
			continue // a retry of what was applied
		}
		if c.CSeq != s.acked+1 {
			b.countRefusal("cseq_gap")
			return http.StatusConflict, bridgewire.Error{Error: "cseq_gap", Acked: s.acked}, false
		}
		if err := s.up.SendCommand(ctx, &cmds[i]); err != nil {
			if s.isEnded() {
				// Final: retrying cannot help. The client reads the
				// reason from the session's last frames.
				b.countRefusal("session_ended")
				return http.StatusGone, bridgewire.Error{Error: "session_ended", Acked: s.acked}, false
			}
			b.countRefusal("upstream_unavailable")
			return http.StatusServiceUnavailable, bridgewire.Error{Error: "upstream_unavailable", Detail: err.Error(), Acked: s.acked}, false
		}
		s.acked = c.CSeq
		b.stats.commands.Add(1)
	}
	return http.StatusOK, bridgewire.Error{Acked: s.acked}, false
}

// ack frees the frames up to the cursor that a client reading an event
// stream or a re-attached WebSocket has received: those downstreams keep
// what they wrote until the client says it got it, since a proxy can hold
// written frames back and lose them.
func (b *Bridge) ack(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r)
	if s == nil {
		return
	}
	after, ok := cursor(r, s)
	if !ok {
		b.writeError(w, http.StatusBadRequest, "bad_cursor", "")
		return
	}
	s.acknowledge(after)
	w.WriteHeader(http.StatusNoContent)
}

func (b *Bridge) delete(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r)
	if s == nil {
		return
	}
	b.removeSession(s)
	w.WriteHeader(http.StatusNoContent)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bodyError answers a request whose body could not be read.
func (b *Bridge) bodyError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("limit %d bytes", mbe.Limit))
		return
	}
	b.writeError(w, http.StatusBadRequest, "bad_body", err.Error())
}
