// Package feeder is the one feed every receive benchmark reads: a loopback
// ActionCable server in Go that the Go clients, the official
// @rails/actioncable client under Node, the drop-in in Chromium and the
// bridge all connect to, so their figures compare.
//
// A connection is welcomed, every subscribe is confirmed, and the server
// pings every 3 s as Rails does. It speaks "actioncable-v1-json" and
// "actioncable-v1-msgpack" (the client's first offered wins; none offered
// is JSON). The work is asked for with an action (a "message" command), on
// the subscription it is to arrive on:
//
//   - {"action":"flood","count":N}: N messages as fast as the client reads
//     them, then {"done":N};
//   - {"action":"paced","count":N,"rate":R}: N messages, R a second, each
//     stamped with the time it is written, then {"done":N};
//   - {"action":"echo",…}: the data back at once, as the message.
//
// Each message is a [Tick] plus padding, {"seq":…,"ts":…,"pad":"…"}, about
// 170 bytes on the wire in JSON. Seq runs from [FirstSeq] up by one, so a
// client that checks it sees every message arrive once and in order. Ts is
// the wall-clock time in Unix nanoseconds at which the message was written
// (paced), or at which the flood started (flood).
//
// A flood costs the feeder almost nothing per message: the frames are built
// once per flood into a block of whole WebSocket frames, and only each
// frame's seq digits are rewritten before the block is written again, so
// the client under test is the bottleneck and the feeder allocates nothing
// per message.
package feeder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
)

// FirstSeq is the seq of the first message of every flood or paced run.
// Every seq of a run has the same width on the wire (11 decimal digits in
// JSON, a uint64 in MessagePack), which lets a flood rewrite it in place.
const FirstSeq = 10_000_000_000

// MaxCount is the most messages one flood or paced run sends.
const MaxCount = 1_000_000_000

// Pad is the padding string of every message.
const Pad = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

// Tick is what a benchmarked client decodes each message into.
type Tick struct {
	Seq int64 `json:"seq" msgpack:"seq"`
	Ts  int64 `json:"ts" msgpack:"ts"`
}

// Option configures a Server.
type Option func(*Server)

// WithLogger logs connections that end in error and commands the feeder
// refuses. The default is silent.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithPingInterval sets how often every connection is pinged (3 s, as
// Rails, by default; 0 turns pings off).
func WithPingInterval(d time.Duration) Option { return func(s *Server) { s.ping = d } }

// Server is a running feeder. Close stops it.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger
	ping time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// Start listens on a free port of 127.0.0.1 and serves until Close.
func Start(opts ...Option) (*Server, error) {
	s := &Server{log: slog.New(slog.DiscardHandler), ping: 3 * time.Second, conns: map[net.Conn]struct{}{}}
	for _, o := range opts {
		o(s)
	}
	if s.ping < 0 {
		return nil, fmt.Errorf("feeder: negative ping interval %v", s.ping)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("feeder: %w", err)
	}
	s.ln = ln
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Go(func() { s.srv.Serve(ln) })
	return s, nil
}

// URL is the feeder's ActionCable endpoint, ws://127.0.0.1:PORT/cable.
func (s *Server) URL() string { return "ws://" + s.ln.Addr().String() + "/cable" }

// Close stops the server, drops every connection and waits for their
// goroutines.
func (s *Server) Close() error {
	s.cancel()
	err := s.srv.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "feeder: a WebSocket upgrade is expected", http.StatusBadRequest)
		return
	}
	codec := protocol.Codec(protocol.JSONCodec{})
	offered := ""
	for _, p := range strings.Split(r.Header.Get("Sec-WebSocket-Protocol"), ",") {
		p = strings.TrimSpace(p)
		if c, ok := protocol.CodecFor(p); ok && p != "" {
			codec, offered = c, p
			break
		}
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
		s.wg.Done()
	}()

	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\n"
	if offered != "" {
		resp += "Sec-WebSocket-Protocol: " + offered + "\r\n"
	}
	c := &session{s: s, nc: conn, bw: bufio.NewWriterSize(conn, 64<<10), codec: codec, jobs: make(chan job, 64)}
	c.bw.WriteString(resp + "\r\n")
	c.write(&protocol.Message{Type: protocol.TypeWelcome})
	if err := c.bw.Flush(); err != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.writeLoop(ctx); err != nil && ctx.Err() == nil {
			s.log.Info("feeder: write", "err", err)
		}
		conn.Close() // ends the reader too
	}()
	if err := c.readLoop(ctx, rw.Reader); err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
		s.log.Info("feeder: read", "err", err)
	}
	cancel()
	<-done
}

// job is one piece of work for a connection's writer.
type job struct {
	identifier string
	action     string // "confirm", "flood", "paced", "echo", "pong", "close"
	count      int
	rate       float64
	data       string
}

// session is one client connection: a reader that turns client frames into
// jobs, and a writer (the only one touching bw) that does them.
type session struct {
	s     *Server
	nc    net.Conn
	bw    *bufio.Writer
	codec protocol.Codec
	jobs  chan job
	enc   []byte
}

func (c *session) readLoop(ctx context.Context, br *bufio.Reader) error {
	var cmd protocol.Command
	fr := &frameReader{br: br}
	for {
		op, payload, err := fr.next()
		if err != nil {
			return err
		}
		var j job
		switch op {
		case opClose:
			j = job{action: "close"}
		case opPing:
			j = job{action: "pong", data: string(payload)}
		case opText, opBinary:
			if err := c.codec.DecodeCommand(payload, &cmd); err != nil {
				return fmt.Errorf("feeder: client frame: %w", err)
			}
			var ok bool
			if j, ok = c.s.parse(&cmd); !ok {
				continue
			}
		default:
			continue
		}
		select {
		case c.jobs <- j:
		case <-ctx.Done():
			return nil
		}
		if j.action == "close" {
			return nil
		}
	}
}

// parse turns a client command into a job; commands the feeder does not
// do are logged and dropped.
func (s *Server) parse(cmd *protocol.Command) (job, bool) {
	switch cmd.Command {
	case protocol.CommandSubscribe:
		return job{identifier: cmd.Identifier, action: "confirm"}, true
	case protocol.CommandMessage:
	default:
		return job{}, false
	}
	var a struct {
		Action string  `json:"action"`
		Count  int     `json:"count"`
		Rate   float64 `json:"rate"`
	}
	if err := json.Unmarshal([]byte(cmd.Data), &a); err != nil {
		s.log.Info("feeder: message data is not JSON", "data", cmd.Data, "err", err)
		return job{}, false
	}
	j := job{identifier: cmd.Identifier, action: a.Action, count: a.Count, rate: a.Rate, data: cmd.Data}
	switch a.Action {
	case "echo":
		return j, true
	case "flood", "paced":
		if a.Count < 1 || a.Count > MaxCount || (a.Action == "paced" && !(a.Rate > 0 && a.Rate <= 1e6)) {
			s.log.Info("feeder: refused", "action", a.Action, "count", a.Count, "rate", a.Rate)
			return job{}, false
		}
		return j, true
	}
	s.log.Info("feeder: unknown action", "action", a.Action)
	return job{}, false
}

func (c *session) writeLoop(ctx context.Context) error {
	var tick <-chan time.Time
	if c.s.ping > 0 {
		t := time.NewTicker(c.s.ping)
		defer t.Stop()
		tick = t.C
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick:
			err = c.write(&protocol.Message{Type: protocol.TypePing, Body: protocol.RawJSON(strconv.AppendInt(nil, now.Unix(), 10))})
		case j := <-c.jobs:
			switch j.action {
			case "close":
				c.bw.Write([]byte{0x80 | opClose, 0})
				c.bw.Flush()
				return nil
			case "pong":
				_, err = c.bw.Write(wsFrame(nil, opPong, []byte(j.data)))
			case "confirm":
				err = c.write(&protocol.Message{Type: protocol.TypeConfirm, Identifier: []byte(j.identifier)})
			case "echo":
				err = c.write(&protocol.Message{Identifier: []byte(j.identifier), Body: protocol.RawJSON([]byte(j.data))})
			case "flood":
				err = c.flood(ctx, j.identifier, j.count)
			case "paced":
				err = c.paced(ctx, j.identifier, j.count, j.rate)
			}
		}
		if err == nil {
			err = c.bw.Flush()
		}
		if err != nil {
			return err
		}
	}
}

// write encodes m into one frame in the write buffer.
func (c *session) write(m *protocol.Message) error {
	b, err := c.codec.AppendMessage(c.enc[:0], m)
	if err != nil {
		return fmt.Errorf("feeder: encode: %w", err)
	}
	c.enc = b
	_, err = c.bw.Write(wsFrame(nil, c.opcode(), b))
	return err
}

func (c *session) opcode() byte {
	if c.codec.Binary() {
		return opBinary
	}
	return opText
}

func (c *session) done(identifier string, n int) error {
	return c.write(&protocol.Message{Identifier: []byte(identifier), Body: protocol.RawJSON(fmt.Appendf(nil, `{"done":%d}`, n))})
}

// Body returns the JSON text of the message with this seq and ts.
func Body(seq, ts int64) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"ts":%d,"pad":%q}`, seq, ts, Pad)
}

// flood writes n messages as fast as the socket takes them. The frames
// are built once into a block, and each frame's seq is rewritten in place.
func (c *session) flood(ctx context.Context, identifier string, n int) error {
	b, err := c.codec.AppendMessage(nil, &protocol.Message{Identifier: []byte(identifier), Body: protocol.RawJSON(Body(FirstSeq, time.Now().UnixNano()))})
	if err != nil {
		return fmt.Errorf("feeder: encode: %w", err)
	}
	frame := wsFrame(nil, c.opcode(), b)
	// Where seq sits in the frame, and how it is written there.
	var mark []byte
	if c.codec.Binary() {
		mark = binary.BigEndian.AppendUint64(nil, FirstSeq)
	} else {
		mark = strconv.AppendInt(nil, FirstSeq, 10)
	}
	at := bytes.Index(frame, mark)
	if at < 0 || bytes.Index(frame[at+1:], mark) >= 0 {
		return fmt.Errorf("feeder: seq %d not found once in the encoded frame", FirstSeq)
	}
	const block = 256
	one := len(frame)
	chunk := bytes.Repeat(frame, block)
	put := func(dst []byte, seq int64) {
		if c.codec.Binary() {
			binary.BigEndian.PutUint64(dst, uint64(seq))
			return
		}
		strconv.AppendInt(dst[:0], seq, 10) // same width: FirstSeq+MaxCount < 1e11
	}
	seq := int64(FirstSeq)
	for left := n; left > 0; left -= block {
		if ctx.Err() != nil {
			return nil
		}
		k := min(left, block)
		for i := range k {
			put(chunk[i*one+at:], seq)
			seq++
		}
		if _, err := c.bw.Write(chunk[:k*one]); err != nil {
			return err
		}
	}
	return c.done(identifier, n)
}

// paced writes n messages at rate a second, each stamped when written
// and flushed at once. A message late by its schedule goes at once; the
// schedule does not slip.
func (c *session) paced(ctx context.Context, identifier string, n int, rate float64) error {
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	m := protocol.Message{Identifier: []byte(identifier)}
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return nil
			}
		}
		m.Body = protocol.RawJSON(Body(FirstSeq+int64(i), time.Now().UnixNano()))
		if err := c.write(&m); err != nil {
			return err
		}
		if err := c.bw.Flush(); err != nil {
			return err
		}
	}
	return c.done(identifier, n)
}

// WebSocket opcodes.
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// maxClientFrame bounds a client message; commands are small.
const maxClientFrame = 1 << 20

// wsFrame appends one unmasked, final server frame.
func wsFrame(dst []byte, op byte, p []byte) []byte {
	op |= 0x80
	switch n := len(p); {
	case n < 126:
		dst = append(dst, op, byte(n))
	case n < 1<<16:
		dst = append(dst, op, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, op, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, p...)
}

// frameReader reads client messages, reassembling fragments; a control
// frame between fragments is returned as it comes, and the message goes
// on at the next call.
type frameReader struct {
	br  *bufio.Reader
	msg []byte // the message being read; valid until the next call
	op  byte
	mid bool // inside a fragmented message
}

func (r *frameReader) next() (op byte, payload []byte, err error) {
	if !r.mid {
		r.msg = r.msg[:0]
	}
	for {
		var h [2]byte
		if _, err := io.ReadFull(r.br, h[:]); err != nil {
			return 0, nil, err
		}
		fin, fop := h[0]&0x80 != 0, h[0]&0x0F
		if h[1]&0x80 == 0 {
			return 0, nil, errors.New("feeder: unmasked client frame")
		}
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(r.br, e[:]); err != nil {
				return 0, nil, err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(r.br, e[:]); err != nil {
				return 0, nil, err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		if n > maxClientFrame || uint64(len(r.msg))+n > maxClientFrame {
			return 0, nil, fmt.Errorf("feeder: client message over %d bytes", maxClientFrame)
		}
		var mask [4]byte
		if _, err := io.ReadFull(r.br, mask[:]); err != nil {
			return 0, nil, err
		}
		if fop >= opClose { // a control frame: never fragmented
			p := make([]byte, n)
			if _, err := io.ReadFull(r.br, p); err != nil {
				return 0, nil, err
			}
			for i := range p {
				p[i] ^= mask[i%4]
			}
			return fop, p, nil
		}
		switch {
		case !r.mid && fop == 0:
			return 0, nil, errors.New("feeder: a continuation frame outside a message")
		case r.mid && fop != 0:
			return 0, nil, errors.New("feeder: a new message inside a fragmented one")
		case !r.mid:
			r.op = fop
		}
		start := len(r.msg)
		r.msg = append(r.msg, make([]byte, n)...)
		if _, err := io.ReadFull(r.br, r.msg[start:]); err != nil {
			return 0, nil, err
		}
		for i := range r.msg[start:] {
			r.msg[start+i] ^= mask[i%4]
		}
		r.mid = !fin
		if fin {
			return r.op, r.msg, nil
		}
	}
}
