package cabletest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/cableway/cableway/internal/cabletest"
	"github.com/cableway/cableway/sdk/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// client dials s with coder/websocket directly, offering subprotocols.
func client(t *testing.T, s *cabletest.Server, subprotocols ...string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(testCtx(t), s.URL, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// read reads one frame and decodes it with codec.
func read(t *testing.T, c *websocket.Conn, codec protocol.Codec) protocol.Message {
	t.Helper()
	typ, b, err := c.Read(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := websocket.MessageText; codec.Binary() && typ == want || !codec.Binary() && typ != want {
		t.Errorf("frame type %v for %s", typ, codec.Subprotocol())
	}
	var m protocol.Message
	if err := codec.DecodeMessage(b, &m); err != nil {
		t.Fatalf("decode % x: %v", b, err)
	}
	return m
}

func write(t *testing.T, c *websocket.Conn, codec protocol.Codec, cmd protocol.Command) {
	t.Helper()
	b, _ := codec.AppendCommand(nil, &cmd)
	typ := websocket.MessageText
	if codec.Binary() {
		typ = websocket.MessageBinary
	}
	if err := c.Write(testCtx(t), typ, b); err != nil {
		t.Fatal(err)
	}
}

func TestDefaults(t *testing.T) {
	for _, codec := range []protocol.Codec{protocol.JSONCodec{}, protocol.MessagePackCodec{}} {
		t.Run(codec.Subprotocol(), func(t *testing.T) {
			s := cabletest.Start(t)
			if !strings.HasPrefix(s.URL, "ws://127.0.0.1:") {
				t.Errorf("URL = %q", s.URL)
			}
			c := client(t, s, codec.Subprotocol(), "other")
			if c.Subprotocol() != codec.Subprotocol() {
				t.Fatalf("subprotocol %q", c.Subprotocol())
			}
			if m := read(t, c, codec); m.Type != protocol.TypeWelcome {
				t.Fatalf("first frame %v", m.Type)
			}
			sc, err := s.NextConn(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if sc.ID() != 1 || sc.Codec() != codec || s.Accepted() != 1 || s.Open() != 1 || s.Handshakes() != 1 {
				t.Errorf("conn %d codec %v, accepted %d open %d", sc.ID(), sc.Codec(), s.Accepted(), s.Open())
			}
			write(t, c, codec, protocol.Command{Command: protocol.CommandSubscribe, Identifier: `{"channel":"A"}`})
			if m := read(t, c, codec); m.Type != protocol.TypeConfirm || string(m.Identifier) != `{"channel":"A"}` {
				t.Errorf("answer %v %s", m.Type, m.Identifier)
			}
			write(t, c, codec, protocol.Command{Command: protocol.CommandMessage, Identifier: `{"channel":"A"}`, Data: `{"action":"x"}`})
			for _, want := range []string{protocol.CommandSubscribe, protocol.CommandMessage} {
				cmd, err := s.NextCommand(testCtx(t), nil)
				if err != nil {
					t.Fatal(err)
				}
				if cmd.Command.Command != want || cmd.Conn != sc {
					t.Errorf("command %+v, want %s", cmd.Command, want)
				}
			}
			if err := sc.Broadcast(testCtx(t), `{"channel":"A"}`, map[string]int{"n": 1}); err != nil {
				t.Fatal(err)
			}
			m := read(t, c, codec)
			var body struct {
				N int `json:"n"`
			}
			if err := m.Body.Decode(&body); err != nil || body.N != 1 {
				t.Errorf("broadcast %v: %v", m.Body, err)
			}
			c.Close(websocket.StatusNormalClosure, "")
			<-sc.Done()
			if websocket.CloseStatus(sc.Err()) != websocket.StatusNormalClosure || s.Open() != 0 {
				t.Errorf("Err() = %v, open %d", sc.Err(), s.Open())
			}
			s.Close()
			s.Close()
		})
	}
}

func TestSubprotocolChoice(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithSubprotocols(protocol.SubprotocolJSON))
	if c := client(t, s, protocol.SubprotocolMessagePack, protocol.SubprotocolJSON); c.Subprotocol() != protocol.SubprotocolJSON {
		t.Errorf("subprotocol %q", c.Subprotocol())
	}
	s = cabletest.Start(t, cabletest.WithSubprotocols())
	if c := client(t, s, protocol.SubprotocolJSON); c.Subprotocol() != "" {
		t.Errorf("subprotocol %q", c.Subprotocol())
	}
	s = cabletest.Start(t, cabletest.WithForcedSubprotocol("chat"))
	c := client(t, s, "chat")
	sc, _ := s.NextConn(testCtx(t))
	if c.Subprotocol() != "chat" || sc.Codec().Subprotocol() != protocol.SubprotocolJSON {
		t.Errorf("subprotocol %q, codec %s", c.Subprotocol(), sc.Codec().Subprotocol())
	}
}

func TestManualAnswers(t *testing.T) {
	codec := protocol.JSONCodec{}
	s := cabletest.Start(t, cabletest.WithoutWelcome(), cabletest.WithSubscribeReply(func(cmd cabletest.Command) cabletest.Reply {
		switch cmd.Identifier {
		case "reject":
			return cabletest.Reject
		case "ignore":
			return cabletest.Ignore
		}
		return cabletest.Confirm
	}))
	c := client(t, s, codec.Subprotocol())
	sc, _ := s.NextConn(testCtx(t))
	write(t, c, codec, protocol.Command{Command: protocol.CommandSubscribe, Identifier: "ignore"})
	write(t, c, codec, protocol.Command{Command: protocol.CommandSubscribe, Identifier: "reject"})
	if m := read(t, c, codec); m.Type != protocol.TypeReject || string(m.Identifier) != "reject" {
		t.Errorf("first frame %v %s, want no welcome and no answer to ignore", m.Type, m.Identifier)
	}
	sc.Welcome(testCtx(t))
	sc.Disconnect(testCtx(t), protocol.ReasonRemote, false)
	sc.Send(testCtx(t), &protocol.Message{Type: protocol.TypeDisconnect, Reason: "x"})
	if m := read(t, c, codec); m.Type != protocol.TypeWelcome {
		t.Errorf("frame %v", m.Type)
	}
	if m := read(t, c, codec); m.Type != protocol.TypeDisconnect || m.Reason != protocol.ReasonRemote || !m.HasReconnect || m.Reconnect {
		t.Errorf("disconnect %+v", m)
	}
	if m := read(t, c, codec); m.Type != protocol.TypeDisconnect || m.HasReconnect {
		t.Errorf("disconnect %+v", m)
	}
	sc.WriteBinary(testCtx(t), []byte{0xc1})
	if typ, b, err := c.Read(testCtx(t)); err != nil || typ != websocket.MessageBinary || string(b) != "\xc1" {
		t.Errorf("raw frame %v % x %v", typ, b, err)
	}
}

func TestPings(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithPings(10*time.Millisecond))
	c := client(t, s, protocol.SubprotocolJSON)
	read(t, c, protocol.JSONCodec{}) // welcome
	for range 3 {
		if m := read(t, c, protocol.JSONCodec{}); m.Type != protocol.TypePing || m.Body.IsZero() {
			t.Errorf("frame %v %v", m.Type, m.Body)
		}
	}
}

func TestHandshakeRefusal(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithHandshake(func(r *http.Request) int {
		if r.Header.Get("Authorization") != "Bearer ok" {
			return http.StatusUnauthorized
		}
		return 0
	}))
	_, resp, err := websocket.Dial(testCtx(t), s.URL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refused dial: %v", err)
	}
	c, _, err := websocket.Dial(testCtx(t), s.URL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer ok"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	sc, _ := s.NextConn(testCtx(t))
	if sc.Header().Get("Authorization") != "Bearer ok" || s.Handshakes() != 2 || s.Accepted() != 1 {
		t.Errorf("header %q, %d handshakes, %d accepted", sc.Header().Get("Authorization"), s.Handshakes(), s.Accepted())
	}
}

func TestDrops(t *testing.T) {
	for name, drop := range map[string]func(*cabletest.Conn) error{
		"drop":      (*cabletest.Conn).Drop,
		"mid-frame": func(sc *cabletest.Conn) error { return sc.DropMidFrame(1000, []byte(`{"type":`)) },
		"long":      func(sc *cabletest.Conn) error { return sc.DropMidFrame(1<<20, []byte(`{`)) },
	} {
		t.Run(name, func(t *testing.T) {
			s := cabletest.Start(t)
			c := client(t, s, protocol.SubprotocolJSON)
			read(t, c, protocol.JSONCodec{})
			sc, _ := s.NextConn(testCtx(t))
			if err := drop(sc); err != nil {
				t.Fatal(err)
			}
			_, _, err := c.Read(testCtx(t))
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read after the drop: %v", err)
			}
			<-sc.Done()
		})
	}
	s := cabletest.Start(t)
	client(t, s)
	sc, _ := s.NextConn(testCtx(t))
	if err := sc.DropMidFrame(3, []byte("abc")); err == nil {
		t.Error("DropMidFrame with the whole payload succeeded")
	}
}

func TestWaitsEndWithContext(t *testing.T) {
	s := cabletest.Start(t)
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
	defer cancel()
	if _, err := s.NextConn(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("NextConn: %v", err)
	}
	if _, err := s.NextCommand(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("NextCommand: %v", err)
	}
	s.Close()
	if _, err := s.NextConn(testCtx(t)); err == nil {
		t.Error("NextConn on a closed server succeeded")
	}
}

func TestCloseDropsConnections(t *testing.T) {
	s := cabletest.New()
	c := client(t, s, protocol.SubprotocolJSON)
	read(t, c, protocol.JSONCodec{})
	s.Close()
	if _, _, err := c.Read(testCtx(t)); err == nil {
		t.Error("connection survived Close")
	}
}
