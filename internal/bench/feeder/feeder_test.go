package feeder_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	ws "github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/cableway/cableway/internal/bench/feeder"
	"github.com/cableway/cableway/sdk/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *feeder.Server {
	t.Helper()
	f, err := feeder.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// peer is a hand-driven client over coder/websocket.
type peer struct {
	t     *testing.T
	c     *ws.Conn
	codec protocol.Codec
	ctx   context.Context
}

func dial(t *testing.T, f *feeder.Server, codec protocol.Codec) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, _, err := ws.Dial(ctx, f.URL(), &ws.DialOptions{Subprotocols: []string{codec.Subprotocol()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if got := c.Subprotocol(); got != codec.Subprotocol() {
		t.Fatalf("subprotocol %q, want %q", got, codec.Subprotocol())
	}
	p := &peer{t: t, c: c, codec: codec, ctx: ctx}
	if m := p.next(); m.Type != protocol.TypeWelcome {
		t.Fatalf("first frame %v, want welcome", m.Type)
	}
	return p
}

const id = `{"channel":"Bench"}`

func (p *peer) send(cmd protocol.Command) {
	p.t.Helper()
	b, err := p.codec.AppendCommand(nil, &cmd)
	if err != nil {
		p.t.Fatal(err)
	}
	typ := ws.MessageText
	if p.codec.Binary() {
		typ = ws.MessageBinary
	}
	if err := p.c.Write(p.ctx, typ, b); err != nil {
		p.t.Fatal(err)
	}
}

func (p *peer) perform(data string) {
	p.send(protocol.Command{Command: protocol.CommandMessage, Identifier: id, Data: data})
}

// next returns the next frame that is not a ping.
func (p *peer) next() protocol.Message {
	p.t.Helper()
	for {
		_, b, err := p.c.Read(p.ctx)
		if err != nil {
			p.t.Fatal(err)
		}
		var m protocol.Message
		if err := p.codec.DecodeMessage(b, &m); err != nil {
			p.t.Fatalf("frame %q: %v", b, err)
		}
		if m.Type != protocol.TypePing {
			m.Identifier = append([]byte(nil), m.Identifier...)
			m.Body = m.Body.Clone()
			return m
		}
	}
}

func (p *peer) subscribe() {
	p.t.Helper()
	p.send(protocol.Command{Command: protocol.CommandSubscribe, Identifier: id})
	if m := p.next(); m.Type != protocol.TypeConfirm || string(m.Identifier) != id {
		p.t.Fatalf("got %v %s, want the confirmation of %s", m.Type, m.Identifier, id)
	}
}

// TestFloodAndPaced: both codecs; every message is a Tick with seq from
// FirstSeq up, on the subscription that asked, then {"done":n}.
func TestFloodAndPaced(t *testing.T) {
	for _, codec := range []protocol.Codec{protocol.JSONCodec{}, protocol.MessagePackCodec{}} {
		for _, action := range []string{`{"action":"flood","count":600}`, `{"action":"paced","count":600,"rate":20000}`} {
			t.Run(codec.Subprotocol()+action, func(t *testing.T) {
				f := start(t)
				p := dial(t, f, codec)
				p.subscribe()
				before := time.Now().UnixNano()
				p.perform(action)
				for i := range 600 {
					m := p.next()
					var tick feeder.Tick
					if err := m.Body.Decode(&tick); err != nil || string(m.Identifier) != id {
						t.Fatalf("message %d: %s on %s: %v", i, m.Body, m.Identifier, err)
					}
					if tick.Seq != feeder.FirstSeq+int64(i) {
						t.Fatalf("message %d: seq %d, want %d", i, tick.Seq, feeder.FirstSeq+int64(i))
					}
					if tick.Ts < before-int64(time.Second) || tick.Ts > time.Now().UnixNano() {
						t.Fatalf("message %d: ts %d not the time it was written", i, tick.Ts)
					}
				}
				var done struct{ Done int }
				if err := p.next().Body.Decode(&done); err != nil || done.Done != 600 {
					t.Fatalf("after the run: %+v, %v; want done 600", done, err)
				}
			})
		}
	}
}

func TestEcho(t *testing.T) {
	f := start(t)
	p := dial(t, f, protocol.JSONCodec{})
	p.subscribe()
	p.perform(`{"action":"echo","i":7}`)
	m := p.next()
	if string(m.Identifier) != id || string(m.Body.Bytes()) != `{"action":"echo","i":7}` {
		t.Fatalf("echo: %s on %s", m.Body, m.Identifier)
	}
}

// TestRefused: work the feeder does not do gets nothing, and the connection
// goes on: the echo asked for after it is the next frame.
func TestRefused(t *testing.T) {
	f := start(t)
	p := dial(t, f, protocol.JSONCodec{})
	p.subscribe()
	for _, data := range []string{
		`not json`,
		`{"action":"teleport"}`,
		`{"action":"flood","count":0}`,
		`{"action":"flood","count":-3}`,
		`{"action":"flood","count":1000000001}`,
		`{"action":"paced","count":10}`,
		`{"action":"paced","count":10,"rate":-1}`,
	} {
		p.perform(data)
	}
	p.perform(`{"action":"echo","after":"refusals"}`)
	if m := p.next(); !strings.Contains(string(m.Body.Bytes()), "refusals") {
		t.Fatalf("after refused work: %s, want the echo", m.Body)
	}
}

func TestNotAWebSocket(t *testing.T) {
	f := start(t)
	resp, err := http.Get("http" + strings.TrimPrefix(f.URL(), "ws"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("HTTP %d, want 400", resp.StatusCode)
	}
}

// TestCloseDuringFlood: Close returns while a flood is being written and
// leaves no goroutine behind (goleak in TestMain).
func TestCloseDuringFlood(t *testing.T) {
	f, err := feeder.Start()
	if err != nil {
		t.Fatal(err)
	}
	p := dial(t, f, protocol.JSONCodec{})
	p.subscribe()
	p.perform(`{"action":"flood","count":100000000}`)
	p.next() // the flood is on; the client reads no more
	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return during a flood")
	}
}

func TestPing(t *testing.T) {
	f, err := feeder.Start(feeder.WithPingInterval(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, f.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal("no ping:", err)
		}
		var m struct{ Type string }
		json.Unmarshal(b, &m)
		if m.Type == "ping" {
			return
		}
	}
}

func TestBadOption(t *testing.T) {
	if _, err := feeder.Start(feeder.WithPingInterval(-time.Second)); err == nil {
		t.Fatal("a negative ping interval was accepted")
	}
}
