//go:build linux

package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The feeder is a minimal ActionCable server in Go, the bridge's upstream:
// it speaks actioncable-v1-json over a hand-written server side of RFC 6455
// (so that one connection's pending frames can go out in one write, as fast
// as a write can go; -coalesce=false writes one frame per write, as Rails
// does), welcomes every connection, confirms every subscribe,
// pings every 3 s as Rails does, and broadcasts numbered frames
//
//	{"identifier":"{\"channel\":\"BenchChannel\"}","message":{"seq":N,"ts":T,"pad":"xx…"}}
//
// to every subscribed connection. seq counts broadcasts (1, 2, …, one
// sequence for all connections: a connection subscribed at broadcast P gets
// P+1, P+2, …); ts is when the broadcast was published, in nanoseconds on
// the benchmark's monotonic clock.
type feeder struct {
	ln  net.Listener
	srv *http.Server
	url string
	pad string
	t0  time.Time
	// coalesce: a connection's pending frames go out in one write (up to
	// maxWrite); otherwise one write per frame.
	coalesce bool
	stop     chan struct{}
	wg       sync.WaitGroup

	mu        sync.Mutex
	conns     map[*feedConn]struct{}
	ts        []int64 // ts[seq-1]: publish time of broadcast seq
	published atomic.Uint64
	closed    bool
}

// benchIdentifier is the channel identifier every session subscribes to.
const benchIdentifier = `{"channel":"BenchChannel"}`

// wsGUID is RFC 6455's key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxWrite bounds one write of a connection's pending frames.
const maxWrite = 64 << 10

func newFeeder(t0 time.Time, pad int, coalesce bool) (*feeder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &feeder{
		ln: ln, url: "ws://" + ln.Addr().String() + "/cable", pad: strings.Repeat("x", pad), t0: t0, coalesce: coalesce,
		stop: make(chan struct{}), conns: map[*feedConn]struct{}{},
	}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second}
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.srv.Serve(ln) }()
	go f.pinger()
	return f, nil
}

// publish numbers n more broadcasts, all at the current time, and wakes
// every connection's writer.
func (f *feeder) publish(n int) {
	now := int64(time.Since(f.t0))
	f.mu.Lock()
	for range n {
		f.ts = append(f.ts, now)
	}
	f.published.Store(uint64(len(f.ts)))
	conns := make([]*feedConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	for _, c := range conns {
		c.wakeUp()
	}
}

// times returns the publish times of every broadcast so far: ts[seq-1] is
// broadcast seq's. The entries never change once published.
func (f *feeder) times() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ts
}

// close stops the feeder and closes every connection.
func (f *feeder) close() {
	f.mu.Lock()
	f.closed = true
	conns := f.conns
	f.conns = map[*feedConn]struct{}{}
	f.mu.Unlock()
	close(f.stop)
	f.srv.Close()
	for c := range conns {
		c.nc.Close()
	}
	f.wg.Wait()
}

func (f *feeder) pinger() {
	defer f.wg.Done()
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-t.C:
			ping := wsFrame(nil, 0x1, fmt.Appendf(nil, `{"type":"ping","message":%d}`, now.Unix()))
			f.mu.Lock()
			conns := make([]*feedConn, 0, len(f.conns))
			for c := range f.conns {
				conns = append(conns, c)
			}
			f.mu.Unlock()
			for _, c := range conns {
				c.queue(ping)
			}
		}
	}
}

// feedConn is one upstream WebSocket connection from the bridge.
type feedConn struct {
	f    *feeder
	nc   net.Conn
	wake chan struct{} // capacity 1

	mu         sync.Mutex
	ctrl       []byte // framed, waiting to be written before broadcasts
	subscribed bool
	sent       uint64 // broadcasts written (or skipped: published before the subscribe)
	closing    bool
}

func (c *feedConn) wakeUp() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// queue adds an already framed frame to write next.
func (c *feedConn) queue(frame []byte) {
	c.mu.Lock()
	c.ctrl = append(c.ctrl, frame...)
	c.mu.Unlock()
	c.wakeUp()
}

func (f *feeder) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "want a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	offered := false
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == "actioncable-v1-json" {
				offered = true
			}
		}
	}
	if !offered {
		http.Error(w, "want subprotocol actioncable-v1-json", http.StatusBadRequest)
		return
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n" +
		"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
	c := &feedConn{f: f, nc: nc, wake: make(chan struct{}, 1)}
	c.ctrl = wsFrame([]byte(resp), 0x1, []byte(`{"type":"welcome"}`))
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		nc.Close()
		return
	}
	f.conns[c] = struct{}{}
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		c.writeLoop()
	}()
	c.wakeUp()
	c.readLoop(brw.Reader) // on the hijacked handler goroutine
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	nc.Close()
}

// writeLoop writes control frames and pending broadcasts, coalesced into
// writes of up to maxWrite bytes.
func (c *feedConn) writeLoop() {
	f := c.f
	var buf []byte
	for {
		select {
		case <-c.wake:
		case <-f.stop:
			return
		}
		for {
			c.mu.Lock()
			buf = append(buf[:0], c.ctrl...)
			c.ctrl = c.ctrl[:0]
			closing := c.closing
			from, to := c.sent, c.sent
			if c.subscribed {
				to = f.published.Load()
			}
			c.mu.Unlock()
			seq := from
			if seq < to {
				ts := f.times()
				limit := maxWrite
				if !f.coalesce {
					limit = 1 // one broadcast frame per write
				}
				for seq < to && len(buf) < limit {
					seq++
					buf = c.appendBroadcast(buf, seq, ts[seq-1])
				}
			}
			if len(buf) == 0 {
				break
			}
			if _, err := c.nc.Write(buf); err != nil {
				c.nc.Close()
				return
			}
			c.mu.Lock()
			if c.sent == from { // not reset by a subscribe meanwhile
				c.sent = seq
			}
			c.mu.Unlock()
			if closing {
				c.nc.Close()
				return
			}
		}
	}
}

// appendBroadcast frames broadcast seq.
func (c *feedConn) appendBroadcast(buf []byte, seq uint64, ts int64) []byte {
	var p [256]byte
	msg := append(p[:0], `{"identifier":"{\"channel\":\"BenchChannel\"}","message":{"seq":`...)
	msg = strconv.AppendUint(msg, seq, 10)
	msg = append(msg, `,"ts":`...)
	msg = strconv.AppendInt(msg, ts, 10)
	msg = append(msg, `,"pad":"`...)
	msg = append(msg, c.f.pad...)
	msg = append(msg, `"}}`...)
	return wsFrame(buf, 0x1, msg)
}

// wsFrame appends an unmasked, final server frame of opcode op.
func wsFrame(buf []byte, op byte, payload []byte) []byte {
	buf = append(buf, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		buf = append(buf, byte(n))
	case n < 1<<16:
		buf = append(buf, 126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	return append(buf, payload...)
}

// readLoop reads the client's frames: commands (subscribe → confirm),
// pings (→ pong) and close (→ close).
func (c *feedConn) readLoop(br *bufio.Reader) {
	var hdr [14]byte
	var msg []byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		fin, op := hdr[0]&0x80 != 0, hdr[0]&0x0f
		masked, n := hdr[1]&0x80 != 0, uint64(hdr[1]&0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[2:4]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(br, hdr[2:10]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(hdr[2:10])
		}
		if !masked || n > 1<<20 {
			return // not a client frame the feeder takes: drop the connection
		}
		var mask [4]byte
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return
		}
		start := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(br, msg[start:]); err != nil {
			return
		}
		for i := range msg[start:] {
			msg[start+i] ^= mask[i%4]
		}
		switch op {
		case 0x8: // close: echo it and stop
			c.mu.Lock()
			c.ctrl = wsFrame(c.ctrl, 0x8, msg[start:min(len(msg), start+2)])
			c.closing = true
			c.mu.Unlock()
			c.wakeUp()
			return
		case 0x9:
			c.queue(wsFrame(nil, 0xA, msg[start:]))
			msg = msg[:start]
			continue
		case 0xA:
			msg = msg[:start]
			continue
		}
		if !fin {
			continue // a continuation follows
		}
		c.command(msg)
		msg = msg[:0]
	}
}

// command answers a subscribe with a confirmation; the connection gets the
// broadcasts published after it.
func (c *feedConn) command(data []byte) {
	var cmd struct {
		Command    string `json:"command"`
		Identifier string `json:"identifier"`
	}
	if json.Unmarshal(data, &cmd) != nil || cmd.Command != "subscribe" {
		return
	}
	confirm, _ := json.Marshal(map[string]string{"identifier": cmd.Identifier, "type": "confirm_subscription"})
	c.mu.Lock()
	c.ctrl = wsFrame(c.ctrl, 0x1, confirm)
	if !c.subscribed && cmd.Identifier == benchIdentifier {
		c.subscribed = true
		c.sent = c.f.published.Load()
	}
	c.mu.Unlock()
	c.wakeUp()
}

// openConns counts the feeder's open connections.
func (f *feeder) openConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// subscribers counts the connections subscribed to the bench channel.
func (f *feeder) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for c := range f.conns {
		c.mu.Lock()
		if c.subscribed {
			n++
		}
		c.mu.Unlock()
	}
	return n
}
