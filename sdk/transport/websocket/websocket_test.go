//go:build !js

package websocket_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ws "github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/cableway/cableway/internal/cabletest"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCtx returns a context that ends well before the test's deadline.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, tr *websocket.Transport, req *transport.Request) transport.Conn {
	t.Helper()
	c, err := tr.Dial(testCtx(t), req)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func jsonReq(url string) *transport.Request {
	return &transport.Request{URL: url, Subprotocols: []string{protocol.SubprotocolJSON}}
}

func nextConn(t *testing.T, s *cabletest.Server) *cabletest.Conn {
	t.Helper()
	c, err := s.NextConn(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTransportName(t *testing.T) {
	if got := websocket.New().Name(); got != "websocket" {
		t.Errorf("Name() = %q", got)
	}
}

func TestDialSendsHeaders(t *testing.T) {
	s := cabletest.Start(t)
	req := jsonReq(s.URL + "?token=secret")
	req.Header = map[string][]string{
		"Cookie":        {"session=abc", "theme=dark"},
		"authorization": {"Bearer t0k"}, // not canonical: the transport fixes it
		"X-Custom":      {"one", "two"},
	}
	dial(t, websocket.New(), req)
	h := nextConn(t, s).Header()
	if got := h.Values("Cookie"); len(got) != 1 || got[0] != "session=abc; theme=dark" {
		t.Errorf("Cookie = %q, want one line", got)
	}
	if got := h.Get("Authorization"); got != "Bearer t0k" {
		t.Errorf("Authorization = %q", got)
	}
	if got := h.Values("X-Custom"); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("X-Custom = %q", got)
	}
	wantOrigin := "http://" + strings.TrimPrefix(strings.TrimSuffix(s.URL, "/cable"), "ws://")
	if got := h.Get("Origin"); got != wantOrigin {
		t.Errorf("Origin = %q, want %q", got, wantOrigin)
	}
	if req.Header["authorization"][0] != "Bearer t0k" || len(req.Header) != 3 || len(req.Header["Cookie"]) != 2 {
		t.Errorf("Dial modified the request's headers: %v", req.Header)
	}
}

func TestDialExplicitOriginWins(t *testing.T) {
	s := cabletest.Start(t)
	req := jsonReq(s.URL)
	req.Header = map[string][]string{"Origin": {"https://app.example.com"}}
	dial(t, websocket.New(), req)
	if got := nextConn(t, s).Header().Values("Origin"); len(got) != 1 || got[0] != "https://app.example.com" {
		t.Errorf("Origin = %q", got)
	}
}

func TestDialOffersSubprotocols(t *testing.T) {
	for _, tc := range []struct {
		name     string
		accepts  []string
		offer    []string
		want     string
		binary   bool
		wantSent string
	}{
		{"json", nil, []string{protocol.SubprotocolJSON}, protocol.SubprotocolJSON, false, "actioncable-v1-json"},
		{"msgpack preferred", nil, []string{protocol.SubprotocolMessagePack, protocol.SubprotocolJSON}, protocol.SubprotocolMessagePack, true, "actioncable-v1-msgpack,actioncable-v1-json"},
		{"json-only server", []string{protocol.SubprotocolJSON}, []string{protocol.SubprotocolMessagePack, protocol.SubprotocolJSON}, protocol.SubprotocolJSON, false, "actioncable-v1-msgpack,actioncable-v1-json"},
		{"server picks none", []string{}, []string{protocol.SubprotocolJSON}, "", false, "actioncable-v1-json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []cabletest.Option{}
			if tc.accepts != nil {
				opts = append(opts, cabletest.WithSubprotocols(tc.accepts...))
			}
			s := cabletest.Start(t, opts...)
			ctx := testCtx(t)
			c := dial(t, websocket.New(), &transport.Request{URL: s.URL, Subprotocols: tc.offer})
			sc := nextConn(t, s)
			if got := sc.Header().Get("Sec-WebSocket-Protocol"); got != tc.wantSent {
				t.Errorf("offered %q, want %q", got, tc.wantSent)
			}
			if c.Subprotocol() != tc.want || sc.Subprotocol() != tc.want {
				t.Fatalf("Subprotocol() = %q (server %q), want %q", c.Subprotocol(), sc.Subprotocol(), tc.want)
			}
			codec, _ := protocol.CodecFor(tc.want)
			// The welcome arrives in the codec's encoding.
			frame, err := c.ReadFrame(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var m protocol.Message
			if err := codec.DecodeMessage(frame, &m); err != nil || m.Type != protocol.TypeWelcome {
				t.Fatalf("welcome: %v %v (% x)", m.Type, err, frame)
			}
			// A command goes out in the codec's encoding and frame type.
			out, _ := codec.AppendCommand(nil, &protocol.Command{Command: protocol.CommandSubscribe, Identifier: `{"channel":"C"}`})
			if err := c.WriteFrame(ctx, out); err != nil {
				t.Fatal(err)
			}
			cmd, err := s.NextCommand(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if cmd.Command.Command != protocol.CommandSubscribe || cmd.Identifier != `{"channel":"C"}` {
				t.Errorf("server got %+v", cmd.Command)
			}
		})
	}
}

func TestDialRejectsForeignSubprotocol(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithForcedSubprotocol("chat"))
	start := time.Now()
	c, err := websocket.New().Dial(testCtx(t), jsonReq(s.URL))
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded")
	}
	if !errors.Is(err, transport.ErrUnsupportedSubprotocol) {
		t.Fatalf("err = %v, want ErrUnsupportedSubprotocol", err)
	}
	if !strings.Contains(err.Error(), `"chat"`) {
		t.Errorf("error does not name the subprotocol: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Dial took %v to refuse", d)
	}
}

func TestDialHandshakeError(t *testing.T) {
	for _, status := range []int{401, 403, 404, 429, 503} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			s := cabletest.Start(t, cabletest.WithHandshake(func(*http.Request) int { return status }))
			_, err := websocket.New().Dial(testCtx(t), jsonReq(s.URL+"?token=secret"))
			var he *transport.HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, want a *HandshakeError", err)
			}
			if he.StatusCode != status {
				t.Errorf("StatusCode = %d, want %d", he.StatusCode, status)
			}
			if want := status != 429 && status < 500; he.Permanent() != want {
				t.Errorf("Permanent() = %v, want %v", he.Permanent(), want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the query: %v", err)
			}
		})
	}
}

func TestDialContextCancelled(t *testing.T) {
	// A server that accepts TCP but never answers the upgrade.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held sync.WaitGroup
	defer held.Wait()
	held.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1)) // until the client gives up
		for {
			if _, err := c.Read(make([]byte, 512)); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = websocket.New().Dial(ctx, jsonReq("ws://"+ln.Addr().String()+"/cable"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

func TestReadLimit(t *testing.T) {
	const limit = 1024
	s := cabletest.Start(t, cabletest.WithoutWelcome())
	c := dial(t, websocket.New(websocket.WithReadLimit(limit)), jsonReq(s.URL))
	sc := nextConn(t, s)
	ctx := testCtx(t)

	at := bytes.Repeat([]byte("a"), limit)
	if err := sc.WriteText(ctx, at); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadFrame(ctx, nil)
	if err != nil {
		t.Fatalf("frame at the limit: %v", err)
	}
	if !bytes.Equal(got, at) {
		t.Fatalf("frame at the limit: got %d bytes", len(got))
	}

	if err := sc.WriteText(ctx, append(at, 'b')); err != nil {
		t.Fatal(err)
	}
	_, err = c.ReadFrame(ctx, got)
	if !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("frame one byte over: err = %v, want ErrFrameTooLarge", err)
	}
	select {
	case <-sc.Done():
	case <-ctx.Done():
		t.Fatal("server connection still open")
	}
	if code := ws.CloseStatus(sc.Err()); code != ws.StatusMessageTooBig {
		t.Errorf("server saw close status %v (%v), want 1009", code, sc.Err())
	}
}

func TestDefaultReadLimit(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithoutWelcome())
	c := dial(t, websocket.New(), jsonReq(s.URL))
	sc := nextConn(t, s)
	ctx := testCtx(t)
	if err := sc.WriteBinary(ctx, make([]byte, websocket.DefaultReadLimit)); err != nil {
		t.Fatal(err)
	}
	if b, err := c.ReadFrame(ctx, nil); err != nil || len(b) != websocket.DefaultReadLimit {
		t.Fatalf("frame at the default limit: %d bytes, %v", len(b), err)
	}
	if err := sc.WriteBinary(ctx, make([]byte, websocket.DefaultReadLimit+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFrame(ctx, nil); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithoutWelcome())
	c := dial(t, websocket.New(), jsonReq(s.URL))
	sc := nextConn(t, s)
	ctx := testCtx(t)
	frames := [][]byte{
		bytes.Repeat([]byte("x"), 700),
		bytes.Repeat([]byte("y"), 700),
		bytes.Repeat([]byte("z"), 300),
		bytes.Repeat([]byte("w"), 700),
	}
	for _, f := range frames {
		if err := sc.WriteText(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	buf, err := c.ReadFrame(ctx, nil)
	if err != nil || !bytes.Equal(buf, frames[0]) {
		t.Fatalf("frame 0: %q, %v", buf, err)
	}
	first, capacity := &buf[0], cap(buf)
	for i, f := range frames[1:] {
		buf, err = c.ReadFrame(ctx, buf)
		if err != nil || !bytes.Equal(buf, f) {
			t.Fatalf("frame %d: %q, %v", i+1, buf, err)
		}
		if &buf[0] != first || cap(buf) != capacity {
			t.Errorf("frame %d: buffer reallocated (cap %d → %d)", i+1, capacity, cap(buf))
		}
	}
	allocs := testing.AllocsPerRun(20, func() {
		if err := sc.WriteText(ctx, frames[0]); err != nil {
			t.Fatal(err)
		}
		if buf, err = c.ReadFrame(ctx, buf); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.1f allocations per frame written and read", allocs)
	if &buf[0] != first {
		t.Error("buffer reallocated for same-size frames")
	}
}

func TestWriteFrameType(t *testing.T) {
	for _, sub := range []string{protocol.SubprotocolJSON, protocol.SubprotocolMessagePack} {
		t.Run(sub, func(t *testing.T) {
			var gotType atomic.Int32
			// A raw echo of the frame type, checked through coder directly.
			mux := http.NewServeMux()
			var wg sync.WaitGroup
			t.Cleanup(wg.Wait)
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				c, err := ws.Accept(w, r, &ws.AcceptOptions{Subprotocols: []string{sub}})
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.CloseNow()
					typ, _, err := c.Read(context.Background())
					if err == nil {
						gotType.Store(int32(typ))
					}
					c.Close(ws.StatusNormalClosure, "")
				})
			})
			srv := startHTTP(t, mux)
			c := dial(t, websocket.New(), &transport.Request{URL: "ws://" + srv + "/", Subprotocols: []string{sub}})
			if err := c.WriteFrame(testCtx(t), []byte("{}")); err != nil {
				t.Fatal(err)
			}
			_, err := c.ReadFrame(testCtx(t), nil) // the server's close
			var ce *transport.CloseError
			if !errors.As(err, &ce) || ce.Code != 1000 {
				t.Fatalf("ReadFrame after the server's close: %v", err)
			}
			want := ws.MessageText
			if sub == protocol.SubprotocolMessagePack {
				want = ws.MessageBinary
			}
			if got := ws.MessageType(gotType.Load()); got != want {
				t.Errorf("frame type %v, want %v", got, want)
			}
		})
	}
}

// startHTTP serves h on a loopback port and returns its host:port.
func startHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestReadFrameCloseErrors(t *testing.T) {
	t.Run("close frame", func(t *testing.T) {
		s := cabletest.Start(t, cabletest.WithoutWelcome())
		c := dial(t, websocket.New(), jsonReq(s.URL))
		sc := nextConn(t, s)
		go sc.Close(4001, "go away")
		_, err := c.ReadFrame(testCtx(t), nil)
		var ce *transport.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "go away" {
			t.Fatalf("err = %v, want CloseError 4001 go away", err)
		}
		// The connection stays unusable.
		if _, err := c.ReadFrame(testCtx(t), nil); err == nil {
			t.Error("second ReadFrame succeeded")
		}
	})
	t.Run("drop", func(t *testing.T) {
		s := cabletest.Start(t, cabletest.WithoutWelcome())
		c := dial(t, websocket.New(), jsonReq(s.URL))
		nextConn(t, s).Drop()
		_, err := c.ReadFrame(testCtx(t), nil)
		var ce *transport.CloseError
		if !errors.As(err, &ce) || ce.Code != 1006 {
			t.Fatalf("err = %v, want CloseError 1006", err)
		}
	})
	t.Run("mid-frame", func(t *testing.T) {
		s := cabletest.Start(t, cabletest.WithoutWelcome())
		c := dial(t, websocket.New(), jsonReq(s.URL))
		if err := nextConn(t, s).DropMidFrame(300, []byte(`{"type":"ping","message":`)); err != nil {
			t.Fatal(err)
		}
		_, err := c.ReadFrame(testCtx(t), nil)
		var ce *transport.CloseError
		if !errors.As(err, &ce) || ce.Code != 1006 {
			t.Fatalf("err = %v, want CloseError 1006", err)
		}
	})
}

func TestReadFrameContextCause(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithoutWelcome())
	c := dial(t, websocket.New(), jsonReq(s.URL))
	sc := nextConn(t, s)
	cause := errors.New("test is done waiting")
	ctx, cancel := context.WithCancelCause(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadFrame(ctx, nil)
		errc <- err
	}()
	cancel(cause)
	select {
	case err := <-errc:
		if !errors.Is(err, cause) {
			t.Fatalf("err = %v, want the cause", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrame did not return after cancel")
	}
	// The connection is closed: the server sees it end.
	select {
	case <-sc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server connection still open")
	}
}

func TestWriteFrameAfterClose(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithoutWelcome())
	c := dial(t, websocket.New(), jsonReq(s.URL))
	sc := nextConn(t, s)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.WriteFrame(testCtx(t), []byte("{}")); err == nil {
		t.Fatal("WriteFrame after Close succeeded")
	}
	<-sc.Done()
	if code := ws.CloseStatus(sc.Err()); code != ws.StatusNormalClosure {
		t.Errorf("server saw %v, want a normal close", sc.Err())
	}
}

// countingTransport counts round trips and remembers the last response's
// extension header.
type countingTransport struct {
	base       http.RoundTripper
	n          atomic.Int32
	extensions atomic.Value
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	resp, err := c.base.RoundTrip(r)
	if resp != nil {
		c.extensions.Store(resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	return resp, err
}

func TestWithHTTPClient(t *testing.T) {
	s := cabletest.Start(t)
	ht := &http.Transport{}
	defer ht.CloseIdleConnections()
	rt := &countingTransport{base: ht}
	tr := websocket.New(websocket.WithHTTPClient(&http.Client{Transport: rt}))
	dial(t, tr, jsonReq(s.URL))
	dial(t, tr, jsonReq(s.URL))
	if n := rt.n.Load(); n != 2 {
		t.Errorf("%d round trips through the client, want 2", n)
	}
}

// countingConn counts the bytes read from the network.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func TestWithCompression(t *testing.T) {
	for name, mode := range map[string]ws.CompressionMode{"no context takeover": ws.CompressionNoContextTakeover, "context takeover": ws.CompressionContextTakeover} {
		t.Run(name, func(t *testing.T) {
			s := cabletest.Start(t, cabletest.WithoutWelcome(), cabletest.WithCompression(mode))
			var wire atomic.Int64
			var d net.Dialer
			ht := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return countingConn{c, &wire}, nil
			}}
			defer ht.CloseIdleConnections()
			rt := &countingTransport{base: ht}
			tr := websocket.New(websocket.WithHTTPClient(&http.Client{Transport: rt}), websocket.WithCompression(mode, 0))
			c := dial(t, tr, jsonReq(s.URL))
			sc := nextConn(t, s)
			ctx := testCtx(t)

			if got := sc.Header().Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(got, "permessage-deflate") {
				t.Errorf("client offered extensions %q", got)
			}
			if got, _ := rt.extensions.Load().(string); !strings.HasPrefix(got, "permessage-deflate") {
				t.Errorf("server answered extensions %q", got)
			}

			big := []byte(`{"identifier":"{\"channel\":\"C\"}","message":"` + strings.Repeat("compress me please ", 3000) + `"}`)
			before := wire.Load()
			if err := sc.WriteText(ctx, big); err != nil {
				t.Fatal(err)
			}
			got, err := c.ReadFrame(ctx, nil)
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("ReadFrame: %d bytes, %v", len(got), err)
			}
			if n := wire.Load() - before; n > int64(len(big)/10) {
				t.Errorf("%d-byte frame took %d bytes on the wire", len(big), n)
			}

			cmd := []byte(`{"command":"message","identifier":"{\"channel\":\"C\"}","data":"` + strings.Repeat("x", 5000) + `"}`)
			if err := c.WriteFrame(ctx, cmd); err != nil {
				t.Fatal(err)
			}
			rc, err := s.NextCommand(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rc.Data != strings.Repeat("x", 5000) {
				t.Errorf("server got data of %d bytes", len(rc.Data))
			}
		})
	}
}

func TestWithoutCompressionNoExtension(t *testing.T) {
	s := cabletest.Start(t, cabletest.WithCompression(ws.CompressionContextTakeover))
	dial(t, websocket.New(), jsonReq(s.URL))
	if got := nextConn(t, s).Header().Get("Sec-WebSocket-Extensions"); got != "" {
		t.Errorf("client offered %q without WithCompression", got)
	}
}

// silentPeer completes WebSocket handshakes and then ignores the
// connection: it never reads, never answers a close frame.
func silentPeer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				c.Close()
				continue
			}
			h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			resp := "HTTP/1.1 101 Switching Protocols\r\n" +
				"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\n" +
				"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
			c.Write([]byte(resp))
		}
	})
	return ln.Addr().String()
}

func TestCloseBoundedAgainstSilentPeer(t *testing.T) {
	addr := silentPeer(t)
	c, err := websocket.New().Dial(testCtx(t), jsonReq("ws://"+addr+"/cable"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v against a silent peer, want ≤ ~2 s", d.Round(time.Millisecond))
	}
	// A concurrent reader is unblocked too.
	if _, err := c.ReadFrame(testCtx(t), nil); err == nil {
		t.Error("ReadFrame after Close succeeded")
	}
}

func TestCloseUnblocksReader(t *testing.T) {
	addr := silentPeer(t)
	c, err := websocket.New().Dial(testCtx(t), jsonReq("ws://"+addr+"/cable"))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadFrame(context.Background(), nil)
		errc <- err
	}()
	start := time.Now()
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("ReadFrame returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrame still blocked after Close")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
}

func TestDialErrorRedactsQuery(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = websocket.New().Dial(testCtx(t), jsonReq("ws://user:pw@"+addr+"/cable?token=secret"))
	if err == nil {
		t.Fatal("Dial succeeded")
	}
	if s := err.Error(); strings.Contains(s, "secret") || strings.Contains(s, "pw") {
		t.Errorf("error leaks credentials: %v", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("the network error is not kept: %v", err)
	}
}
