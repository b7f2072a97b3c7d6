package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/server/internal/sse"
)

// Bounds of what one answer hands out.
const (
	maxBatch     = 256
	writeTimeout = 10 * time.Second
)

// request is one entry of a seed POST body.
type request struct {
	Identifier  json.RawMessage `json:"identifier"`
	Subscribe   bool            `json:"subscribe"`
	Unsubscribe bool            `json:"unsubscribe"`
	Send        json.RawMessage `json:"send"`
}

// result answers one request. Error is empty (and left out) on success.
type result struct {
	Error     string `json:"error,omitempty"`
	SessionID string `json:"session_id"`
	ChanID    string `json:"chan_id,omitempty"`
}

// ErrInvalidText is the error of an identifier or send data that Rails
// could not take as text: invalid UTF-8, or a \u escape of half a
// surrogate pair. Rails closes the connection over the first (WebSocket
// close 1007), which would drop every subscription of the session.
var ErrInvalidText = errors.New("not valid Unicode text")

// checkText refuses JSON text that is not valid UTF-8 or escapes a lone
// surrogate.
func checkText(b []byte) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: invalid UTF-8", ErrInvalidText)
	}
	if bridgewire.LoneSurrogate(b) {
		return fmt.Errorf("%w: \\u escape of a lone surrogate", ErrInvalidText)
	}
	return nil
}

// identifierOf validates a request's identifier and returns the
// identifier string for Rails: the object's compact JSON text, keys in
// the client's order, or a string's content verbatim.
func identifierOf(raw json.RawMessage) (string, error) {
	const want = "identifier must be a JSON object with a string \"channel\""
	var text []byte
	switch t := bytes.TrimSpace(raw); {
	case len(t) > 0 && t[0] == '{':
		var buf bytes.Buffer
		if err := json.Compact(&buf, t); err != nil {
			return "", errors.New(want)
		}
		text = buf.Bytes()
	case len(t) > 0 && t[0] == '"':
		if err := checkText(t); err != nil {
			return "", fmt.Errorf("identifier: %w", err)
		}
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return "", errors.New(want)
		}
		text = []byte(s)
	default:
		return "", errors.New(want)
	}
	if err := checkText(text); err != nil {
		return "", fmt.Errorf("identifier: %w", err)
	}
	var fields map[string]json.RawMessage
	var channel string
	if json.Unmarshal(text, &fields) != nil || json.Unmarshal(fields["channel"], &channel) != nil || channel == "" {
		return "", errors.New(want)
	}
	return string(text), nil
}

// compactObject returns the compact text of a JSON object, or an error.
func compactObject(raw json.RawMessage) (string, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' {
		return "", errors.New("send must be a JSON object, such as {\"action\":\"speak\",...}")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return "", err
	}
	if err := checkText(buf.Bytes()); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	return buf.String(), nil
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request, id string, limit int) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("limit %d bytes", mbe.Limit))
			return
		}
		h.writeError(w, http.StatusBadRequest, "bad_body", err.Error())
		return
	}
	var reqs []request
	if err := json.Unmarshal(body, &reqs); err != nil {
		h.writeError(w, http.StatusBadRequest, "bad_body",
			"want a JSON array of {identifier, subscribe|unsubscribe|send}: "+err.Error())
		return
	}
	s, ok := h.session(w, r, id, false)
	if !ok {
		return
	}
	if s.remote() {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.createTimeout)
		defer cancel()
		status, out := h.forwardPost(ctx, s, id, reqs, body, limit)
		if e, ok := out.(apiError); ok {
			h.writeError(w, status, e.Error, e.Detail)
			return
		}
		writeJSON(w, status, out)
		return
	}
	status, out := s.post(r.Context(), reqs, limit)
	writeJSON(w, status, out)
}

// post performs a POST's requests on a session this process owns: with
// a shared store, for a POST that landed on another process too.
func (s *session) post(ctx context.Context, reqs []request, limit int) (int, any) {
	if limit > 0 && limit != s.q.limitNow() {
		s.q.setLimit(limit)
		s.mu.Lock()
		s.saveStateLocked()
		s.mu.Unlock()
	}
	if !s.allowCommands(len(reqs)) {
		s.h.countRefusal("rate_limited")
		return http.StatusTooManyRequests, apiError{Error: "rate_limited", Detail: fmt.Sprintf("at most %v commands per second", s.h.cfg.commandsPerSecond)}
	}
	out := make([]result, len(reqs))
	s.sendMu.Lock()
	for i := range reqs {
		out[i] = s.apply(ctx, &reqs[i])
	}
	s.sendMu.Unlock()
	return http.StatusOK, out
}

// apply performs one request. Call with s.sendMu held.
func (s *session) apply(ctx context.Context, req *request) result {
	res := result{SessionID: s.id}
	ident, err := identifierOf(req.Identifier)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.ChanID = chanIDOf(ident)
	ops := 0
	for _, set := range []bool{req.Subscribe, req.Unsubscribe, len(req.Send) > 0 && string(req.Send) != "null"} {
		if set {
			ops++
		}
	}
	if ops != 1 {
		res.Error = "a request needs exactly one of \"subscribe\": true, \"unsubscribe\": true or \"send\": {...}"
		return res
	}
	switch {
	case req.Subscribe:
		if err := s.subscribe(ident, res.ChanID); err != nil {
			res.Error = err.Error()
		}
	case req.Unsubscribe:
		s.unsubscribe(ctx, ident)
	default:
		data, err := compactObject(req.Send)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		if err := s.send(ctx, ident, data); err != nil {
			if errors.Is(err, errNotSubscribed) {
				res.Error = err.Error()
			} else {
				res.Error = "upstream unavailable, not sent: " + err.Error()
			}
		}
	}
	return res
}

// setLimit applies a GET's poll-queue: on the session's owner, through
// it when the session is shared and owned elsewhere.
func (h *Handler) setLimit(s *session, id string, limit int) {
	if limit <= 0 || limit == s.q.limitNow() {
		return
	}
	s.q.setLimit(limit) // on a remote session: what this process knows of it
	if s.shared == nil {
		return
	}
	if !s.remote() {
		s.mu.Lock()
		s.saveStateLocked()
		s.mu.Unlock()
		return
	}
	h.background(func() {
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.createTimeout)
		defer cancel()
		h.forwardPost(ctx, s, id, nil, []byte("[]"), limit)
	})
}

// parseCursor reads an optional msg_id cursor; ok is false when malformed.
func parseCursor(v string) (n uint64, set, ok bool) {
	if v == "" {
		return 0, false, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil, err == nil
}

func (h *Handler) sse(w http.ResponseWriter, r *http.Request, id string, limit int) {
	last, lastSet, _ := parseCursor(r.Header.Get("Last-Event-ID"))
	s, ok := h.session(w, r, id, true)
	if !ok {
		return
	}
	h.setLimit(s, id, limit)
	// Events written to the stream are not acknowledged: an EventSource
	// that reconnects names the last event it got, which acknowledges it
	// and what precedes it, and gets what follows again (while queued).
	cur := s.q.cursor()
	if lastSet && s.q.validCursor(last) {
		s.q.ack(last)
		cur = last
	}
	prelude := []byte("retry: 1000\n\n")
	prelude = append(prelude, "event: message\n"...)
	prelude = bridgewire.AppendData(prelude, fmt.Appendf(nil, `{"type":"joined","id":"%s"}`, id))
	var detach func()
	st := sse.NewStreamer(&sseSource{s: s, cur: cur}, sse.Config{
		KeepAlive:    h.cfg.keepAlive,
		WriteTimeout: writeTimeout,
		// The handler stays, so that a client that goes is noticed at
		// once: its session's TTL starts then.
		Detach: false,
		Sent:   func(n int) { h.stats.eventsOut.Add(uint64(n)) },
		Done:   func() { detach() },
	})
	detach = s.attachFunc(st.Stop) // a newer listener stops this one
	st.Serve(w, r, prelude)
}

// sseSource is a session's queued events as SSE "message" events.
type sseSource struct {
	s    *session
	cur  uint64 // the id of the last event written
	data []byte // scratch
}

// Append writes the next batch of events; the stream ends once the
// session's last event is written.
func (src *sseSource) Append(buf []byte) ([]byte, int, bool, bool) {
	items, rest, ended, _ := src.s.q.take(src.cur, maxBatch, false)
	for _, it := range items {
		buf = append(buf, "event: message\nid: "...)
		buf = strconv.AppendUint(buf, it.id, 10)
		buf = append(buf, '\n')
		src.data = withSession(src.data[:0], it.data, src.s.id)
		buf = bridgewire.AppendData(buf, src.data)
	}
	if len(items) > 0 {
		src.cur = items[len(items)-1].id
	}
	return buf, len(items), rest > 0, ended
}

// Notify calls f once an event follows what Append wrote, or the session
// ends.
func (src *sseSource) Notify(f func()) (stop func() bool) { return src.s.q.notify(src.cur, f) }

// pollTimeout reads a long-poll's timeout parameter, in seconds: the
// default when empty, capped at MaxPollTimeout.
func pollTimeout(v string) (time.Duration, error) {
	if v == "" {
		return DefaultPollTimeout, nil
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 || math.IsNaN(n) {
		return 0, errors.New("timeout must be a number of seconds ≥ 0: " + v)
	}
	// Capped before the conversion, which would overflow.
	return time.Duration(min(n, MaxPollTimeout.Seconds()) * float64(time.Second)), nil
}

// polled is the body of a seed long-poll answer.
type polled struct {
	Messages    []json.RawMessage `json:"messages"`
	SessionID   string            `json:"session_id"`
	Dropped     uint64            `json:"dropped"`
	QueueLength int               `json:"queue_length"`
}

func (h *Handler) poll(w http.ResponseWriter, r *http.Request, id string, limit int) {
	q := r.URL.Query()
	timeout, err := pollTimeout(q.Get("timeout"))
	if err != nil {
		h.writeError(w, http.StatusBadRequest, "bad_timeout", err.Error())
		return
	}
	after, afterSet, ok := parseCursor(q.Get("after"))
	if !ok {
		h.writeError(w, http.StatusBadRequest, "bad_after", "after must be a msg_id: "+q.Get("after"))
		return
	}
	s, ok := h.session(w, r, id, true)
	if !ok {
		return
	}
	h.setLimit(s, id, limit)
	ctx, detach := s.attach(r.Context())
	defer detach()

	// Without "after", the answer starts after what listeners were handed
	// and acknowledges what it returns. With it, events up to after are
	// acknowledged and the answer starts after them, so an answer that got
	// lost is sent again.
	cur := s.q.cursor()
	if afterSet && s.q.validCursor(after) {
		s.q.ack(after)
		cur = after
	} else {
		afterSet = false
	}
	if timeout > 0 {
		// Until an event follows cur, the session ends, the timeout, or
		// a newer listener takes over (answer now).
		wctx, cancel := context.WithTimeout(ctx, timeout)
		s.q.wait(wctx, cur, nil)
		cancel()
		if r.Context().Err() != nil {
			return // the client is gone
		}
	}
	if !afterSet {
		cur = s.q.cursor() // past what a newer listener may have taken meanwhile
	}
	items, rest, _, skipped := s.q.take(cur, maxBatch, !afterSet)
	out := polled{Messages: make([]json.RawMessage, len(items)), SessionID: s.id, QueueLength: rest}
	for i, it := range items {
		out.Messages[i] = it.data
	}
	out.Dropped = s.q.takeDropped()
	if !s.q.exact && afterSet {
		// On a shared store the bound runs on the owner, which cannot
		// tell which events a listener elsewhere was handed: the answer
		// counts those gone between its cursor and its first message.
		out.Dropped += skipped
	}
	h.stats.eventsOut.Add(uint64(len(items)))
	writeJSON(w, http.StatusOK, out)
}
