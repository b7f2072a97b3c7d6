// Package cabletest runs an in-process ActionCable server for tests of
// protocol edge cases that Rails cannot produce.
//
// A [Server] is an httptest.Server that upgrades every request with
// github.com/coder/websocket. By default it behaves like a well-mannered
// Rails server without pings: it accepts the "actioncable-v1-json" and
// "actioncable-v1-msgpack" subprotocols (the client's preference wins),
// welcomes each connection and confirms every subscribe. Options turn each
// of these off or bend them; a test then drives the connection by hand
// through [Conn]: welcome, confirm, reject, broadcast, disconnect, raw
// frames in either opcode, close codes, abrupt drops, drops in the middle
// of a frame.
//
// Everything the server sees arrives on channels — accepted connections on
// [Server.Conns], decoded client commands on [Server.Commands] — which never
// block the server, so a test waits for what it expects with a deadline
// ([Server.NextConn], [Server.NextCommand]) and never sleeps.
//
// Frames are encoded with the codec of the negotiated subprotocol: JSON text
// frames, or MessagePack binary frames for "actioncable-v1-msgpack". A
// connection whose subprotocol is none of these (see
// [WithForcedSubprotocol]) is spoken to in JSON.
package cabletest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/protocol"
)

// Reply is how the server answers a subscribe command.
type Reply uint8

// Replies to a subscribe command.
const (
	// Confirm sends confirm_subscription.
	Confirm Reply = iota
	// Reject sends reject_subscription.
	Reject
	// Ignore sends nothing; the test may answer later with Conn.Confirm or
	// Conn.Reject.
	Ignore
)

// Option configures a Server.
type Option func(*config)

type config struct {
	subprotocols []string
	forced       string
	noWelcome    bool
	reply        func(Command) Reply
	pings        time.Duration
	handshake    func(*http.Request) int
	compression  websocket.CompressionMode
}

// WithSubprotocols sets the subprotocols the server accepts (default:
// actioncable-v1-json and actioncable-v1-msgpack). The server picks the
// first subprotocol the client offers that is in this list; when there is
// none it answers with no subprotocol, which ActionCable clients take as
// JSON.
func WithSubprotocols(names ...string) Option {
	return func(c *config) { c.subprotocols = names }
}

// WithForcedSubprotocol makes the server answer with name whatever the
// client offered, e.g. "chat", as a misconfigured or foreign server would.
func WithForcedSubprotocol(name string) Option {
	return func(c *config) { c.forced = name }
}

// WithoutWelcome stops the server from sending the welcome when a
// connection opens; the test sends it with Conn.Welcome, or never.
func WithoutWelcome() Option {
	return func(c *config) { c.noWelcome = true }
}

// WithSubscribeReply sets how subscribe commands are answered (default:
// Confirm every one). f runs on the connection's read goroutine, before the
// command is published on Commands; it may count and keep state.
func WithSubscribeReply(f func(Command) Reply) Option {
	return func(c *config) { c.reply = f }
}

// WithPings makes the server send an ActionCable ping every interval, as
// Rails does every 3 s. Without it the server is silent.
func WithPings(interval time.Duration) Option {
	return func(c *config) { c.pings = interval }
}

// WithHandshake sets a function that inspects each upgrade request (its
// Origin, Cookie, Authorization…) and returns 0 to accept it, or an HTTP
// status with which to refuse it. It runs on the request's goroutine and
// may be called concurrently.
func WithHandshake(f func(r *http.Request) int) Option {
	return func(c *config) { c.handshake = f }
}

// WithCompression makes the server accept permessage-deflate in mode when
// the client offers it.
func WithCompression(mode websocket.CompressionMode) Option {
	return func(c *config) { c.compression = mode }
}

// Command is a command the server received, with the connection it came on.
type Command struct {
	protocol.Command
	Conn *Conn
	// Binary tells whether it came in a binary frame (else a text frame).
	Binary bool
}

// Server is a running test server. Its methods are safe for concurrent use.
type Server struct {
	// URL is the ws:// URL of the cable endpoint.
	URL string

	cfg  config
	http *httptest.Server

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection goroutines

	conns    *feed[*Conn]
	commands *feed[Command]

	handshakes atomic.Int64
	accepted   atomic.Int64
	open       atomic.Int64

	mu   sync.Mutex
	live map[*Conn]struct{}
}

// Start starts a server and registers its Close with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	t.Cleanup(s.Close)
	return s
}

// New starts a server; the caller must Close it. Tests use Start; New is
// for examples, which have no testing.TB.
func New(opts ...Option) *Server {
	cfg := config{subprotocols: []string{protocol.SubprotocolJSON, protocol.SubprotocolMessagePack}}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{cfg: cfg, live: map[*Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.conns = newFeed[*Conn](s.ctx.Done())
	s.commands = newFeed[Command](s.ctx.Done())
	s.http = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = "ws" + strings.TrimPrefix(s.http.URL, "http") + "/cable"
	return s
}

// Close drops every connection and stops the server, waiting for its
// goroutines. It is safe to call more than once.
func (s *Server) Close() {
	s.cancel()
	s.mu.Lock()
	live := make([]*Conn, 0, len(s.live))
	for c := range s.live {
		live = append(live, c)
	}
	s.mu.Unlock()
	for _, c := range live {
		c.ws.CloseNow()
	}
	s.http.Close()
	s.wg.Wait()
	s.conns.wait()
	s.commands.wait()
}

// Conns delivers each accepted connection, in order. The channel is never
// closed; select on it with a deadline.
func (s *Server) Conns() <-chan *Conn { return s.conns.out }

// Commands delivers every command any connection sent, in order per
// connection. The channel is never closed.
func (s *Server) Commands() <-chan Command { return s.commands.out }

// NextConn waits for the next accepted connection.
func (s *Server) NextConn(ctx context.Context) (*Conn, error) {
	select {
	case c := <-s.conns.out:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("cabletest: waiting for a connection: %w", context.Cause(ctx))
	case <-s.ctx.Done():
		return nil, errors.New("cabletest: server closed")
	}
}

// NextCommand waits for the next command for which match returns true,
// discarding the others; a nil match takes any command.
func (s *Server) NextCommand(ctx context.Context, match func(Command) bool) (Command, error) {
	for {
		select {
		case c := <-s.commands.out:
			if match == nil || match(c) {
				return c, nil
			}
		case <-ctx.Done():
			return Command{}, fmt.Errorf("cabletest: waiting for a command: %w", context.Cause(ctx))
		case <-s.ctx.Done():
			return Command{}, errors.New("cabletest: server closed")
		}
	}
}

// Is returns a NextCommand matcher for command (e.g.
// protocol.CommandSubscribe) on identifier; an empty identifier matches
// any.
func Is(command, identifier string) func(Command) bool {
	return func(c Command) bool {
		return c.Command.Command == command && (identifier == "" || c.Identifier == identifier)
	}
}

// Handshakes returns how many upgrade requests arrived, refused ones
// included.
func (s *Server) Handshakes() int { return int(s.handshakes.Load()) }

// Accepted returns how many connections were accepted.
func (s *Server) Accepted() int { return int(s.accepted.Load()) }

// Open returns how many connections are open now.
func (s *Server) Open() int { return int(s.open.Load()) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.handshakes.Add(1)
	if s.cfg.handshake != nil {
		if status := s.cfg.handshake(r); status != 0 {
			http.Error(w, http.StatusText(status), status)
			return
		}
	}
	sub := s.cfg.forced
	if sub == "" {
		sub = s.pick(r)
	}
	if sub != "" {
		// Accept keeps a subprotocol already set when it negotiates none
		// itself, which lets the server answer with one it was not offered.
		w.Header().Set("Sec-WebSocket-Protocol", sub)
	}
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // tests check Origin themselves (WithHandshake)
		CompressionMode:    s.cfg.compression,
	})
	if err != nil {
		return
	}
	ws.SetReadLimit(1 << 20)
	codec, ok := protocol.CodecFor(ws.Subprotocol())
	if !ok {
		codec = protocol.JSONCodec{}
	}
	c := &Conn{
		s:      s,
		id:     int(s.accepted.Add(1)),
		ws:     ws,
		raw:    hw.conn,
		codec:  codec,
		header: r.Header.Clone(),
		done:   make(chan struct{}),
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		ws.CloseNow()
		return
	}
	s.live[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.open.Add(1)
	// Serve on a goroutine of our own: httptest.Server.Close does not wait
	// for hijacked connections, Server.Close does.
	go s.serve(c)
}

// pick chooses the first subprotocol the client offered that the server
// accepts.
func (s *Server) pick(r *http.Request) string {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for offered := range strings.SplitSeq(v, ",") {
			if offered = strings.TrimSpace(offered); slices.Contains(s.cfg.subprotocols, offered) {
				return offered
			}
		}
	}
	return ""
}

func (s *Server) serve(c *Conn) {
	defer s.wg.Done()
	defer func() {
		c.ws.CloseNow()
		s.mu.Lock()
		delete(s.live, c)
		s.mu.Unlock()
		s.open.Add(-1)
		close(c.done)
	}()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	var pinger sync.WaitGroup
	defer pinger.Wait()
	defer cancel() // stop the pinger before waiting for it

	if !s.cfg.noWelcome {
		if c.err = c.Welcome(ctx); c.err != nil {
			return
		}
	}
	s.conns.push(c)
	if s.cfg.pings > 0 {
		pinger.Go(func() { c.ping(ctx, s.cfg.pings) })
	}
	for {
		typ, frame, err := c.ws.Read(ctx)
		if err != nil {
			c.err = err
			return
		}
		var cmd protocol.Command
		if err := c.codec.DecodeCommand(frame, &cmd); err != nil {
			// A client bug; record it as a command the test can see.
			cmd = protocol.Command{Command: "invalid: " + err.Error(), Data: string(frame)}
		}
		rc := Command{Command: cmd, Conn: c, Binary: typ == websocket.MessageBinary}
		if cmd.Command == protocol.CommandSubscribe {
			reply := Confirm
			if s.cfg.reply != nil {
				reply = s.cfg.reply(rc)
			}
			switch reply {
			case Confirm:
				err = c.Confirm(ctx, cmd.Identifier)
			case Reject:
				err = c.Reject(ctx, cmd.Identifier)
			}
			if err != nil {
				c.err = err
				return
			}
		}
		s.commands.push(rc)
	}
}

// hijackWriter keeps the net.Conn that websocket.Accept hijacks, so that a
// test can write bytes the websocket library would never write.
type hijackWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.conn = c
	return c, brw, err
}

// Conn is one accepted connection. Its methods are safe for concurrent use;
// each write is bounded by its ctx.
type Conn struct {
	s      *Server
	id     int
	ws     *websocket.Conn
	raw    net.Conn
	codec  protocol.Codec
	header http.Header
	done   chan struct{}
	err    error // why the read loop ended; set before done is closed

	wmu sync.Mutex // serialises writes, raw ones included
}

// ID is the connection's number, from 1, in order of acceptance.
func (c *Conn) ID() int { return c.id }

// Subprotocol returns the subprotocol the server answered with.
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// Codec returns the codec the server speaks on this connection.
func (c *Conn) Codec() protocol.Codec { return c.codec }

// Header returns the handshake request's headers.
func (c *Conn) Header() http.Header { return c.header }

// Done is closed once the connection is closed, by either side.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (websocket.CloseStatus tells the
// client's close code), or nil while it is open.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Send encodes m with the connection's codec and writes it.
func (c *Conn) Send(ctx context.Context, m *protocol.Message) error {
	frame, err := c.codec.AppendMessage(nil, m)
	if err != nil {
		return fmt.Errorf("cabletest: encode %v: %w", m.Type, err)
	}
	typ := websocket.MessageText
	if c.codec.Binary() {
		typ = websocket.MessageBinary
	}
	return c.write(ctx, typ, frame)
}

// Welcome sends {"type":"welcome"}.
func (c *Conn) Welcome(ctx context.Context) error {
	return c.Send(ctx, &protocol.Message{Type: protocol.TypeWelcome})
}

// Ping sends an ActionCable ping carrying the current unix time.
func (c *Conn) Ping(ctx context.Context) error {
	now := strconv.FormatInt(time.Now().Unix(), 10)
	return c.Send(ctx, &protocol.Message{Type: protocol.TypePing, Body: protocol.RawJSON([]byte(now))})
}

// Confirm sends confirm_subscription for identifier.
func (c *Conn) Confirm(ctx context.Context, identifier string) error {
	return c.Send(ctx, &protocol.Message{Type: protocol.TypeConfirm, Identifier: []byte(identifier)})
}

// Reject sends reject_subscription for identifier.
func (c *Conn) Reject(ctx context.Context, identifier string) error {
	return c.Send(ctx, &protocol.Message{Type: protocol.TypeReject, Identifier: []byte(identifier)})
}

// Broadcast sends a channel message for identifier whose message is v
// encoded with encoding/json (and transcoded for MessagePack connections).
func (c *Conn) Broadcast(ctx context.Context, identifier string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("cabletest: broadcast: %w", err)
	}
	return c.Send(ctx, &protocol.Message{Identifier: []byte(identifier), Body: protocol.RawJSON(b)})
}

// Disconnect sends a disconnect frame with reason and reconnect, as Rails ≥
// 6.0 does. (For one without a "reconnect" key, use Send.) The connection
// stays open: Rails closes it right after, which Close does.
func (c *Conn) Disconnect(ctx context.Context, reason string, reconnect bool) error {
	return c.Send(ctx, &protocol.Message{Type: protocol.TypeDisconnect, Reason: reason, Reconnect: reconnect, HasReconnect: true})
}

// WriteText writes b as one text frame, whatever the codec.
func (c *Conn) WriteText(ctx context.Context, b []byte) error {
	return c.write(ctx, websocket.MessageText, b)
}

// WriteBinary writes b as one binary frame, whatever the codec.
func (c *Conn) WriteBinary(ctx context.Context, b []byte) error {
	return c.write(ctx, websocket.MessageBinary, b)
}

func (c *Conn) write(ctx context.Context, typ websocket.MessageType, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.Write(ctx, typ, b); err != nil {
		return fmt.Errorf("cabletest: conn %d: %w", c.id, err)
	}
	return nil
}

// Close closes the connection with a close frame carrying code and reason
// and waits for the client's answer (coder/websocket bounds the wait to a
// few seconds).
func (c *Conn) Close(code websocket.StatusCode, reason string) error {
	return c.ws.Close(code, reason)
}

// Drop closes the TCP connection at once, without a close frame.
func (c *Conn) Drop() error {
	return c.ws.CloseNow()
}

// DropMidFrame writes the header of an unmasked data frame announcing
// announced payload bytes (a text frame, or binary for binary codecs), then
// only partial, then closes the TCP connection: the client sees the stream
// end inside a frame.
func (c *Conn) DropMidFrame(announced int, partial []byte) error {
	if len(partial) >= announced {
		return fmt.Errorf("cabletest: DropMidFrame: %d bytes sent of %d announced is not a partial frame", len(partial), announced)
	}
	op := byte(0x1) // text
	if c.codec.Binary() {
		op = 0x2
	}
	hdr := []byte{0x80 | op}
	switch {
	case announced < 126:
		hdr = append(hdr, byte(announced))
	case announced < 1<<16:
		hdr = append(hdr, 126, byte(announced>>8), byte(announced))
	default:
		hdr = append(hdr, 127)
		for i := 7; i >= 0; i-- {
			hdr = append(hdr, byte(uint64(announced)>>(8*i)))
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.raw.Write(append(hdr, partial...))
	_ = c.ws.CloseNow()
	if err != nil {
		return fmt.Errorf("cabletest: DropMidFrame: %w", err)
	}
	return nil
}

// ping sends ActionCable pings every interval until ctx ends.
func (c *Conn) ping(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.Ping(ctx) != nil {
				return
			}
		}
	}
}

// feed is an unbounded queue read through a channel: push never blocks the
// server, and out yields items in order until done.
type feed[T any] struct {
	in       chan T
	out      chan T
	done     <-chan struct{}
	finished chan struct{}
}

func newFeed[T any](done <-chan struct{}) *feed[T] {
	f := &feed[T]{in: make(chan T), out: make(chan T), done: done, finished: make(chan struct{})}
	go f.pump()
	return f
}

func (f *feed[T]) push(v T) {
	select {
	case f.in <- v:
	case <-f.done:
	}
}

func (f *feed[T]) pump() {
	defer close(f.finished)
	var q []T
	for {
		var (
			out  chan T
			head T
		)
		if len(q) > 0 {
			out, head = f.out, q[0]
		}
		select {
		case v := <-f.in:
			q = append(q, v)
		case out <- head:
			var zero T
			q[0] = zero
			q = q[1:]
		case <-f.done:
			return
		}
	}
}

// wait blocks until the pump has returned (after done).
func (f *feed[T]) wait() { <-f.finished }
