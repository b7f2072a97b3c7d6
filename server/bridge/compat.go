package bridge

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	core "github.com/cableway/cableway/server/session"
)

// This file serves the HTTP API of actioncable-to-eventsource (the "seed"
// API) under its own prefix, as an adapter on the bridge's session core:
//
//	GET  {prefix}{events-id}  Accept: text/event-stream   SSE "message" events
//	GET  {prefix}{events-id}  Accept: application/json    long-poll
//	POST {prefix}{events-id}                              subscribe / unsubscribe / send
//
// server/COMPAT.md lists where it deliberately differs from the seed.
//
// A compat session is a bridge session (upstream Consumer, frame buffer)
// plus a pump goroutine, the session's only reader of that buffer, which
// turns frames into seed events in upstream order and keeps them in a queue
// bounded by poll-queue until a listener acknowledges them.

// Compat API limits.
const (
	// DefaultCompatPollQueue is the event queue bound of a compat session
	// unless the client sets poll-queue.
	DefaultCompatPollQueue = 32
	// MaxCompatPollQueue caps poll-queue.
	MaxCompatPollQueue = 1024
	// compatIDMin/Max bound the length of an events id; compatHexMin is
	// the minimum number of hex digits of a hex-looking one (128 bits).
	compatIDMin  = 22
	compatIDMax  = 128
	compatHexMin = 32
	// compatLinkCheck is how often the pump checks the upstream link; a
	// loss is reported after two failed checks in a row.
	compatLinkCheck = 500 * time.Millisecond
	// compatTimeLayout is the "time" of events: RFC 3339, UTC, milliseconds.
	compatTimeLayout = "2006-01-02T15:04:05.000Z07:00"
)

// compat serves the seed API for one Bridge.
type compat struct {
	b      *Bridge
	prefix string

	mu      sync.Mutex
	entries map[string]*compatEntry
	sweeper bool // sweep goroutine started
}

// compatEntry is one events id: the client it is bound to and its current
// session. It outlives sessions that end and are recreated for the same
// client; the sweeper deletes it once its session is gone from the bridge.
type compatEntry struct {
	id     string
	ip     string // binding: clientIP of the creating request
	cookie string // binding: its Cookie header

	mu   sync.Mutex // held while a session is being created
	cs   *compatSession
	dead bool // deleted from compat.entries; look the id up again

	seq atomic.Uint64 // msg_id of the last event, across this entry's sessions
}

func (e *compatEntry) boundTo(ip, cookie string) bool {
	ipOK := subtle.ConstantTimeCompare([]byte(e.ip), []byte(ip)) == 1
	cookieOK := subtle.ConstantTimeCompare([]byte(e.cookie), []byte(cookie)) == 1
	return ipOK && cookieOK
}

// compatRoutes registers the seed API under the configured prefix.
func (b *Bridge) compatRoutes(mux *http.ServeMux) {
	if b.cfg.compatPrefix == "" {
		return
	}
	mux.Handle(b.cfg.compatPrefix, &compat{b: b, prefix: b.cfg.compatPrefix, entries: map[string]*compatEntry{}})
}

// goUnlessClosed runs f on a goroutine counted in b.wg, unless the bridge
// is closing (then it reports false). Adding under b.mu orders the Add
// before Close's Wait.
func (b *Bridge) goUnlessClosed(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

// checkEventsID enforces the events id rule: 22 to 128 characters from the
// URL-safe alphabet A–Z a–z 0–9 '-' '_', and, when every character is a
// hex digit or '-' (hex strings, UUIDs), at least 32 hex digits. Either
// way the id has room for 128 bits; the client must fill it at random.
func checkEventsID(id string) error {
	if len(id) < compatIDMin || len(id) > compatIDMax {
		return fmt.Errorf("the events id must be %d to %d characters long (got %d)", compatIDMin, compatIDMax, len(id))
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
	if hexLike && hexDigits < compatHexMin {
		return fmt.Errorf("a hex events id needs at least %d hex digits (got %d)", compatHexMin, hexDigits)
	}
	return nil
}

func cookieOf(r *http.Request) string { return strings.Join(r.Header.Values("Cookie"), "; ") }

func (c *compat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, c.prefix)
	if strings.Contains(id, "/") {
		c.b.writeError(w, http.StatusNotFound, "not_found", r.URL.Path)
		return
	}
	if err := checkEventsID(id); err != nil {
		c.b.writeError(w, http.StatusBadRequest, "bad_events_id", err.Error())
		return
	}
	q := r.URL.Query()
	limit := 0
	if v := q.Get("poll-queue"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.b.writeError(w, http.StatusBadRequest, "bad_poll_queue", "poll-queue must be an integer ≥ 1: "+v)
			return
		}
		limit = min(n, MaxCompatPollQueue)
	}
	switch r.Method {
	case http.MethodGet:
		if wantsJSON(r.Header.Get("Accept")) {
			c.poll(w, r, id, limit)
			return
		}
		c.sse(w, r, id, limit)
	case http.MethodPost:
		c.post(w, r, id, limit)
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		c.b.writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method)
	}
}

// wantsJSON tells a long-poll GET (Accept: application/json) from an
// EventSource one; anything that does not name application/json without
// also naming text/event-stream gets SSE, as in the seed.
func wantsJSON(accept string) bool {
	a := strings.ToLower(accept)
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/event-stream")
}

// session returns the events id's live session, creating it (dialling
// Rails with the request's credentials) if there is none or the last one
// is over. recreate tells whether an ended session that still holds
// undelivered events is replaced too (a POST wants a working session; a
// GET first collects the old one's last events). On failure the request
// has been answered.
func (c *compat) session(w http.ResponseWriter, r *http.Request, id string, recreate bool) (*compatSession, bool) {
	ip, cookie := c.b.cfg.clientIP(r), cookieOf(r)
	for {
		c.mu.Lock()
		e := c.entries[id]
		if e == nil {
			e = &compatEntry{id: id, ip: ip, cookie: cookie}
			c.entries[id] = e
			if !c.sweeper && c.b.goUnlessClosed(c.sweep) {
				c.sweeper = true
			}
		}
		c.mu.Unlock()
		if !e.boundTo(ip, cookie) {
			c.b.writeError(w, http.StatusForbidden, "not_session_owner",
				"this events id belongs to another client (the IP address and the Cookie header must match the request that opened it)")
			return nil, false
		}
		e.mu.Lock()
		if e.dead {
			e.mu.Unlock()
			continue
		}
		if old := e.cs; old != nil {
			// Reuse it unless it is over or has left the bridge
			// (expired, removed): then its client starts afresh.
			if !old.over(recreate) && c.b.session(old.s.id) == old.s {
				e.mu.Unlock()
				old.s.touch()
				return old, true
			}
			c.b.removeSession(old.s)
		}
		cs, ok := c.create(w, r, e)
		if !ok {
			e.dead = true
			c.mu.Lock()
			if c.entries[id] == e {
				delete(c.entries, id)
			}
			c.mu.Unlock()
		}
		e.cs = cs
		e.mu.Unlock()
		return cs, ok
	}
}

func (c *compat) create(w http.ResponseWriter, r *http.Request, e *compatEntry) (*compatSession, bool) {
	s, ok := c.b.openSessionQuery(w, r, "", true)
	if !ok {
		return nil, false
	}
	cs := &compatSession{
		b: c.b, e: e, s: s, sessionID: newID(),
		chans: map[string]*compatChan{}, limit: DefaultCompatPollQueue,
		acked: e.seq.Load(), sent: e.seq.Load(), changed: make(chan struct{}),
	}
	if !c.b.goUnlessClosed(cs.pump) {
		c.b.removeSession(s)
		c.b.writeError(w, http.StatusServiceUnavailable, "shutting_down", "")
		return nil, false
	}
	c.b.cfg.logger.Info("bridge: compat session created", "events_id_prefix", e.id[:6], "session", s.id)
	return cs, true
}

// sweep deletes entries whose session has left the bridge (expired or
// removed), until the bridge closes.
func (c *compat) sweep() {
	t := time.NewTicker(max(time.Second, c.b.cfg.sessionTTL/4))
	defer t.Stop()
	for {
		select {
		case <-c.b.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		for id, e := range c.entries {
			if !e.mu.TryLock() {
				continue // being created; next round
			}
			if e.cs == nil || (e.cs.pumpDone() && c.b.session(e.cs.s.id) != e.cs.s) {
				e.dead = true
				delete(c.entries, id)
			}
			e.mu.Unlock()
		}
		c.mu.Unlock()
	}
}

// compatChan is one identifier the client subscribed to in a session.
type compatChan struct {
	identifier []byte // the identifier string as sent to Rails: JSON object text
	chanID     string
	order      uint64 // subscription order, for stable iteration
	confirmed  bool
	needSend   bool // a subscribe must be (re)sent on the live link
}

// compatChanID is the chan_id of an identifier: stable for the identifier
// text, opaque, 96 bits.
func compatChanID(identifier string) string {
	sum := sha256.Sum256([]byte(identifier))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// compatEvent is one queued seed event.
type compatEvent struct {
	id         uint64 // msg_id
	typ        string
	sessionID  string
	chanID     string
	at         time.Time
	identifier []byte // JSON
	message    []byte // JSON; nil is null
}

// appendJSON renders ev; long-poll answers leave session_id out, as the
// seed does. Every string field but the two raw ones is URL-safe ASCII.
func (ev *compatEvent) appendJSON(dst []byte, withSession bool) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, ev.typ...)
	if withSession {
		dst = append(dst, `","session_id":"`...)
		dst = append(dst, ev.sessionID...)
	}
	dst = append(dst, `","chan_id":"`...)
	dst = append(dst, ev.chanID...)
	dst = append(dst, `","msg_id":"`...)
	dst = strconv.AppendUint(dst, ev.id, 10)
	dst = append(dst, `","time":"`...)
	dst = ev.at.UTC().AppendFormat(dst, compatTimeLayout)
	dst = append(dst, `","identifier":`...)
	dst = append(dst, ev.identifier...)
	dst = append(dst, `,"message":`...)
	if ev.message == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, ev.message...)
	}
	return append(dst, '}')
}

// compatSession is the seed view of one bridge session.
type compatSession struct {
	b         *Bridge
	e         *compatEntry
	s         *session
	sessionID string // the seed's session_id: new for every session of an events id

	sendMu sync.Mutex // orders commands to Rails with the subscription set

	mu       sync.Mutex
	chans    map[string]*compatChan // by identifier string
	chanSeq  uint64
	welcomes int  // upstream welcomes seen
	lost     bool // the current upstream link was reported lost to every channel
	queue    []compatEvent
	acked    uint64 // events up to this msg_id are acknowledged (gone)
	sent     uint64 // events up to this msg_id were handed to a listener
	limit    int
	dropped  uint64 // events the bound evicted unsent, since the last long-poll answer
	ended    bool   // the pump is done: no event will follow
	changed  chan struct{}
}

func (cs *compatSession) broadcastLocked() {
	close(cs.changed)
	cs.changed = make(chan struct{})
}

func (cs *compatSession) pumpDone() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.ended
}

// over reports whether the session must be replaced: its pump is done and,
// unless force, its last events were handed out.
func (cs *compatSession) over(force bool) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.ended && (force || len(cs.queue) == 0 || cs.queue[len(cs.queue)-1].id <= cs.sent)
}

func (cs *compatSession) setLimit(n int) {
	if n <= 0 {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.limit = n
	cs.trimLocked()
}

func (cs *compatSession) pushLocked(ev compatEvent) {
	ev.id = cs.e.seq.Add(1)
	ev.sessionID = cs.sessionID
	cs.queue = append(cs.queue, ev)
	cs.trimLocked()
	cs.broadcastLocked()
}

// trimLocked applies the bound: the oldest events go, and those that no
// listener was handed count as dropped. Events handed out but not
// acknowledged stay while the bound allows, for resending.
func (cs *compatSession) trimLocked() {
	for len(cs.queue) > cs.limit {
		if cs.queue[0].id > cs.sent {
			cs.dropped++
		}
		cs.queue[0] = compatEvent{}
		cs.queue = cs.queue[1:]
	}
}

// validCursor tells whether n can be a msg_id this entry handed out.
func (cs *compatSession) validCursor(n uint64) bool { return n <= cs.e.seq.Load() }

// ack frees the events up to msg_id n: the client has them.
func (cs *compatSession) ack(n uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.ackLocked(n)
}

func (cs *compatSession) ackLocked(n uint64) {
	if n <= cs.acked || !cs.validCursor(n) {
		return
	}
	cs.acked = n
	cs.sent = max(cs.sent, n)
	i := sort.Search(len(cs.queue), func(i int) bool { return cs.queue[i].id > n })
	clear(cs.queue[:i])
	cs.queue = cs.queue[i:]
	if len(cs.queue) == 0 {
		cs.queue = nil
	}
}

// take hands out up to limit events after msg_id cur (acknowledging them
// too with ack) and returns them, how many more follow them, whether the
// session is over, and a channel closed at the next change.
func (cs *compatSession) take(cur uint64, limit int, ack bool) (evs []compatEvent, rest int, ended bool, changed <-chan struct{}) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	i := sort.Search(len(cs.queue), func(i int) bool { return cs.queue[i].id > cur })
	n := min(len(cs.queue)-i, limit)
	evs, rest = slices.Clone(cs.queue[i:i+n]), len(cs.queue)-i-n
	if n > 0 {
		last := evs[n-1].id
		cs.sent = max(cs.sent, last)
		if ack {
			cs.ackLocked(last)
		}
	}
	return evs, rest, cs.ended, cs.changed
}

// waitFor returns whether events follow msg_id cur, whether the session is
// over, and a channel closed at the next change.
func (cs *compatSession) waitFor(cur uint64) (ready, ended bool, changed <-chan struct{}) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.queue) > 0 && cs.queue[len(cs.queue)-1].id > cur, cs.ended, cs.changed
}

// cursor is where a listener that names no cursor starts: after what was
// handed out already.
func (cs *compatSession) cursor() uint64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.sent
}

func (cs *compatSession) takeDropped() uint64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	n := cs.dropped
	cs.dropped = 0
	return n
}

// pump reads the session's frames, the only reader of its buffer, and turns
// them into events until the session ends or the bridge closes.
func (cs *compatSession) pump() {
	s := cs.s
	defer cs.finish()
	tick := time.NewTicker(compatLinkCheck)
	defer tick.Stop()
	var (
		after, pingSeen uint64
		m               protocol.Message
		downChecks      int
	)
	for {
		bt, err := s.read(after, pingSeen, maxBatch, maxBatchBytes)
		if re, ok := errors.AsType[*core.ResetError](err); ok {
			// The pump's own reads acknowledge what it read, so frames
			// are never trimmed before it has them; a reset here is a
			// bug, and what it skips counts as dropped.
			cs.mu.Lock()
			cs.dropped += re.First - 1 - after
			cs.mu.Unlock()
			after = re.First - 1
			continue
		}
		after = max(after, bt.From)
		now := time.Now()
		welcomed := false
		for _, f := range bt.Frames {
			if cs.onFrame(f.Data, now, &m) {
				welcomed = true
			}
			after = f.Seq
		}
		pingSeen = bt.PingN
		if welcomed {
			downChecks = 0 // a new link: the checks start over
			cs.flushSubscribes()
		}
		if err != nil {
			return // ended, every frame handled
		}
		if bt.More {
			continue
		}
		werr := s.wait(cs.b.ctx, after, pingSeen, tick.C)
		switch {
		case errors.Is(werr, errTick):
			if s.up.Connected() {
				downChecks = 0
				cs.flushSubscribes()
				continue
			}
			if downChecks++; downChecks >= 2 {
				cs.mu.Lock()
				if !cs.lost {
					cs.markLostLocked(time.Now(), "connection_lost", true)
				}
				cs.mu.Unlock()
			}
		case werr != nil:
			return // the bridge is closing
		}
	}
}

// onFrame turns one upstream frame into events. It reports a welcome on a
// new upstream connection, after which the subscriptions are sent again.
func (cs *compatSession) onFrame(data []byte, now time.Time, m *protocol.Message) bool {
	if err := (protocol.JSONCodec{}).DecodeMessage(data, m); err != nil {
		cs.b.cfg.logger.Warn("bridge: compat: frame skipped", "session", cs.s.id, "err", err)
		return false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch m.Type {
	case protocol.TypeWelcome:
		cs.welcomes++
		if cs.welcomes == 1 {
			return false
		}
		// The bridge redialled Rails: every subscription is gone there.
		if !cs.lost {
			cs.markLostLocked(now, "connection_lost", true)
		}
		cs.lost = false
		for _, ch := range cs.chans {
			ch.needSend = true
		}
		return true
	case protocol.TypeDisconnect:
		if !cs.lost {
			cs.markLostLocked(now, m.Reason, cable.DisconnectOf(m).Reconnect)
		}
	case protocol.TypeConfirm, protocol.TypeReject, protocol.TypeMessage:
		ch := cs.chans[string(m.Identifier)]
		if ch == nil {
			return false // unsubscribed meanwhile
		}
		ev := compatEvent{chanID: ch.chanID, at: now, identifier: ch.identifier}
		switch m.Type {
		case protocol.TypeConfirm:
			ch.confirmed = true
			ev.typ = "connected"
		case protocol.TypeReject:
			delete(cs.chans, string(m.Identifier))
			ev.typ = "rejected"
		default:
			ev.typ = "received"
			ev.message = m.Body.Bytes() // aliases data, which is never modified
			if ev.message == nil {
				ev.message = []byte("null")
			}
		}
		cs.pushLocked(ev)
	}
	return false
}

// orderedChansLocked returns the channels in subscription order.
func (cs *compatSession) orderedChansLocked() []*compatChan {
	out := make([]*compatChan, 0, len(cs.chans))
	for _, ch := range cs.chans {
		out = append(out, ch)
	}
	slices.SortFunc(out, func(a, b *compatChan) int { return cmp.Compare(a.order, b.order) })
	return out
}

// markLostLocked reports the loss of the upstream link to every channel
// with a disconnected event; they are subscribed again on the next link.
func (cs *compatSession) markLostLocked(now time.Time, reason string, reconnect bool) {
	cs.lost = true
	msg, _ := json.Marshal(struct {
		Reason    string `json:"reason"`
		Reconnect bool   `json:"reconnect"`
	}{reason, reconnect})
	for _, ch := range cs.orderedChansLocked() {
		ch.confirmed = false
		cs.pushLocked(compatEvent{typ: "disconnected", chanID: ch.chanID, at: now, identifier: ch.identifier, message: msg})
	}
}

// finish runs when the pump stops: the channels are told, and listeners
// learn that nothing more will come.
func (cs *compatSession) finish() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !cs.lost {
		cs.markLostLocked(time.Now(), "session_ended", false)
	}
	cs.chans = map[string]*compatChan{}
	cs.ended = true
	cs.broadcastLocked()
}

// flushSubscribes sends the subscribes that are due on the live link.
func (cs *compatSession) flushSubscribes() {
	cs.mu.Lock()
	due := false
	for _, ch := range cs.chans {
		due = due || ch.needSend
	}
	cs.mu.Unlock()
	if !due {
		return
	}
	cs.sendMu.Lock()
	defer cs.sendMu.Unlock()
	cs.mu.Lock()
	var sends []*compatChan
	for _, ch := range cs.orderedChansLocked() {
		if ch.needSend {
			ch.needSend = false
			sends = append(sends, ch)
		}
	}
	cs.mu.Unlock()
	for i, ch := range sends {
		err := cs.s.up.SendCommand(cs.b.ctx, &protocol.Command{Command: protocol.CommandSubscribe, Identifier: string(ch.identifier)})
		if err != nil {
			// Not connected right now: the next check or welcome retries.
			cs.mu.Lock()
			for _, ch := range sends[i:] {
				if cs.chans[string(ch.identifier)] == ch {
					ch.needSend = true
				}
			}
			cs.mu.Unlock()
			return
		}
		cs.b.stats.commands.Add(1)
	}
}

// compatRequest is one entry of a seed POST body.
type compatRequest struct {
	Identifier  json.RawMessage `json:"identifier"`
	Subscribe   bool            `json:"subscribe"`
	Unsubscribe bool            `json:"unsubscribe"`
	Send        json.RawMessage `json:"send"`
}

// compatResult answers one compatRequest. Error is empty (and left out) on
// success.
type compatResult struct {
	Error     string `json:"error,omitempty"`
	SessionID string `json:"session_id"`
	ChanID    string `json:"chan_id,omitempty"`
}

// compatIdentifier validates a request's identifier and returns the
// identifier string for Rails: the object's compact JSON text, keys in the
// client's order, or a string's content verbatim.
func compatIdentifier(raw json.RawMessage) (string, error) {
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
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return "", errors.New(want)
		}
		text = []byte(s)
	default:
		return "", errors.New(want)
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
	return buf.String(), nil
}

func (c *compat) post(w http.ResponseWriter, r *http.Request, id string, limit int) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, c.b.cfg.maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			c.b.writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("limit %d bytes", mbe.Limit))
			return
		}
		c.b.writeError(w, http.StatusBadRequest, "bad_body", err.Error())
		return
	}
	var reqs []compatRequest
	if err := json.Unmarshal(body, &reqs); err != nil {
		c.b.writeError(w, http.StatusBadRequest, "bad_body",
			"want a JSON array of {identifier, subscribe|unsubscribe|send}: "+err.Error())
		return
	}
	cs, ok := c.session(w, r, id, true)
	if !ok {
		return
	}
	cs.setLimit(limit)
	if !cs.s.allowCommands(len(reqs)) {
		c.b.writeError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("at most %v commands per second", c.b.cfg.commandsPerSecond))
		return
	}
	out := make([]compatResult, len(reqs))
	cs.sendMu.Lock()
	for i, req := range reqs {
		out[i] = cs.apply(r, &req)
	}
	cs.sendMu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// apply performs one request. Call with cs.sendMu held.
func (cs *compatSession) apply(r *http.Request, req *compatRequest) compatResult {
	res := compatResult{SessionID: cs.sessionID}
	ident, err := compatIdentifier(req.Identifier)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.ChanID = compatChanID(ident)
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
	now := time.Now()
	switch {
	case req.Subscribe:
		cs.mu.Lock()
		if cs.ended {
			cs.mu.Unlock()
			res.Error = "the session has ended; retry to open a new one"
			return res
		}
		if ch := cs.chans[ident]; ch != nil {
			// Rails ignores a second subscribe; answer for it so the
			// client still hears that it is subscribed.
			if ch.confirmed {
				cs.pushLocked(compatEvent{typ: "connected", chanID: ch.chanID, at: now, identifier: ch.identifier})
			}
			cs.mu.Unlock()
			return res
		}
		cs.chanSeq++
		ch := &compatChan{identifier: []byte(ident), chanID: res.ChanID, order: cs.chanSeq}
		cs.chans[ident] = ch
		cs.mu.Unlock()
		if err := cs.s.up.SendCommand(r.Context(), &protocol.Command{Command: protocol.CommandSubscribe, Identifier: ident}); err != nil {
			// Upstream down: the subscribe goes out with the next link.
			cs.mu.Lock()
			ch.needSend = true
			cs.mu.Unlock()
			return res
		}
		cs.b.stats.commands.Add(1)
	case req.Unsubscribe:
		cs.mu.Lock()
		_, had := cs.chans[ident]
		delete(cs.chans, ident)
		cs.mu.Unlock()
		if had && cs.s.up.SendCommand(r.Context(), &protocol.Command{Command: protocol.CommandUnsubscribe, Identifier: ident}) == nil {
			cs.b.stats.commands.Add(1)
		}
	default:
		data, err := compactObject(req.Send)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		cs.mu.Lock()
		_, had := cs.chans[ident]
		cs.mu.Unlock()
		if !had {
			res.Error = "not subscribed to this identifier"
			return res
		}
		if err := cs.s.up.SendCommand(r.Context(), &protocol.Command{Command: protocol.CommandMessage, Identifier: ident, Data: data}); err != nil {
			res.Error = "upstream unavailable, not sent: " + err.Error()
			return res
		}
		cs.b.stats.commands.Add(1)
	}
	return res
}

// parseCursor reads an optional msg_id cursor; ok is false when malformed.
func parseCursor(v string) (n uint64, set, ok bool) {
	if v == "" {
		return 0, false, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil, err == nil
}

func (c *compat) sse(w http.ResponseWriter, r *http.Request, id string, limit int) {
	last, lastSet, _ := parseCursor(r.Header.Get("Last-Event-ID"))
	cs, ok := c.session(w, r, id, false)
	if !ok {
		return
	}
	cs.setLimit(limit)
	rc := startEventStream(w)

	ctx, detach := cs.s.attach(r.Context(), downSSE)
	defer detach()
	// Events written to the stream are not acknowledged: an EventSource
	// that reconnects names the last event it got, which acknowledges it
	// and what precedes it, and gets what follows again (while queued).
	cur := cs.cursor()
	if lastSet && cs.validCursor(last) {
		cs.ack(last)
		cur = last
	}
	buf := []byte("retry: 1000\n\n")
	buf = append(buf, "event: message\n"...)
	buf = bridgewire.AppendData(buf, fmt.Appendf(nil, `{"type":"joined","id":"%s"}`, id))
	keepAlive := time.NewTicker(c.b.cfg.keepAlive)
	defer keepAlive.Stop()
	var data []byte
	for {
		evs, _, ended, changed := cs.take(cur, maxBatch, false)
		for i := range evs {
			buf = append(buf, "event: message\nid: "...)
			buf = strconv.AppendUint(buf, evs[i].id, 10)
			buf = append(buf, '\n')
			data = evs[i].appendJSON(data[:0], true)
			buf = bridgewire.AppendData(buf, data)
		}
		if len(buf) > 0 {
			if writeEvents(w, rc, buf) != nil {
				return
			}
			buf = buf[:0]
			if len(evs) > 0 {
				cur = evs[len(evs)-1].id
				c.b.stats.framesOut.Add(uint64(len(evs)))
			}
		}
		if ended && len(evs) == 0 {
			return
		}
		if len(evs) == maxBatch {
			continue
		}
		select {
		case <-changed:
		case <-keepAlive.C:
			buf = append(buf, ": keep-alive\n\n"...)
		case <-ctx.Done():
			return // client gone, or replaced by a newer listener
		}
	}
}

// compatPolled is the body of a seed long-poll answer.
type compatPolled struct {
	Messages    []json.RawMessage `json:"messages"`
	SessionID   string            `json:"session_id"`
	Dropped     uint64            `json:"dropped"`
	QueueLength int               `json:"queue_length"`
}

func (c *compat) poll(w http.ResponseWriter, r *http.Request, id string, limit int) {
	q := r.URL.Query()
	timeout := DefaultPollTimeout
	if v := q.Get("timeout"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 || math.IsNaN(n) {
			c.b.writeError(w, http.StatusBadRequest, "bad_timeout", "timeout must be a number of seconds ≥ 0: "+v)
			return
		}
		timeout = time.Duration(min(n, MaxPollTimeout.Seconds()) * float64(time.Second))
	}
	after, afterSet, ok := parseCursor(q.Get("after"))
	if !ok {
		c.b.writeError(w, http.StatusBadRequest, "bad_after", "after must be a msg_id: "+q.Get("after"))
		return
	}
	cs, ok := c.session(w, r, id, false)
	if !ok {
		return
	}
	cs.setLimit(limit)
	ctx, detach := cs.s.attach(r.Context(), downPoll)
	defer detach()

	// Without "after", the answer starts after what listeners were handed
	// and acknowledges what it returns. With it, events up to after are
	// acknowledged and the answer starts after them, so an answer that got
	// lost is sent again.
	cur := cs.cursor()
	if afterSet && cs.validCursor(after) {
		cs.ack(after)
		cur = after
	} else {
		afterSet = false
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
wait:
	for {
		ready, ended, changed := cs.waitFor(cur)
		if ready || ended || timeout == 0 {
			break
		}
		select {
		case <-changed:
		case <-timer:
			break wait
		case <-ctx.Done():
			if r.Context().Err() != nil {
				return // the client is gone
			}
			break wait // a newer listener took over: answer now
		}
	}
	if !afterSet {
		cur = cs.cursor() // past what a newer listener may have taken meanwhile
	}
	evs, rest, _, _ := cs.take(cur, maxBatch, !afterSet)
	out := compatPolled{Messages: make([]json.RawMessage, len(evs)), SessionID: cs.sessionID, QueueLength: rest}
	for i := range evs {
		out.Messages[i] = evs[i].appendJSON(nil, false)
	}
	out.Dropped = cs.takeDropped()
	c.b.stats.framesOut.Add(uint64(len(evs)))
	writeJSON(w, http.StatusOK, out)
}
