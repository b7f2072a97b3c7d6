//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/internal/railstest"
)

// termClient is one downstream client of the bridge during its shutdown:
// the numbers it received, in order, and how it was told to go.
type termClient struct {
	name    string
	max     atomic.Int64 // the highest number received, -1 before any
	numbers []int        // written by the client's goroutine only
	told    string       // the disconnect it got: "<reason> reconnect=<bool>"
	after   []string     // frames after that disconnect (there should be none)
	end     error        // how its stream ended
}

func newTermClient(name string) *termClient {
	c := &termClient{name: name}
	c.max.Store(-1)
	return c
}

// frame takes one ActionCable frame (JSON) from the session.
func (c *termClient) frame(data []byte) {
	var f struct {
		Type      string
		Reason    string
		Reconnect *bool
		Message   json.RawMessage
	}
	var m struct{ N *int }
	if err := json.Unmarshal(data, &f); err != nil {
		c.after = append(c.after, "unparsable "+string(data))
		return
	}
	if f.Type == "" {
		json.Unmarshal(f.Message, &m)
	}
	switch {
	case f.Type == "ping":
	case c.told != "":
		c.after = append(c.after, string(data))
	case f.Type == "disconnect":
		c.told = fmt.Sprintf("%s reconnect=%v", f.Reason, f.Reconnect != nil && *f.Reconnect)
	case f.Type == "" && m.N != nil:
		c.number(*m.N)
	}
}

func (c *termClient) number(n int) {
	c.numbers = append(c.numbers, n)
	if int64(n) > c.max.Load() {
		c.max.Store(int64(n))
	}
}

// check reports a gap, a repeat or a wrong farewell.
func (c *termClient) check(t *testing.T) {
	t.Helper()
	for i, n := range c.numbers {
		if n != i {
			t.Errorf("%s: message %d at position %d: a frame it had was lost or repeated (numbers %v…)", c.name, n, i, c.numbers[:min(i+1, 20)])
			break
		}
	}
	if c.told != "server_restart reconnect=true" {
		t.Errorf("%s: told %q, want a server_restart disconnect with reconnect (ended by %v)", c.name, c.told, c.end)
	}
	if len(c.after) > 0 {
		t.Errorf("%s: frames after the disconnect: %v", c.name, c.after)
	}
}

// TestFaultSIGTERMEveryDownstream SIGTERMs the built binary while Rails
// streams numbered messages to clients on each downstream: SSE, long-poll,
// the WebSocket proxy and the compat API's event stream. Each must get
// every message up to its last one with no gap, then be told to reconnect
// (a server_restart disconnect with reconnect, or the compat API's
// disconnected event saying so), and nothing after; the process exits 0
// within --shutdown-timeout.
func TestFaultSIGTERMEveryDownstream(t *testing.T) {
	rails := railstest.Start(t, railstest.WithOrderedDelivery())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const shutdownTimeout = 5 * time.Second
	p := startBin(t, "bridge", "--listen", "127.0.0.1:0", "--upstream", rails.CableURL(),
		"--metrics=false", "--shutdown-timeout", shutdownTimeout.String())
	base := p.stderr.waitFor(t, ctx, binListeningRE)[1]
	const stream = `{"channel":"NumbersChannel","stream":"term"}`
	subscribe, _ := json.Marshal(map[string]string{"command": "subscribe", "identifier": stream})
	// Keep-alive, as browsers and the SDK: a long-poll after the listener
	// closed goes over a connection that is still open.
	keepAlive := &http.Client{Transport: &http.Transport{}}
	defer keepAlive.CloseIdleConnections()

	var clients []*termClient
	var wg sync.WaitGroup
	run := func(c *termClient, f func()) {
		clients = append(clients, c)
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}

	// SSE.
	{
		c := newTermClient("sse")
		s := createSession(t, ctx, base, "alice")
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/sessions/%s/sse?token=%s", base, s.SID, s.Token), nil)
		resp, err := noKeepAlive().Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("sse: %v %v", resp, err)
		}
		defer resp.Body.Close()
		events := readSSE(resp.Body)
		sendCommand(t, ctx, base, s, subscribe)
		waitConfirm(t, ctx, "sse", func() (string, bool) { ev, ok := nextEvent(t, ctx, events); return ev.data, ok })
		run(c, func() {
			c.end = errors.New("stream ended without a reset event")
			for ev := range events {
				switch {
				case ev.event == "reset": // the stream's end marker, not a frame
					c.end = fmt.Errorf("reset %s", ev.data)
				case ev.data != "":
					c.frame([]byte(ev.data))
				}
			}
		})
	}

	// Long-poll, acknowledging by its cursor.
	{
		c := newTermClient("longpoll")
		s := createSession(t, ctx, base, "bob")
		sendCommand(t, ctx, base, s, subscribe)
		var after uint64
		poll := func() ([]json.RawMessage, bool, error) {
			q := url.Values{"token": {s.Token}, "after": {fmt.Sprint(after)}, "timeout": {"5"}}
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/sessions/"+s.SID+"/poll?"+q.Encode(), nil)
			resp, err := keepAlive.Do(req)
			if err != nil {
				return nil, false, err
			}
			defer resp.Body.Close()
			var pr struct {
				Frames []json.RawMessage
				Next   uint64
				Ended  bool
				Reset  bool
			}
			if resp.StatusCode != 200 {
				return nil, false, fmt.Errorf("poll: HTTP %d", resp.StatusCode)
			}
			if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
				return nil, false, err
			}
			if pr.Reset {
				return nil, false, errors.New("poll: reset")
			}
			after = pr.Next
			return pr.Frames, pr.Ended, nil
		}
		var pending []json.RawMessage
		waitConfirm(t, ctx, "longpoll", func() (string, bool) {
			for len(pending) == 0 {
				frames, _, err := poll()
				if err != nil {
					t.Fatalf("longpoll: %v", err)
				}
				pending = frames
			}
			f := pending[0]
			pending = pending[1:]
			return string(f), true
		})
		run(c, func() {
			for _, f := range pending {
				c.frame(f)
			}
			for {
				frames, ended, err := poll()
				for _, f := range frames {
					c.frame(f)
				}
				if err != nil || ended {
					c.end = fmt.Errorf("ended=%v: %v", ended, err)
					return
				}
			}
		})
	}

	// The WebSocket proxy.
	{
		c := newTermClient("websocket proxy")
		conn, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/", &ws.DialOptions{
			HTTPHeader:   http.Header{"Authorization": {"Bearer secret-carol"}},
			Subprotocols: []string{"actioncable-v1-json"},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseNow()
		if err := conn.Write(ctx, ws.MessageText, subscribe); err != nil {
			t.Fatal(err)
		}
		waitConfirm(t, ctx, "websocket proxy", func() (string, bool) {
			_, data, err := conn.Read(ctx)
			return string(data), err == nil
		})
		run(c, func() {
			for {
				_, data, err := conn.Read(ctx)
				if err != nil {
					c.end = err
					return
				}
				c.frame(data)
			}
		})
	}

	// The compat API's event stream.
	{
		c := newTermClient("compat")
		id := "faultsSIGTERMcompatClient0001"
		auth := http.Header{"Authorization": {"Bearer secret-dave"}}
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events/"+id, nil)
		req.Header = auth.Clone()
		req.Header.Set("Accept", "text/event-stream")
		resp, err := noKeepAlive().Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("compat GET: %v %v", resp, err)
		}
		defer resp.Body.Close()
		events := readSSE(resp.Body)
		body := `[{"identifier":` + stream + `,"subscribe":true}]`
		if r, b := do(t, ctx, noKeepAlive(), "POST", base+"/events/"+id, auth, body); r.StatusCode != 200 || strings.Contains(b, "error") {
			t.Fatalf("compat subscribe: %d %s", r.StatusCode, b)
		}
		compatFrame := func(data string) (typ string, msg json.RawMessage) {
			var ev struct {
				Type    string
				Message json.RawMessage
			}
			json.Unmarshal([]byte(data), &ev)
			return ev.Type, ev.Message
		}
		for {
			ev, ok := nextEvent(t, ctx, events)
			if !ok {
				t.Fatal("compat: stream ended before the subscription was confirmed")
			}
			if typ, _ := compatFrame(ev.data); typ == "connected" {
				break
			}
		}
		run(c, func() {
			for ev := range events {
				typ, msg := compatFrame(ev.data)
				switch typ {
				case "received":
					c.frame([]byte(`{"message":` + string(msg) + `}`))
				case "disconnected":
					var m struct {
						Reason    string
						Reconnect *bool
					}
					json.Unmarshal(msg, &m)
					if c.told == "" {
						c.told = fmt.Sprintf("%s reconnect=%v", m.Reason, m.Reconnect != nil && *m.Reconnect)
					} else {
						c.after = append(c.after, ev.data)
					}
				case "":
				default:
					if c.told != "" {
						c.after = append(c.after, ev.data)
					}
				}
			}
			c.end = errors.New("stream ended")
		})
	}

	// Numbered messages, 10 every 20 ms, until the end of the test.
	stop := make(chan struct{})
	streamed := make(chan int, 1)
	go func() {
		n := 0
		defer func() { streamed <- n }()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			batch := make([]any, 10)
			for i := range batch {
				batch[i] = map[string]int{"n": n}
				n++
			}
			if rails.BroadcastMany(ctx, "numbers:term", batch) != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-streamed }()
	for _, c := range clients {
		for c.max.Load() < 50 {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: only up to message %d before the deadline", c.name, c.max.Load())
			case <-time.After(10 * time.Millisecond): // polling a counter
			}
		}
	}

	sent := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(t, ctx); code != exitOK {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	took := time.Since(sent)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("a client still reads after the process exited")
	}
	for _, c := range clients {
		t.Logf("%s: %d messages in order, then %q; ended by %v", c.name, len(c.numbers), c.told, c.end)
		c.check(t)
	}
	t.Logf("exit 0 %v after SIGTERM (--shutdown-timeout %v)", took.Round(time.Millisecond), shutdownTimeout)
	if took > shutdownTimeout+time.Second {
		t.Errorf("shutdown took %v, more than --shutdown-timeout %v", took, shutdownTimeout)
	}
	if _, err := rails.WaitStats(ctx, func(st railstest.Stats) bool { return st.Connections == 0 }); err != nil {
		t.Errorf("upstream sockets left open: %v", err)
	}
}

// sendCommand posts one command to session s.
func sendCommand(t *testing.T, ctx context.Context, base string, s sessionInfo, frame []byte) {
	t.Helper()
	batch := fmt.Sprintf(`[{"cseq":1,"frame":%s}]`, frame)
	if resp, body := do(t, ctx, noKeepAlive(), "POST", fmt.Sprintf("%s/sessions/%s/send?token=%s", base, s.SID, s.Token), nil, batch); resp.StatusCode != 200 || !strings.Contains(body, `"acked":1`) {
		t.Fatalf("send: %d %s", resp.StatusCode, body)
	}
}

// waitConfirm reads frames with next until the subscription's
// confirmation.
func waitConfirm(t *testing.T, ctx context.Context, what string, next func() (string, bool)) {
	t.Helper()
	for ctx.Err() == nil {
		data, ok := next()
		if !ok {
			t.Fatalf("%s: stream ended before the confirmation", what)
		}
		if strings.Contains(data, `"confirm_subscription"`) {
			return
		}
	}
	t.Fatalf("%s: no confirmation before the deadline", what)
}
