//go:build unix

package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/bridge"
)

// env is a Rails app with a bridge in front of it.
type env struct {
	t      *testing.T
	rails  *railstest.Server
	bridge *bridge.Bridge
	srv    *httptest.Server
	client *http.Client
	// railsStale is how many connections Rails' /stats keeps counting
	// after they closed: ActionCable.server.restart halts the worker pool
	// that would run their disconnect callbacks.
	railsStale int
}

func newEnv(t *testing.T, opts ...bridge.Option) *env {
	t.Helper()
	return newEnvWith(t, envConfig{bridge: opts})
}

// envConfig configures newEnvWith.
type envConfig struct {
	rails  []railstest.Option
	bridge []bridge.Option
	// after, when set, runs once the bridge has served a request (the
	// response is flushed to the connection by then).
	after func(r *http.Request)
}

// newEnvWith starts Rails and a bridge in front of it. At cleanup the
// bridge is closed and Rails must report no open connection: every
// upstream socket the bridge opened has been closed.
func newEnvWith(t *testing.T, c envConfig) *env {
	t.Helper()
	rails := railstest.Start(t, c.rails...)
	opts := append([]bridge.Option{bridge.WithUpstreamBackoff(backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond})}, c.bridge...)
	b := bridge.New(rails.CableURL(), opts...)
	var h http.Handler = b
	if c.after != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.ServeHTTP(w, r)
			http.NewResponseController(w).Flush()
			c.after(r)
		})
	}
	srv := httptest.NewServer(h)
	e := &env{t: t, rails: rails, bridge: b, srv: srv, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bridge.Close: %v", err)
		}
		if err := waitFor(ctx, "no socket to Rails", func() bool { return socketsTo(rails.Port()) <= 0 }); err != nil {
			t.Errorf("%d upstream sockets left open after Close: %v", socketsTo(rails.Port()), err)
		}
		if _, err := rails.Stats(ctx); err != nil {
			return // Rails is down (a test stopped it): nothing to count
		}
		if st, err := rails.WaitStats(ctx, func(s railstest.Stats) bool { return s.Connections == e.railsStale }); err != nil {
			t.Errorf("upstream connections left open after Close: %+v, want %d (%v)", st, e.railsStale, err)
		}
	})
	return e
}

// socketsTo counts this process's open TCP sockets connected to port from
// the client side: ESTABLISHED, or CLOSE_WAIT (the peer closed and this
// side did not: a leak). Only sockets among this process's descriptors
// count: on a busy machine another process's server socket whose client
// happens to use port as its ephemeral port would look the same in
// /proc/net/tcp. It returns -1 where /proc/net/tcp is missing.
func socketsTo(port int) int {
	own := map[string]bool{} // socket inodes of this process
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if inode, ok := strings.CutPrefix(target, "socket:["); ok && err == nil {
			own[strings.TrimSuffix(inode, "]")] = true
		}
	}
	n, found := 0, false
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		found = true
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !own[f[9]] {
				continue
			}
			_, rport, _ := strings.Cut(f[2], ":")
			p, err := strconv.ParseUint(rport, 16, 16)
			if err == nil && int(p) == port && (f[3] == "01" || f[3] == "08") {
				n++
			}
		}
	}
	if !found {
		return -1
	}
	return n
}

// sessionInfo is the 201 body of POST /sessions.
type sessionInfo struct {
	SID   string `json:"sid"`
	Token string `json:"token"`
	Epoch uint32 `json:"epoch"`
}

// do sends a request to the bridge; origin "" sends none.
func (e *env) do(ctx context.Context, method, path string, header http.Header, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// create opens a session as user (Authorization: Bearer secret-user).
func (e *env) create(ctx context.Context, user string) sessionInfo {
	e.t.Helper()
	resp, body := e.do(ctx, "POST", "/sessions", http.Header{"Authorization": {"Bearer secret-" + user}}, "")
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var s sessionInfo
	if err := json.Unmarshal(body, &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

type pollResult struct {
	Epoch  uint32            `json:"epoch"`
	Frames []json.RawMessage `json:"frames"`
	Next   uint64            `json:"next"`
	Reset  bool              `json:"reset"`
	Reason string            `json:"reason"`
	Ended  bool              `json:"ended"`
}

func (e *env) poll(ctx context.Context, s sessionInfo, after uint64, timeout string) pollResult {
	e.t.Helper()
	q := url.Values{"token": {s.Token}, "after": {fmt.Sprint(after)}, "timeout": {timeout}}
	resp, body := e.do(ctx, "GET", "/sessions/"+s.SID+"/poll?"+q.Encode(), nil, "")
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("poll: %d %s", resp.StatusCode, body)
	}
	var p pollResult
	if err := json.Unmarshal(body, &p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// send posts commands with consecutive cseqs from first.
func (e *env) send(ctx context.Context, s sessionInfo, first uint64, frames ...string) (int, []byte) {
	e.t.Helper()
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, f := range frames {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"cseq":%d,"frame":%s}`, first+uint64(i), f)
	}
	buf.WriteByte(']')
	resp, body := e.do(ctx, "POST", "/sessions/"+s.SID+"/send?token="+s.Token, http.Header{"Content-Type": {"application/json"}}, buf.String())
	return resp.StatusCode, body
}

// frameType returns a frame's "type", or "message".
func frameType(f json.RawMessage) string {
	var v struct{ Type string }
	json.Unmarshal(f, &v)
	if v.Type == "" {
		return "message"
	}
	return v.Type
}

// pollUntil polls from *after until a non-ping frame satisfying ok
// arrives, advancing *after; it returns that frame.
func (e *env) pollUntil(ctx context.Context, s sessionInfo, after *uint64, ok func(json.RawMessage) bool) json.RawMessage {
	e.t.Helper()
	for ctx.Err() == nil {
		p := e.poll(ctx, s, *after, "5")
		if p.Reset || p.Ended {
			e.t.Fatalf("poll: reset=%v ended=%v", p.Reset, p.Ended)
		}
		*after = p.Next
		for _, f := range p.Frames {
			if frameType(f) != "ping" && ok(f) {
				return f
			}
		}
	}
	e.t.Fatal("deadline passed while polling")
	return nil
}

func cmd(command, identifier, data string) string {
	c := map[string]string{"command": command, "identifier": identifier}
	if data != "" {
		c["data"] = data
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// testCtx bounds every wait of a test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// request sends a request to the bridge and returns the answer with its
// body read; unlike do it reports errors instead of failing the test, so
// it may run in subtests and goroutines.
func (e *env) request(ctx context.Context, method, path string, header http.Header, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// createAs opens a session with the given request headers and returns the
// raw answer.
func (e *env) createAs(ctx context.Context, header http.Header) (*http.Response, sessionInfo, []byte, error) {
	resp, body, err := e.request(ctx, "POST", "/sessions", header, "")
	if err != nil {
		return nil, sessionInfo{}, nil, err
	}
	var s sessionInfo
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(body, &s); err != nil {
			return resp, s, body, err
		}
	}
	return resp, s, body, nil
}

// tryPoll is poll without t.Fatal.
func (e *env) tryPoll(ctx context.Context, s sessionInfo, after uint64, timeout string) (pollResult, error) {
	q := url.Values{"token": {s.Token}, "after": {fmt.Sprint(after)}, "timeout": {timeout}}
	resp, body, err := e.request(ctx, "GET", "/sessions/"+s.SID+"/poll?"+q.Encode(), nil, "")
	if err != nil {
		return pollResult{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return pollResult{}, fmt.Errorf("poll: %d %s", resp.StatusCode, body)
	}
	var p pollResult
	err = json.Unmarshal(body, &p)
	return p, err
}

// trySend posts commands with consecutive cseqs from first, without t.Fatal.
func (e *env) trySend(ctx context.Context, s sessionInfo, first uint64, frames ...string) (int, []byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, f := range frames {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"cseq":%d,"frame":%s}`, first+uint64(i), f)
	}
	buf.WriteByte(']')
	resp, body, err := e.request(ctx, "POST", "/sessions/"+s.SID+"/send?token="+url.QueryEscape(s.Token), http.Header{"Content-Type": {"application/json"}}, buf.String())
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// deleteSession ends a session.
func (e *env) deleteSession(ctx context.Context, s sessionInfo) error {
	resp, body, err := e.request(ctx, "DELETE", "/sessions/"+s.SID+"?token="+url.QueryEscape(s.Token), nil, "")
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("delete: %d %s", resp.StatusCode, body)
	}
	return nil
}

// waitFor polls cond until it holds or ctx ends (conditions with no event
// to wait on, such as the bridge's counters).
func waitFor(ctx context.Context, what string, cond func() bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// authHeader authenticates as user with Rails.
func authHeader(user string) http.Header {
	return http.Header{"Authorization": {"Bearer secret-" + user}}
}

// ---- frames as the tests see them ----

// tframe is one downstream frame, decoded for checks.
type tframe struct {
	Type       string          `json:"type"`
	Identifier string          `json:"identifier"`
	Message    json.RawMessage `json:"message"`
	Reason     string          `json:"reason"`
	Reconnect  *bool           `json:"reconnect"`

	Raw string `json:"-"` // the frame as JSON
	ID  string `json:"-"` // its SSE id ("" for none, and on other transports)
	Seq uint64 `json:"-"` // its sequence number where the transport tells it
}

// kind is the frame's type, "message" for channel messages.
func (f tframe) kind() string {
	if f.Type == "" {
		return "message"
	}
	return f.Type
}

func (f tframe) String() string {
	if f.ID != "" {
		return f.ID + " " + f.Raw
	}
	return f.Raw
}

func parseFrame(raw []byte) (tframe, error) {
	var f tframe
	if err := json.Unmarshal(raw, &f); err != nil {
		return f, fmt.Errorf("frame %q: %w", raw, err)
	}
	f.Raw = string(raw)
	return f, nil
}

// number is the "n" of a NumbersChannel message, -1 for other frames.
func (f tframe) number() int {
	var m struct{ N *int }
	if f.kind() != "message" || json.Unmarshal(f.Message, &m) != nil || m.N == nil {
		return -1
	}
	return *m.N
}

// ---- SSE client ----

// sseEvent is one SSE block, or one comment line.
type sseEvent struct {
	ID, Event, Data, Retry string
	HasID, HasData         bool
	Comment                string
	IsComment              bool
}

// sseStream reads an SSE response on a goroutine of its own, so tests
// wait for events with deadlines.
type sseStream struct {
	Resp   *http.Response
	events chan sseEvent
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc
	once   sync.Once
	err    error // why reading stopped; set before events is closed
}

// openSSE opens GET /sessions/{sid}/sse with extra headers (Last-Event-ID)
// and query parameters. A non-200 answer is returned with its body.
func (e *env) openSSE(ctx context.Context, s sessionInfo, header http.Header, query url.Values) (*sseStream, []byte, error) {
	if query == nil {
		query = url.Values{}
	}
	if s.Token != "" {
		query.Set("token", s.Token)
	}
	rctx, cancel := context.WithCancel(context.Background())
	stopDial := context.AfterFunc(ctx, cancel)
	defer stopDial()
	req, err := http.NewRequestWithContext(rctx, "GET", e.srv.URL+"/sessions/"+s.SID+"/sse?"+query.Encode(), nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, body, fmt.Errorf("sse: HTTP %d: %s", resp.StatusCode, body)
	}
	st := &sseStream{Resp: resp, events: make(chan sseEvent, 4096), stop: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go st.read(bufio.NewReader(resp.Body))
	return st, nil, nil
}

func (st *sseStream) read(br *bufio.Reader) {
	defer close(st.done)
	defer close(st.events)
	emit := func(ev sseEvent) bool {
		select {
		case st.events <- ev:
			return true
		case <-st.stop:
			return false
		}
	}
	var ev sseEvent
	has := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			st.err = err
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		switch {
		case line == "":
			if has && !emit(ev) {
				return
			}
			ev, has = sseEvent{}, false
		case strings.HasPrefix(line, ":"):
			if !emit(sseEvent{Comment: strings.TrimPrefix(line[1:], " "), IsComment: true}) {
				return
			}
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			has = true
			switch field {
			case "id":
				ev.ID, ev.HasID = value, true
			case "event":
				ev.Event = value
			case "retry":
				ev.Retry = value
			case "data":
				if ev.HasData {
					ev.Data += "\n"
				}
				ev.Data += value
				ev.HasData = true
			}
		}
	}
}

// next returns the next event or comment; io.EOF when the stream ended.
func (st *sseStream) next(ctx context.Context) (sseEvent, error) {
	select {
	case ev, ok := <-st.events:
		if !ok {
			if st.err == nil || errors.Is(st.err, io.EOF) {
				return ev, io.EOF
			}
			return ev, st.err
		}
		return ev, nil
	case <-ctx.Done():
		return sseEvent{}, fmt.Errorf("waiting for an SSE event: %w", ctx.Err())
	}
}

// nextData returns the next data event (skipping comments and retry-only
// blocks). An "event: reset" is returned as errSSEReset.
func (st *sseStream) nextData(ctx context.Context) (tframe, error) {
	for {
		ev, err := st.next(ctx)
		if err != nil {
			return tframe{}, err
		}
		if ev.Event == "reset" {
			return tframe{}, fmt.Errorf("%w: %s", errSSEReset, ev.Data)
		}
		if !ev.HasData {
			continue
		}
		f, err := parseFrame([]byte(ev.Data))
		if err != nil {
			return f, err
		}
		f.ID = ev.ID
		if _, seq, ok := strings.Cut(ev.ID, ":"); ok {
			fmt.Sscan(seq, &f.Seq)
		}
		return f, nil
	}
}

var errSSEReset = errors.New("sse: reset event")

// Close drops the stream (as a client whose connection breaks) and waits
// for the reader to stop.
func (st *sseStream) Close() {
	st.once.Do(func() {
		close(st.stop)
		st.cancel()
		<-st.done
		st.Resp.Body.Close()
	})
}

// ---- downstreams: one interface over SSE, long-poll and WebSockets ----

// downstream is a client of one bridge session.
type downstream interface {
	// next returns the next frame, pings included.
	next(ctx context.Context) (tframe, error)
	// command sends one ActionCable command given as JSON.
	command(ctx context.Context, cmd string) error
	close()
}

// nextMatch reads frames until one satisfies ok; it counts pings seen.
func nextMatch(ctx context.Context, d downstream, pings *int, ok func(tframe) bool) (tframe, error) {
	for {
		f, err := d.next(ctx)
		if err != nil {
			return f, err
		}
		if f.kind() == "ping" && pings != nil {
			*pings++
		}
		if ok(f) {
			return f, nil
		}
	}
}

// sseDown is a session read over SSE, written by POST /send.
type sseDown struct {
	e    *env
	s    sessionInfo
	st   *sseStream
	cseq uint64
	last uint64 // seq of the last sequenced frame
}

// next also checks the SSE numbering: sequenced frames carry ids
// "<epoch>:<seq>" with consecutive seqs, pings carry none.
func (d *sseDown) next(ctx context.Context) (tframe, error) {
	f, err := d.st.nextData(ctx)
	if err != nil {
		return f, err
	}
	if f.kind() == "ping" {
		if f.ID != "" {
			return f, fmt.Errorf("ping with an SSE id: %v", f)
		}
		return f, nil
	}
	if want := fmt.Sprintf("%d:%d", d.s.Epoch, d.last+1); d.last != 0 && f.ID != want {
		return f, fmt.Errorf("SSE id %q, want %q (%v)", f.ID, want, f)
	}
	if f.Seq == 0 {
		return f, fmt.Errorf("sequenced frame without an id: %v", f)
	}
	d.last = f.Seq
	return f, nil
}
func (d *sseDown) command(ctx context.Context, cmd string) error {
	d.cseq++
	code, body, err := d.e.trySend(ctx, d.s, d.cseq, cmd)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("send: %d %s", code, body)
	}
	return err
}
func (d *sseDown) close() { d.st.Close() }

// pollDown is a session read by long-polling, written by POST /send.
type pollDown struct {
	e      *env
	s      sessionInfo
	after  uint64
	queue  []tframe
	cseq   uint64
	polls  int
	frames int
}

func (d *pollDown) next(ctx context.Context) (tframe, error) {
	for len(d.queue) == 0 {
		p, err := d.e.tryPoll(ctx, d.s, d.after, "5")
		if err != nil {
			return tframe{}, err
		}
		d.polls++
		if p.Reset || p.Ended {
			return tframe{}, fmt.Errorf("poll: reset=%v ended=%v", p.Reset, p.Ended)
		}
		seq := d.after
		for _, raw := range p.Frames {
			f, err := parseFrame(raw)
			if err != nil {
				return f, err
			}
			if f.kind() != "ping" {
				seq++
				f.Seq = seq
			}
			d.queue = append(d.queue, f)
		}
		if seq != p.Next {
			return tframe{}, fmt.Errorf("poll after %d: %d sequenced frames but next=%d", d.after, seq-d.after, p.Next)
		}
		d.after = p.Next
	}
	f := d.queue[0]
	d.queue = d.queue[1:]
	return f, nil
}
func (d *pollDown) command(ctx context.Context, cmd string) error {
	d.cseq++
	code, body, err := d.e.trySend(ctx, d.s, d.cseq, cmd)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("send: %d %s", code, body)
	}
	return err
}
func (d *pollDown) close() {}

// wsDown is a WebSocket to the bridge: the proxy on / or a re-attached
// session. Frames in MessagePack are decoded with protocol.MessagePackCodec.
type wsDown struct {
	c     *ws.Conn
	codec protocol.Codec
	m     protocol.Message
	after uint64 // counts sequenced frames for re-attached sessions
}

// dialWS opens a WebSocket to path on the bridge.
func (e *env) dialWS(ctx context.Context, path string, header http.Header, subprotocols ...string) (*ws.Conn, *http.Response, error) {
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + path
	c, resp, err := ws.Dial(ctx, u, &ws.DialOptions{HTTPClient: e.client, HTTPHeader: header, Subprotocols: subprotocols})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(1 << 20)
	return c, resp, nil
}

func newWSDown(c *ws.Conn) (*wsDown, error) {
	codec, ok := protocol.CodecFor(c.Subprotocol())
	if !ok {
		return nil, fmt.Errorf("unknown subprotocol %q", c.Subprotocol())
	}
	return &wsDown{c: c, codec: codec}, nil
}

func (d *wsDown) next(ctx context.Context) (tframe, error) {
	typ, data, err := d.c.Read(ctx)
	if err != nil {
		return tframe{}, err
	}
	if d.codec.Binary() {
		if typ != ws.MessageBinary {
			return tframe{}, fmt.Errorf("got a %v frame on a MessagePack socket", typ)
		}
		if err := d.codec.DecodeMessage(data, &d.m); err != nil {
			return tframe{}, fmt.Errorf("msgpack frame %x: %w", data, err)
		}
		if data, err = (protocol.JSONCodec{}).AppendMessage(nil, &d.m); err != nil {
			return tframe{}, err
		}
	} else if typ != ws.MessageText {
		return tframe{}, fmt.Errorf("got a %v frame on a JSON socket", typ)
	}
	f, err := parseFrame(data)
	if err == nil && f.kind() != "ping" {
		d.after++
		f.Seq = d.after
	}
	return f, err
}

func (d *wsDown) command(ctx context.Context, cmd string) error {
	var c protocol.Command
	if err := (protocol.JSONCodec{}).DecodeCommand([]byte(cmd), &c); err != nil {
		return err
	}
	frame, err := d.codec.AppendCommand(nil, &c)
	if err != nil {
		return err
	}
	typ := ws.MessageText
	if d.codec.Binary() {
		typ = ws.MessageBinary
	}
	return d.c.Write(ctx, typ, frame)
}

func (d *wsDown) close() { d.c.CloseNow() }

// identifier builds an identifier string for channel with params, key
// order kept.
func identifier(channel string, params ...any) string {
	return protocol.MustIdentifier(channel, params...)
}
