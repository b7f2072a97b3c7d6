//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/cableway/cableway/internal/bridgewire"
)

// client opens sessions on the bridge and reads their SSE streams: session
// creation, subscription and acknowledgements through net/http clients
// (one per source address, keep-alive), each SSE stream over a raw TCP
// connection read with one bufio.Reader, its chunked encoding and `data:`
// lines scanned by hand. Every broadcast frame's seq is checked.
type client struct {
	base  string // http://127.0.0.1:port
	host  string // 127.0.0.1:port
	t0    time.Time
	perIP int
	https []*http.Client // by source address index

	frames atomic.Uint64 // broadcast frames received, all sessions
	// hist, when set (the soak), gets every broadcast's latency.
	hist *latHist
}

// maxSources bounds the source addresses: 127.0.0.10 … 127.0.0.254.
const maxSources = 245

// srcAddr is source address i (127.0.0.10 + i).
func srcAddr(i int) net.IP { return net.IPv4(127, 0, 0, byte(10+i)) }

func newClient(base string, t0 time.Time, perIP, k int) (*client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	n := (k + perIP - 1) / perIP
	if n > maxSources {
		return nil, fmt.Errorf("%d sessions at %d per source address need %d addresses; at most %d (raise -per-ip and the bridge's --max-sessions-per-ip)", k, perIP, n, maxSources)
	}
	c := &client{base: base, host: u.Host, t0: t0, perIP: perIP}
	for i := range n {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: srcAddr(i)}, Timeout: 10 * time.Second}
		c.https = append(c.https, &http.Client{Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConnsPerHost: max(64, perIP), // long-poll sessions hold one each
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		}})
	}
	return c, nil
}

func (c *client) close() {
	for _, h := range c.https {
		h.CloseIdleConnections()
	}
}

// session is one bridge session and its SSE stream.
type session struct {
	c     *client
	idx   int
	src   int // source address index
	sid   string
	token string
	poll  bool // the soak's long-poll sessions: read by polling, not SSE

	confirmed chan struct{}
	quit      chan struct{} // closed by close
	closing   atomic.Bool
	epoch     atomic.Uint64 // the session's epoch, from the first event id
	cursor    atomic.Uint64 // the bridge's seq of the last event read (its id)
	ackedTo   uint64        // the acker's

	resetNext bool   // reader only: the event being read is a reset
	openNext  bool   // reader only: the event being read is the session's (one-request open)
	pend      []byte // reader only: a line split across reads

	mu       sync.Mutex
	last     uint64 // highest broadcast seq received
	from, to uint64 // this phase's broadcasts: from … to
	got      uint64 // distinct broadcasts of this phase received
	dup      uint64 // frames at or below last: duplicated (or out of order)
	gaps     uint64 // soak: broadcasts skipped so far (seen a later one)
	record   bool   // record latencies
	lat      []int64
	lastRecv int64  // ns since t0, last broadcast frame received
	doneAt   int64  // ns since t0 when the phase's last broadcast arrived
	dead     string // why the stream ended for good ("" while it runs)
	nc       net.Conn
	direct   *websocket.Conn // -open-mode direct: the WebSocket to the feeder
	// reconnects counts streams that ended without a reset and were
	// resumed from the last event id, as EventSource does.
	reconnects uint64
}

func (c *client) newSession(idx int) *session {
	return &session{c: c, idx: idx, src: idx / c.perIP, confirmed: make(chan struct{}), quit: make(chan struct{})}
}

// statusError is an answer with an unexpected HTTP status.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// create is POST /sessions.
func (s *session) create(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.base+"/sessions", nil)
	if err != nil {
		return err
	}
	resp, err := s.c.https[s.src].Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("POST /sessions from %v: HTTP %d %s", srcAddr(s.src), resp.StatusCode, bytes.TrimSpace(body))}
	}
	var created struct{ SID, Token string }
	if err := json.Unmarshal(body, &created); err != nil || created.SID == "" || created.Token == "" {
		return fmt.Errorf("POST /sessions: bad answer %q", body)
	}
	s.sid, s.token = created.SID, created.Token
	return nil
}

// openStream opens the SSE stream (at lastEventID unless ""), and answers
// its reader once the head is read.
func (s *session) openStream(ctx context.Context, lastEventID string) (*bufio.Reader, bool, error) {
	return s.get(ctx, "/sessions/"+s.sid+"/sse?token="+s.token, lastEventID)
}

// get sends GET target for an event stream on a connection of its own and
// answers its reader once a 200 head is read.
func (s *session) get(ctx context.Context, target, lastEventID string) (*bufio.Reader, bool, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: srcAddr(s.src)}}
	nc, err := d.DialContext(ctx, "tcp", s.c.host)
	if err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		nc.Close()
		return nil, false, errors.New("closed")
	}
	s.nc = nc
	s.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	hdr := ""
	if lastEventID != "" {
		hdr = "Last-Event-ID: " + lastEventID + "\r\n"
	}
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n%s\r\n", target, s.c.host, hdr)
	br := bufio.NewReaderSize(nc, 16<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, false, fmt.Errorf("GET sse: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		nc.Close()
		return nil, false, fmt.Errorf("GET sse: HTTP %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), bytes.TrimSpace(body))
	}
	// http.ReadResponse consumed only the head: the body is read raw from
	// br, chunk by chunk (or to EOF without chunking).
	chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
	nc.SetDeadline(time.Time{})
	return br, chunked, nil
}

// attach opens the SSE stream, subscribes to the bench channel and waits
// for the confirmation to come through the stream.
func (s *session) attach(ctx context.Context) error {
	br, chunked, err := s.openStream(ctx, "")
	if err != nil {
		return err
	}
	go s.readLoop(br, chunked)

	sub := `[{"cseq":1,"frame":{"command":"subscribe","identifier":` + strconv.Quote(benchIdentifier) + `}}]`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.base+"/sessions/"+s.sid+"/send?token="+s.token, strings.NewReader(sub))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.c.https[s.src].Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST send (subscribe): HTTP %d %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	select {
	case <-s.confirmed:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		why := s.dead
		s.mu.Unlock()
		return fmt.Errorf("no confirm_subscription through the SSE stream (stream: %q): %w", why, ctx.Err())
	}
}

// openOne opens the session in one request (GET /sessions/sse, which
// creates it, subscribes to the bench channel and streams), and waits for
// the confirmation to come through the stream.
func (s *session) openOne(ctx context.Context) error {
	br, chunked, err := s.get(ctx, bridgewire.OpenSSEPath+"?"+bridgewire.SubscribeParam+"="+url.QueryEscape(benchIdentifier), "")
	if err != nil {
		return err
	}
	go s.readLoop(br, chunked)
	select {
	case <-s.confirmed:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		why := s.dead
		s.mu.Unlock()
		return fmt.Errorf("no confirm_subscription through the SSE stream (stream: %q): %w", why, ctx.Err())
	}
}

// openDirect opens the session as a direct WebSocket client of the feeder
// would, without the bridge: the handshake, the welcome, the subscribe and
// its confirmation. It is the floor of any open that dials an upstream
// per session.
func (s *session) openDirect(ctx context.Context, feederURL string) error {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: srcAddr(s.src)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	c, _, err := websocket.Dial(ctx, feederURL, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"actioncable-v1-json"}})
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		c.CloseNow()
		return errors.New("closed")
	}
	s.direct = c
	s.mu.Unlock()
	subscribe := `{"command":"subscribe","identifier":` + strconv.Quote(benchIdentifier) + `}`
	for welcomed := false; ; {
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		switch {
		case !welcomed && bytes.Contains(data, []byte(`"welcome"`)):
			welcomed = true
			if err := c.Write(ctx, websocket.MessageText, []byte(subscribe)); err != nil {
				return err
			}
		case bytes.Contains(data, confirmKey):
			return nil
		}
	}
}

// close ends the SSE stream (the session stays until the bridge stops).
func (s *session) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Swap(true) {
		return
	}
	close(s.quit)
	if s.nc != nil {
		s.nc.Close()
	}
	if s.direct != nil {
		s.direct.CloseNow()
	}
}

// retryDelay is the reconnection delay the bridge announces ("retry:
// 1000"); maxRetries bounds the attempts in a row.
const (
	retryDelay = time.Second
	maxRetries = 3
)

// readLoop reads the stream until a reset or close; a stream that ends
// otherwise is resumed at its last event id after retryDelay, as
// EventSource does.
func (s *session) readLoop(br *bufio.Reader, chunked bool) {
	for fails := 0; ; {
		err := s.readBody(br, chunked)
		if s.closing.Load() || errors.Is(err, errStop) {
			return
		}
		why := "stream ended"
		if err != nil && !errors.Is(err, io.EOF) {
			why = err.Error()
		}
		s.pend, s.resetNext, s.openNext = s.pend[:0], false, false
		for {
			if fails++; fails > maxRetries {
				s.mu.Lock()
				if s.dead == "" {
					s.dead = why
				}
				s.mu.Unlock()
				return
			}
			select {
			case <-s.quit:
				return
			case <-time.After(retryDelay):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			id := ""
			if e := s.epoch.Load(); e != 0 {
				id = strconv.FormatUint(e, 10) + ":" + strconv.FormatUint(s.cursor.Load(), 10)
			}
			br, chunked, err = s.openStream(ctx, id)
			cancel()
			if s.closing.Load() {
				return
			}
			if err == nil {
				s.mu.Lock()
				s.reconnects++
				s.mu.Unlock()
				fails = 0
				break
			}
			why = "resuming: " + err.Error()
		}
	}
}

// errStop ends the read loop after a reset event.
var errStop = errors.New("reset")

func (s *session) readBody(br *bufio.Reader, chunked bool) error {
	if !chunked {
		for {
			if _, err := br.Peek(1); err != nil {
				return err
			}
			n := br.Buffered()
			data, _ := br.Peek(n)
			if err := s.feed(data); err != nil {
				return err
			}
			br.Discard(n)
		}
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		hex, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		size, err := strconv.ParseUint(string(hex), 16, 63)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			return io.EOF
		}
		for size > 0 {
			if br.Buffered() == 0 {
				if _, err := br.Peek(1); err != nil {
					if err == io.EOF {
						err = io.ErrUnexpectedEOF // cut inside a chunk
					}
					return err
				}
			}
			n := int(min(uint64(br.Buffered()), size))
			data, _ := br.Peek(n)
			if err := s.feed(data); err != nil {
				return err
			}
			br.Discard(n)
			size -= uint64(n)
		}
		if line, err := br.ReadSlice('\n'); err != nil || len(bytes.TrimSpace(line)) != 0 {
			return fmt.Errorf("chunk not followed by CRLF (%v)", err)
		}
	}
}

// feed scans event-stream bytes line by line.
func (s *session) feed(data []byte) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			s.pend = append(s.pend, data...)
			return nil
		}
		line := data[:i]
		if len(s.pend) > 0 {
			s.pend = append(s.pend, line...)
			line = s.pend
		}
		if err := s.line(bytes.TrimSuffix(line, []byte("\r"))); err != nil {
			return err
		}
		s.pend = s.pend[:0]
		data = data[i+1:]
	}
	return nil
}

// Keys of a broadcast's message. Only broadcasts carry "seq"; the keys
// are found wherever they are, so a bridge that re-encodes frames (key
// order, spacing) is still read right.
var (
	seqKey     = []byte(`"seq":`)
	tsKey      = []byte(`"ts":`)
	confirmKey = []byte(`"confirm_subscription"`)
)

// line handles one event-stream line: ids move the cursor, data lines of
// broadcasts are checked, the confirmation is noted, a reset ends it.
func (s *session) line(l []byte) error {
	switch {
	case len(l) == 0:
		s.resetNext, s.openNext = false, false
	case bytes.HasPrefix(l, []byte("id: ")):
		if i := bytes.LastIndexByte(l, ':'); i > 3 {
			if n, m := parseUint(l[i+1:]); m > 0 {
				s.cursor.Store(n)
			}
			if s.epoch.Load() == 0 {
				if e, m := parseUint(l[4:i]); m > 0 {
					s.epoch.Store(e)
				}
			}
		}
	case bytes.Equal(l, []byte("event: reset")):
		s.resetNext = true
	case bytes.Equal(l, []byte("event: "+bridgewire.SessionEvent)):
		s.openNext = true
	case bytes.HasPrefix(l, []byte("data: ")):
		return s.data(l[len("data: "):])
	}
	return nil
}

// data handles one event's data (an SSE data line, or one frame of a
// long-poll answer): broadcasts are checked, the confirmation is noted.
func (s *session) data(d []byte) error {
	if s.openNext {
		c, err := bridgewire.ParseSession(d)
		if err != nil {
			return err
		}
		// Set before the confirmation is noticed, which is what the
		// opener waits for.
		s.sid, s.token = c.SID, c.Token
		s.epoch.Store(uint64(c.Epoch))
		return nil
	}
	if s.resetNext {
		s.mu.Lock()
		s.dead = "reset " + string(d)
		s.mu.Unlock()
		return errStop
	}
	if i := bytes.Index(d, seqKey); i >= 0 {
		seq, n := parseUint(skipSpace(d[i+len(seqKey):]))
		j := bytes.Index(d, tsKey)
		if n == 0 || j < 0 {
			return fmt.Errorf("bad broadcast frame %q", d)
		}
		ts, m := parseUint(skipSpace(d[j+len(tsKey):]))
		if m == 0 {
			return fmt.Errorf("bad broadcast frame %q", d)
		}
		s.broadcast(seq, int64(ts))
		return nil
	}
	if bytes.Contains(d, confirmKey) {
		select {
		case <-s.confirmed:
		default:
			close(s.confirmed)
		}
	}
	return nil
}

func skipSpace(b []byte) []byte { return bytes.TrimLeft(b, " \t") }

// parseUint reads the decimal digits at the start of b.
func parseUint(b []byte) (uint64, int) {
	var n uint64
	i := 0
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		n = n*10 + uint64(b[i]-'0')
		i++
	}
	return n, i
}

// broadcast checks broadcast seq, published at ts.
func (s *session) broadcast(seq uint64, ts int64) {
	now := int64(time.Since(s.c.t0))
	s.mu.Lock()
	if seq <= s.last {
		s.dup++
	} else {
		if first := max(s.last+1, s.from); seq > first && s.to == soakOpen {
			s.gaps += seq - first // the soak's running count of frames skipped
		}
		s.last = seq
		if s.from <= seq && seq <= s.to {
			s.got++
			if s.record {
				s.lat = append(s.lat, now-ts)
			}
		}
	}
	s.lastRecv = now
	if h := s.c.hist; h != nil && s.from <= seq {
		h.add(now - ts)
	}
	if s.doneAt == 0 && s.last >= s.to {
		s.doneAt = now
	}
	s.mu.Unlock()
	s.c.frames.Add(1)
}

// startPhase expects broadcasts from … to.
func (s *session) startPhase(from, to uint64, record bool) {
	s.mu.Lock()
	s.from, s.to, s.got, s.dup, s.gaps, s.record, s.lat, s.doneAt, s.reconnects = from, to, 0, 0, 0, record, nil, 0, 0
	if s.last >= to {
		s.doneAt = int64(time.Since(s.c.t0))
	}
	s.mu.Unlock()
}

// soakOpen is the end of a soak's phase while it runs: broadcasts go on.
const soakOpen = ^uint64(0)

// endPhase sets the phase's last broadcast, once it is known (the soak's).
func (s *session) endPhase(to uint64) {
	s.mu.Lock()
	s.to = to
	if s.doneAt == 0 && s.last >= to {
		s.doneAt = int64(time.Since(s.c.t0))
	}
	s.mu.Unlock()
}

// running is the session's count so far in a phase that goes on: frames
// received, duplicated and skipped (a later one came first), and why its
// stream ended ("" while it runs).
func (s *session) running() (got, dup, gaps uint64, dead string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got, s.dup, s.gaps, s.dead
}

// phaseResult is one session's figures for a phase.
type phaseResult struct {
	got, dup, lost   uint64
	lat              []int64
	lastRecv, doneAt int64
	dead             string
	reconnects       uint64
}

func (s *session) result() phaseResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return phaseResult{got: s.got, dup: s.dup, lost: s.to - s.from + 1 - s.got, lat: s.lat,
		lastRecv: s.lastRecv, doneAt: s.doneAt, dead: s.dead, reconnects: s.reconnects}
}

// settled reports whether the session has the phase's last broadcast or
// its stream is over.
func (s *session) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doneAt != 0 || s.dead != ""
}

// ack is POST /sessions/{sid}/ack at the stream's cursor, if it moved.
func (s *session) ack(ctx context.Context) error {
	cur := s.cursor.Load()
	if cur <= s.ackedTo {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		s.c.base+"/sessions/"+s.sid+"/ack?token="+s.token+"&after="+strconv.FormatUint(cur, 10), nil)
	if err != nil {
		return err
	}
	resp, err := s.c.https[s.src].Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("POST ack: HTTP %d", resp.StatusCode)
	}
	s.ackedTo = cur
	return nil
}

// acker acknowledges every session's cursor once per interval while it
// moves, as the Go client does, with workers at a time; it returns at ctx's end
// with the number of failed acknowledgements.
func acker(ctx context.Context, sessions []*session, interval time.Duration, workers int) (acks, failed uint64) {
	if interval <= 0 {
		<-ctx.Done()
		return 0, 0
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return acks, failed
		case <-t.C:
		}
		var wg sync.WaitGroup
		var n, bad atomic.Uint64
		next := atomic.Int64{}
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(sessions) || ctx.Err() != nil {
						return
					}
					s := sessions[i]
					if s.poll || s.closing.Load() || s.cursor.Load() <= s.ackedTo {
						continue
					}
					if err := s.ack(ctx); err != nil {
						if ctx.Err() == nil {
							bad.Add(1)
						}
					} else {
						n.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		acks += n.Load()
		failed += bad.Load()
	}
}

// ackAll acknowledges every session's cursor once, now.
func ackAll(ctx context.Context, sessions []*session) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, s := range sessions {
		if s.cursor.Load() > s.ackedTo {
			s.ack(actx)
		}
	}
}

// openAll runs f for every session, conc at a time, and returns the first
// error.
func openAll(ctx context.Context, sessions []*session, conc int, f func(context.Context, *session) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, len(sessions)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(sessions) {
					return
				}
				if err := f(ctx, sessions[i]); err != nil {
					cancel(fmt.Errorf("session %d: %w", i, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}
