// Package clients holds the Go clients the receive benchmarks compare, each
// reading the feed of package feeder as a user would: it subscribes, asks
// for a flood or a paced run, and takes every message off the socket.
// Every kind but [Raw] decodes each message into a feeder.Tick and checks
// its seq, so a lost, repeated or reordered message fails the run.
//
// sdk/cable's BenchmarkReceive and the bench table's Go client binary
// (internal/bench/clients/goclient) both run these, so the two measure the
// same code.
package clients

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/internal/bench/feeder"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

// Kind names a client.
type Kind string

// The clients.
const (
	// Raw reads each frame with coder/websocket into a reused buffer and
	// decodes nothing (the limit); in a paced run it scans the frame for
	// ts, to time it.
	Raw Kind = "raw"
	// RawJSON is Raw plus encoding/json.Unmarshal of each frame into an
	// envelope holding a feeder.Tick: what a hand-rolled client does.
	RawJSON Kind = "raw-json"
	// CableJSON is sdk/cable over actioncable-v1-json: Subscription.Messages
	// and Payload.Decode into a feeder.Tick.
	CableJSON Kind = "cable-json"
	// CableMsgPack is CableJSON over actioncable-v1-msgpack.
	CableMsgPack Kind = "cable-msgpack"
)

// Kinds lists every Kind, in the order tables show them.
var Kinds = []Kind{Raw, RawJSON, CableJSON, CableMsgPack}

// Identifier is the subscription every client makes.
var Identifier = protocol.MustIdentifier("ChatChannel", "room", "lobby")

// Config is one run.
type Config struct {
	Kind Kind
	URL  string // the feeder's ws:// URL (the consumer's URL when CableOptions name another transport)
	N    int    // messages to receive
	// Rate, when above zero, asks for a paced run of Rate messages a
	// second and records each message's latency; otherwise a flood.
	Rate float64
	// CableOptions are added to the cable kinds' options (e.g. a transport
	// through the bridge).
	CableOptions []cable.Option
	// Buffer is the cable kinds' subscription buffer (default 1<<16: a
	// flood must not outrun it; a dropped message fails the run).
	Buffer int
}

// Result is what a run measured.
type Result struct {
	Count int
	// Elapsed runs from the first message received to the last: the rate
	// is (Count-1)/Elapsed, connection set-up left out.
	Elapsed time.Duration
	// Latencies (paced runs only), in the order received: the time from
	// the feeder writing a message to the client having decoded it.
	Latencies []time.Duration
}

// Rate is messages a second, first to last.
func (r Result) Rate() float64 {
	if r.Count < 2 || r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Count-1) / r.Elapsed.Seconds()
}

// Percentile returns the p-quantile (0 ≤ p ≤ 1) of the latencies, 0 if
// there are none.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	l := slices.Clone(r.Latencies)
	slices.Sort(l)
	return l[int(float64(len(l)-1)*p)]
}

// ErrSeq reports a message out of sequence: lost, repeated or reordered.
var ErrSeq = errors.New("clients: message out of sequence")

// Run makes one run. It returns an error if any message is missing, out of
// sequence or undecodable, or if ctx ends first.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.N < 1 || cfg.N > feeder.MaxCount {
		return Result{}, fmt.Errorf("clients: N %d out of range 1..%d", cfg.N, feeder.MaxCount)
	}
	if cfg.Rate < 0 {
		return Result{}, fmt.Errorf("clients: negative rate %v", cfg.Rate)
	}
	switch cfg.Kind {
	case Raw, RawJSON:
		return runRaw(ctx, cfg)
	case CableJSON:
		return runCable(ctx, cfg, protocol.JSONCodec{})
	case CableMsgPack:
		return runCable(ctx, cfg, protocol.MessagePackCodec{})
	}
	return Result{}, fmt.Errorf("clients: unknown kind %q", cfg.Kind)
}

// work is the action that asks the feeder for the run.
func work(cfg Config) map[string]any {
	if cfg.Rate > 0 {
		return map[string]any{"count": cfg.N, "rate": cfg.Rate}
	}
	return map[string]any{"count": cfg.N}
}

func action(cfg Config) string {
	if cfg.Rate > 0 {
		return "paced"
	}
	return "flood"
}

// recorder keeps time and checks seq, the same way for every kind.
type recorder struct {
	res   Result
	start time.Time
	paced bool
}

func newRecorder(cfg Config) *recorder {
	r := &recorder{paced: cfg.Rate > 0}
	if r.paced {
		r.res.Latencies = make([]time.Duration, 0, cfg.N)
	}
	return r
}

// got records one message: seq is checked unless the client decoded none
// (Raw); ts, its stamp, is read only in paced runs.
func (r *recorder) got(seq, ts int64, decoded bool) error {
	now := time.Now()
	if r.res.Count == 0 {
		r.start = now
	}
	if want := feeder.FirstSeq + int64(r.res.Count); decoded && seq != want {
		return fmt.Errorf("%w: seq %d, want %d", ErrSeq, seq, want)
	}
	if r.paced {
		r.res.Latencies = append(r.res.Latencies, time.Duration(now.UnixNano()-ts))
	}
	r.res.Count++
	r.res.Elapsed = now.Sub(r.start)
	return nil
}

func runRaw(ctx context.Context, cfg Config) (Result, error) {
	c, _, err := ws.Dial(ctx, cfg.URL, &ws.DialOptions{Subprotocols: []string{protocol.SubprotocolJSON}})
	if err != nil {
		return Result{}, fmt.Errorf("clients: dial: %w", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	// Reads take a context that is never done, as a read loop's usually
	// is (a cancellable one costs coder/websocket a timer per read); ctx
	// ending closes the connection instead, which ends the loop.
	stop := context.AfterFunc(ctx, func() { c.CloseNow() })
	defer stop()
	rctx := context.Background()
	buf := make([]byte, 0, 4096)
	read := func() ([]byte, error) {
		_, r, err := c.Reader(rctx)
		if err != nil {
			return nil, err
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, 4096)
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				return buf, nil
			}
			if err != nil {
				return nil, err
			}
		}
	}
	// The handshake, as ActionCable's: welcome, subscribe, confirm, then
	// the action that starts the run.
	id, _ := json.Marshal(Identifier)
	for _, want := range []string{`"welcome"`, `"confirm_subscription"`} {
		if want == `"confirm_subscription"` {
			if err := c.Write(ctx, ws.MessageText, fmt.Appendf(nil, `{"command":"subscribe","identifier":%s}`, id)); err != nil {
				return Result{}, fmt.Errorf("clients: subscribe: %w", err)
			}
		}
		for {
			b, err := read()
			if err != nil {
				return Result{}, fmt.Errorf("clients: waiting for %s: %w", want, err)
			}
			if bytes.Contains(b, []byte(want)) {
				break
			}
		}
	}
	data := work(cfg)
	data["action"] = action(cfg)
	d, _ := json.Marshal(data)
	ds, _ := json.Marshal(string(d))
	if err := c.Write(ctx, ws.MessageText, fmt.Appendf(nil, `{"command":"message","identifier":%s,"data":%s}`, id, ds)); err != nil {
		return Result{}, fmt.Errorf("clients: perform: %w", err)
	}

	rec := newRecorder(cfg)
	ping := []byte(`{"type":"ping"`)
	for rec.res.Count < cfg.N {
		b, err := read()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return rec.res, fmt.Errorf("clients: after %d messages: %w", rec.res.Count, err)
		}
		if bytes.HasPrefix(b, ping) {
			continue
		}
		var seq, ts int64
		switch {
		case cfg.Kind == RawJSON:
			var m struct {
				Identifier string
				Message    feeder.Tick
			}
			if err := json.Unmarshal(b, &m); err != nil {
				return rec.res, fmt.Errorf("clients: message %d: %w", rec.res.Count, err)
			}
			seq, ts = m.Message.Seq, m.Message.Ts
		case rec.paced: // Raw: scan for ts only, to time the message
			if ts, err = scanTs(b); err != nil {
				return rec.res, err
			}
		}
		if err := rec.got(seq, ts, cfg.Kind == RawJSON); err != nil {
			return rec.res, err
		}
	}
	return rec.res, nil
}

// scanTs finds "ts": in a JSON frame and parses the integer after it.
func scanTs(b []byte) (int64, error) {
	i := bytes.Index(b, []byte(`"ts":`))
	if i < 0 {
		return 0, fmt.Errorf("clients: no ts in %q", b)
	}
	b = b[i+5:]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return strconv.ParseInt(string(b[:j]), 10, 64)
}

func runCable(ctx context.Context, cfg Config, codec protocol.Codec) (Result, error) {
	opts := append([]cable.Option{cable.WithCodecs(codec), cable.WithStaleTimeout(time.Minute)}, cfg.CableOptions...)
	c, err := cable.Dial(ctx, cfg.URL, opts...)
	if err != nil {
		return Result{}, fmt.Errorf("clients: dial: %w", err)
	}
	defer c.Close()
	buf := cfg.Buffer
	if buf <= 0 {
		buf = 1 << 16
	}
	sub, err := c.Subscribe(ctx, Identifier, cable.WithBuffer(buf))
	if err != nil {
		return Result{}, fmt.Errorf("clients: subscribe: %w", err)
	}
	if err := sub.Perform(ctx, action(cfg), work(cfg)); err != nil {
		return Result{}, fmt.Errorf("clients: perform: %w", err)
	}
	// The loop a user writes; ctx ending closes the consumer, which ends it.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	rec := newRecorder(cfg)
	for p := range sub.Messages() {
		var t feeder.Tick
		if err := p.Decode(&t); err != nil {
			return rec.res, fmt.Errorf("clients: message %d: %w", rec.res.Count, err)
		}
		if err := rec.got(t.Seq, t.Ts, true); err != nil {
			return rec.res, err
		}
		if rec.res.Count == cfg.N {
			break
		}
	}
	if rec.res.Count < cfg.N {
		if ctx.Err() != nil {
			return rec.res, fmt.Errorf("clients: after %d messages: %w", rec.res.Count, ctx.Err())
		}
		return rec.res, fmt.Errorf("clients: subscription ended after %d messages: %w", rec.res.Count, sub.Err())
	}
	if d := sub.Dropped(); d > 0 {
		return rec.res, fmt.Errorf("clients: %d messages dropped by the subscription buffer (%d)", d, buf)
	}
	return rec.res, nil
}
