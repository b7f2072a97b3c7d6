package cable_test

// The receive benchmarks compare, in one run, ways of taking the same
// pre-encoded channel-message frames (~170 B, a {seq, ts, pad} message)
// off a loopback WebSocket. Every client but the limit decodes each message
// into {Seq, Ts int64}, as a user would:
//
//	(a) raw:        coder/websocket reads into a reused buffer, no decode
//	                (the limit)
//	(b) naive:      raw read + encoding/json.Unmarshal of each frame into an
//	                envelope struct, what a hand-rolled client does
//	(c) json:       Consumer → Subscription.Messages → Payload.Decode,
//	                actioncable-v1-json
//	(d) msgpack:    the same over actioncable-v1-msgpack
//	(e) node:       the official @rails/actioncable under Node, reading
//	                seq and ts of each parsed message
//
// The feeder writes whole prebuilt WebSocket frames on a hijacked
// connection, so it allocates nothing per message and allocs/op is the
// client's. Compare ratios within one run; absolute figures vary with the
// machine. Run with:
//
//	go test -run='^$' -bench=Receive -benchmem ./sdk/cable/

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

const benchIdentifier = `{"channel":"ChatChannel","room":"lobby"}`

// benchMessage is a small broadcast: a sequence number, a timestamp and
// padding that makes the frame ~170 bytes on the wire, in the key order
// Rails would send it.
const benchMessage = `{"seq":1234567,"ts":1764910000123456789,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`

// tick is what each benchmarked client decodes a message into.
type tick struct {
	Seq int64
	Ts  int64
}

// feeder is a loopback WebSocket server that, after an optional handshake
// exchange, writes n copies of one frame as fast as the client reads.
type feeder struct {
	srv         *httptest.Server
	subprotocol string
	binary      bool
	preamble    [][]byte // frames sent before waiting for the client's first frame
	confirm     []byte   // frame sent after the client's first frame (nil: no wait)
	frame       []byte   // the message frame repeated n times
	n           int
}

func newFeeder(tb testing.TB, codec protocol.Codec, consumer bool) *feeder {
	f := &feeder{subprotocol: codec.Subprotocol(), binary: codec.Binary()}
	enc := func(m *protocol.Message) []byte {
		b, err := codec.AppendMessage(nil, m)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	body := protocol.RawJSON([]byte(benchMessage))
	f.frame = enc(&protocol.Message{Type: protocol.TypeMessage, Identifier: []byte(benchIdentifier), Body: body})
	if consumer {
		f.preamble = [][]byte{enc(&protocol.Message{Type: protocol.TypeWelcome})}
		f.confirm = enc(&protocol.Message{Type: protocol.TypeConfirm, Identifier: []byte(benchIdentifier)})
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	tb.Cleanup(f.srv.Close)
	return f
}

func (f *feeder) url() string { return "ws" + strings.TrimPrefix(f.srv.URL, "http") }

// wsFrame encodes one unmasked server frame.
func wsFrame(dst []byte, binary bool, p []byte) []byte {
	op := byte(0x81)
	if binary {
		op = 0x82
	}
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

func (f *feeder) serve(w http.ResponseWriter, r *http.Request) {
	h := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\n"
	if strings.Contains(r.Header.Get("Sec-WebSocket-Protocol"), f.subprotocol) {
		resp += "Sec-WebSocket-Protocol: " + f.subprotocol + "\r\n"
	}
	bw := bufio.NewWriterSize(conn, 64<<10)
	bw.WriteString(resp + "\r\n")
	for _, p := range f.preamble {
		bw.Write(wsFrame(nil, f.binary, p))
	}
	bw.Flush()
	if f.confirm != nil {
		// Wait for the client's subscribe (any bytes will do), then confirm.
		var b [512]byte
		if _, err := rw.Read(b[:]); err != nil {
			return
		}
		bw.Write(wsFrame(nil, f.binary, f.confirm))
	}
	const block = 256
	var chunk []byte
	for range block {
		chunk = wsFrame(chunk, f.binary, f.frame)
	}
	one := len(chunk) / block
	for left := f.n; left > 0; left -= block {
		k := min(left, block)
		if _, err := bw.Write(chunk[:k*one]); err != nil {
			return
		}
	}
	bw.Flush()
	// Keep the connection open until the client goes away.
	io.Copy(io.Discard, rw)
}

func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkReceive(b *testing.B) {
	b.Run("a-raw-websocket", func(b *testing.B) { benchRaw(b, false) })
	b.Run("b-naive-json-unmarshal", func(b *testing.B) { benchRaw(b, true) })
	b.Run("c-consumer-json", func(b *testing.B) { benchConsumer(b, protocol.JSONCodec{}) })
	b.Run("d-consumer-msgpack", func(b *testing.B) { benchConsumer(b, protocol.MessagePackCodec{}) })
	b.Run("e-node-official-actioncable", benchOfficial)
}

// benchOfficial runs the official @rails/actioncable client under Node on
// the same feed (js/bench/official-receive.mjs). It needs node and the npm
// dev dependencies (npm ci); without them it is skipped.
func benchOfficial(b *testing.B) {
	root, err := filepath.Abs("../..")
	if err != nil {
		b.Fatal(err)
	}
	script := filepath.Join(root, "js", "bench", "official-receive.mjs")
	if _, err := os.Stat(filepath.Join(root, "node_modules", "@rails", "actioncable")); err != nil {
		b.Skip("npm dev dependencies missing (run npm ci)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		b.Skip("node not installed")
	}
	n := max(b.N, 2)
	f := newFeeder(b, protocol.JSONCodec{}, true)
	f.n = n
	b.ResetTimer()
	cmd := exec.Command(node, script, f.url(), strconv.Itoa(n))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var r struct{ Rate float64 }
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("node printed %q: %v", out, err)
	}
	b.ReportMetric(r.Rate, "msgs/s")
	b.ReportMetric(1e9/r.Rate, "ns/msg")
}

func benchRaw(b *testing.B, unmarshal bool) {
	f := newFeeder(b, protocol.JSONCodec{}, false)
	f.n = b.N
	ctx := context.Background()
	c, _, err := ws.Dial(ctx, f.url(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		_, r, err := c.Reader(ctx)
		if err != nil {
			b.Fatal(err)
		}
		buf = buf[:0]
		for {
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if unmarshal {
			var m struct {
				Identifier string
				Message    tick
			}
			if err := json.Unmarshal(buf, &m); err != nil || m.Message.Seq != 1234567 {
				b.Fatal(m, err)
			}
		}
	}
	reportRate(b, start)
}

func benchConsumer(b *testing.B, codec protocol.Codec) {
	f := newFeeder(b, codec, true)
	f.n = b.N
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cable.Dial(ctx, f.url(), cable.WithCodecs(codec), cable.WithStaleTimeout(time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	sub, err := c.Subscribe(ctx, benchIdentifier, cable.WithBuffer(1<<16))
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		p, ok := <-sub.Messages()
		if !ok {
			b.Fatal("subscription ended:", sub.Err())
		}
		var t tick
		if err := p.Decode(&t); err != nil || t.Seq != 1234567 || t.Ts != 1764910000123456789 {
			b.Fatal(t, err)
		}
	}
	reportRate(b, start)
	b.StopTimer()
	if d := sub.Dropped(); d > 0 {
		b.Fatalf("%d messages dropped", d)
	}
}

var _ net.Conn // keep net imported for readers following the hijack
