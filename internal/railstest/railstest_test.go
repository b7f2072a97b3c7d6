//go:build unix

package railstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testCtx bounds every wait of a test: a bound for hangs, generous enough
// for Rails to start on a loaded machine.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// client is a raw ActionCable client: it only moves frames, so the tests see
// exactly the bytes Rails sends.
type client struct {
	t   *testing.T
	ctx context.Context
	c   *websocket.Conn
}

func dialHeader(s *Server, kv ...string) http.Header {
	h := http.Header{"Origin": {s.Origin()}}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func tryDial(ctx context.Context, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	return websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPHeader:   h,
		Subprotocols: []string{"actioncable-v1-json", "actioncable-unsupported"},
	})
}

// dial connects to the server with the given headers and checks the welcome.
func dial(t *testing.T, ctx context.Context, s *Server, h http.Header) *client {
	t.Helper()
	c := dialRaw(t, ctx, s, h)
	c.expect(`{"type":"welcome"}`)
	return c
}

// dialRaw connects without reading anything.
func dialRaw(t *testing.T, ctx context.Context, s *Server, h http.Header) *client {
	t.Helper()
	c, _, err := tryDial(ctx, s.CableURL(), h)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &client{t: t, ctx: ctx, c: c}
}

// readAny returns the next frame, pings included.
func (c *client) readAny() (string, error) {
	_, b, err := c.c.Read(c.ctx)
	return string(b), err
}

// read returns the next frame that is not a ping.
func (c *client) read() string {
	c.t.Helper()
	for {
		b, err := c.readAny()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if !strings.HasPrefix(b, `{"type":"ping",`) {
			return b
		}
	}
}

func (c *client) expect(want string) {
	c.t.Helper()
	if got := c.read(); got != want {
		c.t.Fatalf("got frame\n  %s\nwant\n  %s", got, want)
	}
}

// expectClose reads until the connection ends and returns the close status
// (-1 when the socket ended without a close frame). Non-ping frames seen on
// the way are returned too.
func (c *client) expectClose() (websocket.StatusCode, []string) {
	c.t.Helper()
	var frames []string
	for {
		b, err := c.readAny()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				c.t.Fatalf("connection still open: %v", err)
			}
			return websocket.CloseStatus(err), frames
		}
		if !strings.HasPrefix(b, `{"type":"ping",`) {
			frames = append(frames, b)
		}
	}
}

func (c *client) send(command string, identifier string, data any) {
	c.t.Helper()
	msg := map[string]string{"command": command, "identifier": identifier}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			c.t.Fatal(err)
		}
		msg["data"] = string(b)
	}
	b, err := json.Marshal(msg)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.c.Write(c.ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// subscribe sends a subscribe command and checks the answer, which must be
// "confirm_subscription" or "reject_subscription".
func (c *client) subscribe(identifier, answer string) {
	c.t.Helper()
	c.send("subscribe", identifier, nil)
	c.expect(typed(identifier, answer))
}

// typed is a confirm_subscription / reject_subscription frame for identifier.
func typed(identifier, typ string) string {
	return `{"identifier":` + quote(identifier) + `,"type":"` + typ + `"}`
}

// msg is the frame carrying message (raw JSON, in Rails' key order) to the
// subscription identifier.
func msg(identifier, message string) string {
	return `{"identifier":` + quote(identifier) + `,"message":` + message + `}`
}

func quote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := testCtx(t)

	resp, err := http.Get(s.HTTPURL() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("/health = %d %q, want 200 ok", resp.StatusCode, body)
	}

	st, err := s.Stats(ctx)
	if err != nil || st != (Stats{}) {
		t.Errorf("Stats = %+v, %v; want zeros", st, err)
	}
	if err := s.Broadcast(ctx, "nobody:listens", map[string]any{"a": 1}); err != nil {
		t.Errorf("Broadcast: %v", err)
	}
	if err := s.BroadcastMany(ctx, "nobody:listens", []any{1, "two", nil}); err != nil {
		t.Errorf("BroadcastMany: %v", err)
	}
	if err := s.post(ctx, "/broadcast", map[string]any{"message": 1}); err == nil || !strings.Contains(err.Error(), "status 400") {
		t.Errorf("broadcast without stream: %v, want status 400", err)
	}
	if !strings.Contains(s.Log(), "HTTP broadcast of 3 message(s) to nobody:listens") {
		t.Errorf("Log() lacks the broadcast line:\n%s", s.Log())
	}
	if got, want := s.CableURL(), fmt.Sprintf("ws://127.0.0.1:%d/cable", s.Port()); got != want {
		t.Errorf("CableURL = %q, want %q", got, want)
	}
}

func TestChat(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := testCtx(t)

	alice := dial(t, ctx, s, dialHeader(s, "Cookie", "user=alice"))
	if p := alice.c.Subprotocol(); p != "actioncable-v1-json" {
		t.Errorf("subprotocol = %q, want actioncable-v1-json", p)
	}
	lobby := `{"channel":"ChatChannel","room":"lobby"}`
	alice.subscribe(lobby, "confirm_subscription")

	alice.send("message", lobby, map[string]any{"action": "speak", "text": "hi"})
	alice.expect(msg(lobby, `{"user":"alice","text":"hi","room":"lobby"}`))

	if err := s.Broadcast(ctx, "chat:lobby", []any{1, "x"}); err != nil {
		t.Fatal(err)
	}
	alice.expect(msg(lobby, `[1,"x"]`))

	alice.subscribe(`{"channel":"RejectChannel"}`, "reject_subscription")
	alice.subscribe(`{"channel":"ChatChannel"}`, "reject_subscription") // no room

	st, err := s.Stats(ctx)
	if err != nil || st != (Stats{Connections: 1, ConnectsTotal: 1}) {
		t.Errorf("Stats = %+v, %v; want 1 open connection", st, err)
	}
	alice.c.Close(websocket.StatusNormalClosure, "")
	if _, err := s.WaitStats(ctx, func(st Stats) bool { return st.Connections == 0 }); err != nil {
		t.Error(err)
	}
}

// Rails answers nothing at all to these commands; a client must not wait
// for a reply. The probe afterwards shows the connection is still usable.
func TestSilentCommands(t *testing.T) {
	t.Parallel()
	// One worker thread: with several, Rails 6.1 may run the final
	// unsubscribe before the duplicate subscribe, which then is a fresh
	// subscription and is confirmed.
	s := Start(t, WithOrderedDelivery())
	ctx := testCtx(t)
	c := dial(t, ctx, s, dialHeader(s, "X-User", "erin"))
	lobby := `{"channel":"ChatChannel","room":"lobby"}`
	c.subscribe(lobby, "confirm_subscription")

	c.send("subscribe", lobby, nil)                                                  // duplicate subscription
	c.send("subscribe", `{"channel":"NoSuchChannel"}`, nil)                          // unknown channel
	c.send("message", lobby, map[string]any{"action": "nope"})                       // unknown action
	c.send("unsubscribe", `{"channel":"NumbersChannel"}`, nil)                       // not subscribed
	if err := c.c.Write(ctx, websocket.MessageText, []byte("garbage")); err != nil { // not JSON
		t.Fatal(err)
	}
	c.send("unsubscribe", lobby, nil) // no confirmation either

	echo := `{"channel":"EchoChannel"}`
	c.send("subscribe", echo, nil)
	c.expect(msg(echo, `{"params":{}}`))
	c.expect(typed(echo, "confirm_subscription"))
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := testCtx(t)
	echo := `{"channel":"EchoChannel"}`

	accepted := []struct {
		name, url, user string
		header          []string
	}{
		{"cookie", "", "alice", []string{"Cookie", "user=alice"}},
		{"token", "?token=secret-bob", "bob", nil},
		{"bearer", "", "carol", []string{"Authorization", "Bearer secret-carol"}},
		{"x-user", "", "dave", []string{"X-User", "dave"}},
		{"cookie wins", "?token=secret-bob", "alice", []string{"Cookie", "user=alice"}},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := tryDial(ctx, s.CableURL()+tc.url, dialHeader(s, tc.header...))
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			cl := &client{t: t, ctx: ctx, c: c}
			cl.expect(`{"type":"welcome"}`)
			cl.send("subscribe", echo, nil)
			cl.expect(msg(echo, `{"params":{}}`))
			cl.expect(typed(echo, "confirm_subscription"))
			cl.send("message", echo, map[string]any{"action": "echo"})
			cl.expect(msg(echo, `{"user":"`+tc.user+`"}`))
		})
	}

	rejected := []struct {
		name, url string
		header    []string
	}{
		{"nothing", "", nil},
		{"bad token", "?token=alice", nil},
		{"bad token beats x-user", "?token=secret-", []string{"X-User", "dave"}},
		{"basic auth", "", []string{"Authorization", "Basic YTpi"}},
		{"empty cookie", "", []string{"Cookie", "user="}},
	}
	for _, tc := range rejected {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := tryDial(ctx, s.CableURL()+tc.url, dialHeader(s, tc.header...))
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			cl := &client{t: t, ctx: ctx, c: c}
			// No welcome: the first and only frame is the disconnect.
			code, frames := cl.expectClose()
			want := []string{`{"type":"disconnect","reason":"unauthorized","reconnect":false}`}
			if code != websocket.StatusNormalClosure || !slices.Equal(frames, want) {
				t.Errorf("got %v %q, want close 1000 after %q", code, frames, want)
			}
		})
	}

	st, err := s.WaitStats(ctx, func(st Stats) bool { return st.Connections == 0 })
	want := Stats{ConnectsTotal: len(accepted), UnauthorizedTotal: len(rejected)}
	if err != nil || st != want {
		t.Errorf("Stats = %+v, %v; want %+v", st, err, want)
	}
}

func TestEcho(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := testCtx(t)
	c := dial(t, ctx, s, dialHeader(s, "X-User", "alice"))

	// Params keep their order and nesting, and Rails repeats the identifier
	// string exactly as sent.
	id := `{"channel":"EchoChannel","z":1,"a":[1,"é"],"m":{"y":null,"b":true}}`
	c.send("subscribe", id, nil)
	c.expect(msg(id, `{"params":{"z":1,"a":[1,"é"],"m":{"y":null,"b":true}}}`))
	c.expect(typed(id, "confirm_subscription"))

	c.send("message", id, map[string]any{"action": "echo", "n": 1})
	c.expect(msg(id, `{"n":1,"user":"alice"}`))

	if err := s.Broadcast(ctx, "echo:alice", "plain string"); err != nil {
		t.Fatal(err)
	}
	c.expect(msg(id, `"plain string"`))
}

func TestOrigins(t *testing.T) {
	t.Parallel()
	expect404 := func(t *testing.T, s *Server, origin string) {
		ctx := testCtx(t)
		t.Helper()
		h := http.Header{"Cookie": {"user=alice"}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := tryDial(ctx, s.CableURL(), h)
		if err == nil {
			c.CloseNow()
			t.Fatalf("origin %q accepted", origin)
		}
		if resp == nil || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("origin %q: %v, want HTTP 404", origin, err)
		}
		if body, _ := io.ReadAll(resp.Body); string(body) != "Page not found" {
			t.Errorf("404 body = %q", body)
		}
	}

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		s := Start(t)
		ctx := testCtx(t)
		expect404(t, s, "http://evil.example")
		expect404(t, s, "") // no Origin header at all
		expect404(t, s, "https://127.0.0.1:"+strconv.Itoa(s.Port()))
		dial(t, ctx, s, http.Header{"Origin": {"http://localhost:1"}, "Cookie": {"user=a"}})
		// Refused handshakes never reach Connection#connect.
		if st, err := s.Stats(ctx); err != nil || st.ConnectsTotal != 1 || st.UnauthorizedTotal != 0 {
			t.Errorf("Stats = %+v, %v", st, err)
		}
	})
	t.Run("explicit", func(t *testing.T) {
		t.Parallel()
		s := Start(t, WithAllowedOrigins("http://app.example", "http://other.example"))
		ctx := testCtx(t)
		expect404(t, s, "http://localhost:"+strconv.Itoa(s.Port()))
		dial(t, ctx, s, http.Header{"Origin": {"http://other.example"}, "Cookie": {"user=a"}})
		dial(t, ctx, s, http.Header{"Origin": {s.Origin()}, "Cookie": {"user=a"}}) // same as Host
	})
	t.Run("any", func(t *testing.T) {
		t.Parallel()
		s := Start(t, WithAllowedOrigins("*"))
		ctx := testCtx(t)
		dial(t, ctx, s, http.Header{"Cookie": {"user=a"}})
	})
}

func TestPing(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := testCtx(t)
	c := dial(t, ctx, s, dialHeader(s, "X-User", "alice"))

	re := regexp.MustCompile(`^\{"type":"ping","message":(\d+)\}$`)
	var at []time.Time
	for len(at) < 2 {
		b, err := c.readAny()
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindStringSubmatch(b)
		if m == nil {
			t.Fatalf("unexpected frame %s", b)
		}
		now := time.Now()
		if sec, _ := strconv.ParseInt(m[1], 10, 64); sec < now.Unix()-2 || sec > now.Unix()+1 {
			t.Errorf("ping time %d, now %d", sec, now.Unix())
		}
		at = append(at, now)
	}
	// One timer beats all connections every 3 s, so the first ping comes
	// anywhere within 3 s of the welcome; then every 3 s.
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < 2500*time.Millisecond || d > 4*time.Second {
			t.Errorf("ping interval %v, want about 3s", d)
		}
	}
}

// Stop and Kill both end the socket without a WebSocket close frame: Puma
// does not know about hijacked sockets and Rails 6.1 does not close them.
func TestStopKillRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := testCtx(t)
	port, url := s.Port(), s.CableURL()

	for _, stop := range []struct {
		name string
		fn   func()
	}{{"stop", s.Stop}, {"kill", s.Kill}} {
		c := dial(t, ctx, s, dialHeader(s, "X-User", "alice"))
		s.mu.Lock()
		pgid := s.cmd.Process.Pid
		s.mu.Unlock()

		stop.fn()
		if code, frames := c.expectClose(); code != -1 || len(frames) != 0 {
			t.Errorf("%s: close status %v after %q, want no close frame (-1)", stop.name, code, frames)
		}
		if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s: process group %d still exists (%v)", stop.name, pgid, err)
		}

		s.Restart(t)
		if s.Port() != port || s.CableURL() != url {
			t.Fatalf("restart moved from %d to %d", port, s.Port())
		}
		if st, err := s.Stats(ctx); err != nil || st != (Stats{}) {
			t.Errorf("Stats after restart = %+v, %v; want zeros", st, err)
		}
	}
	dial(t, ctx, s, dialHeader(s, "X-User", "alice"))
	if n := strings.Count(s.Log(), "--- railstest: starting on port"); n != 3 {
		t.Errorf("log shows %d starts, want 3", n)
	}
	s.Stop()
	s.Stop() // no-op
}

func TestDisconnect(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := testCtx(t)
	a1 := dial(t, ctx, s, dialHeader(s, "X-User", "alice"))
	a2 := dial(t, ctx, s, dialHeader(s, "X-User", "alice"))
	bob := dial(t, ctx, s, dialHeader(s, "X-User", "bob"))
	// Rails 6.1 subscribes each connection to its internal channel (what
	// remote disconnects use) asynchronously after the welcome; a confirmed
	// subscription shows the connection is fully set up.
	echo := `{"channel":"EchoChannel"}`
	for _, c := range []*client{a1, a2} {
		c.send("subscribe", echo, nil)
		c.expect(msg(echo, `{"params":{}}`))
		c.expect(typed(echo, "confirm_subscription"))
	}

	if err := s.Disconnect(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	// Rails 6.1: plain close 1000, no {"type":"disconnect"} message, so the
	// client cannot see reconnect=false.
	for _, c := range []*client{a1, a2} {
		if code, frames := c.expectClose(); code != websocket.StatusNormalClosure || len(frames) != 0 {
			t.Errorf("close status %v after %q, want 1000 and no frame", code, frames)
		}
	}
	bob.send("subscribe", echo, nil)
	bob.expect(msg(echo, `{"params":{}}`))
	if _, err := s.WaitStats(ctx, func(st Stats) bool { return st.Connections == 1 }); err != nil {
		t.Error(err)
	}
}

func TestRestartCable(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := testCtx(t)
	c := dial(t, ctx, s, dialHeader(s, "X-User", "alice"))
	if err := s.RestartCable(ctx); err != nil {
		t.Fatal(err)
	}
	code, frames := c.expectClose()
	want := []string{`{"type":"disconnect","reason":"server_restart","reconnect":true}`}
	if code != websocket.StatusNormalClosure || !slices.Equal(frames, want) {
		t.Errorf("got %v %q, want close 1000 after %q", code, frames, want)
	}
	c = dial(t, ctx, s, dialHeader(s, "X-User", "alice"))
	c.subscribe(`{"channel":"NumbersChannel","stream":"x"}`, "confirm_subscription")
}

func TestBurst(t *testing.T) {
	t.Parallel()
	const n = 1000
	msgs := make([]any, n)
	for i := range msgs {
		msgs[i] = i
	}
	// receive subscribes to a numbers stream, broadcasts the burst and
	// returns the numbers in arrival order.
	receive := func(t *testing.T, s *Server) []int {
		ctx := testCtx(t)
		c := dial(t, ctx, s, dialHeader(s, "X-User", "alice"))
		id := `{"channel":"NumbersChannel","stream":"s1"}`
		c.subscribe(id, "confirm_subscription")
		if err := s.BroadcastMany(ctx, "numbers:s1", msgs); err != nil {
			t.Fatal(err)
		}
		prefix := strings.TrimSuffix(msg(id, ""), "}")
		got := make([]int, 0, n)
		for len(got) < n {
			b := c.read()
			v, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(b, prefix), "}"))
			if err != nil {
				t.Fatalf("unexpected frame %s", b)
			}
			got = append(got, v)
		}
		return got
	}

	t.Run("ordered", func(t *testing.T) {
		t.Parallel()
		got := receive(t, Start(t, WithOrderedDelivery()))
		for i, v := range got {
			if v != i {
				t.Fatalf("message %d is %d, want in order", i, v)
			}
		}
	})
	t.Run("async", func(t *testing.T) {
		t.Parallel()
		got := receive(t, Start(t))
		seen, late := make([]bool, n), 0
		for i, v := range got {
			if seen[v] {
				t.Fatalf("duplicate %d", v)
			}
			seen[v] = true
			if i > 0 && v < got[i-1] {
				late++
			}
		}
		t.Logf("async adapter: %d of %d messages arrived after a later one", late, n)
	})
}

func TestRedisAdapter(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	ctx := testCtx(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	redis := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		redis.Process.Kill()
		redis.Wait()
	})
	waitRedis(t, ctx, port)

	s := Start(t, WithEnv("CABLE_ADAPTER", "redis"),
		WithEnv("REDIS_URL", fmt.Sprintf("redis://127.0.0.1:%d/0", port)))
	c := dial(t, ctx, s, dialHeader(s, "Cookie", "user=alice"))
	lobby := `{"channel":"ChatChannel","room":"lobby"}`
	c.subscribe(lobby, "confirm_subscription")
	c.send("message", lobby, map[string]any{"action": "speak", "text": "via redis"})
	c.expect(msg(lobby, `{"user":"alice","text":"via redis","room":"lobby"}`))
	if !strings.Contains(s.Log(), "adapter=redis") {
		t.Error("server did not report the redis adapter")
	}
}

// waitRedis waits until redis answers PING on port.
func waitRedis(t *testing.T, ctx context.Context, port int) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			buf := make([]byte, 7)
			_, err = conn.Write([]byte("PING\r\n"))
			if err == nil {
				_, err = io.ReadFull(conn, buf)
			}
			conn.Close()
			if err == nil && string(buf) == "+PONG\r\n" {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redis not ready: %v", err)
		case <-tick.C:
		}
	}
}
