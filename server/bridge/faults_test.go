//go:build linux

package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/internal/tcpcut"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/server/bridge"
)

// TestFaultStalledClient: an SSE client that stops reading its socket (a
// 128 KiB receive buffer, then no reads) is cut off once the bridge cannot
// write to it in time, while three other sessions subscribed to the same
// Rails stream keep receiving every message, in order, all along: the
// stalled one holds back only its own session. After the cut the stalled
// client reads what its socket held, meets the end of the stream, and
// resumes at its cursor: it gets the rest, or a reset that says frames
// were trimmed, never a silent gap.
func TestFaultStalledClient(t *testing.T) {
	e := newEnvWith(t, envConfig{rails: []railstest.Option{railstest.WithOrderedDelivery()}})
	ctx := testCtx(t, 280*time.Second)
	stream := identifier("NumbersChannel", "stream", "stall")
	// Big messages on a stream of the staller's own fill its socket
	// buffers (the bridge's grows to a few MiB) in few broadcasts, with no
	// work for the readers.
	fill := identifier("NumbersChannel", "stream", "stall-fill")
	big, small := strings.Repeat("x", 900<<10), strings.Repeat("x", 100) // big: under the 1 MiB frame limit

	// Three readers.
	var others []*sseDown
	for i := range 3 {
		s := e.create(ctx, fmt.Sprintf("reader%d", i))
		st, _, err := e.openSSE(ctx, s, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := &sseDown{e: e, s: s, st: st}
		t.Cleanup(d.close)
		subscribeDown(t, ctx, d, stream)
		others = append(others, d)
	}

	// The staller: a 128 KiB receive buffer (a tiny one lets the kernel
	// trickle data in as it compacts it), read up to the
	// confirmation and then left alone.
	s := e.create(ctx, "staller")
	sc, err := dialStaller(ctx, e, s)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.close()
	if code, body := e.send(ctx, s, 1, cmd("subscribe", stream, ""), cmd("subscribe", fill, "")); code != http.StatusOK {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	lastSeq := uint64(0)
	for confirmed := 0; confirmed < 2; {
		ev, err := sc.next()
		if err != nil {
			t.Fatalf("staller before the stall: %v", err)
		}
		lastSeq = ev.seq
		if strings.Contains(ev.data, "confirm_subscription") {
			confirmed++
		}
	}

	// The readers read on goroutines of their own, checking the order;
	// numbers are broadcast every 50 ms to all four sessions.
	var progress [3]atomic.Int64 // the last number each reader has
	readErr := make(chan error, len(others))
	for i, d := range others {
		progress[i].Store(-1)
		go func() {
			for want := 0; ; want++ {
				f, err := nextMatch(ctx, d, nil, notPing)
				if err == nil && f.number() != want {
					err = fmt.Errorf("%v, want message %d", f, want)
				}
				if err != nil {
					readErr <- fmt.Errorf("reader %d: %w", i, err)
					return
				}
				progress[i].Store(int64(want))
			}
		}()
	}
	least := func() int64 {
		return min(progress[0].Load(), progress[1].Load(), progress[2].Load())
	}
	var sent atomic.Int64
	stop := make(chan struct{})
	broadcastErr := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			if err := e.rails.Broadcast(ctx, "numbers:stall", map[string]any{"n": n, "pad": small}); err != nil {
				broadcastErr <- err
				return
			}
			sent.Store(int64(n + 1))
			select {
			case <-stop:
				broadcastErr <- nil
				return
			case <-tick.C:
			}
		}
	}()

	// Every 100 ms, look at the bridge's socket to the staller. While its
	// send queue grows, the staller still takes data: push a big message
	// to it. Once it stops growing (the bridge can write no more to the
	// staller: its write blocks, or its session is held back), count
	// the intervals in which the readers still got something, until the
	// bridge cuts the staller off. A staller that held the others back
	// would let them get nothing until its cut.
	bridgePort := e.srv.Listener.Addr().(*net.TCPAddr).Port
	whileStalled, bigs, filled := 0, 0, false
	stalledAt := time.Now()
	cutBy := stalledAt.Add(200 * time.Second) // the write timeout and time to fill the buffers, with room
	prevTx, prevLeast, pacedAt, prevBlocked := uint64(0), int64(-1), int64(-1), false
	type sample struct {
		at    time.Time
		least int64
	}
	var samples []sample
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-readErr:
			t.Fatal(err)
		case err := <-broadcastErr:
			t.Fatalf("broadcast: %v", err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-tick.C:
		}
		state, tx := tcpState(bridgePort, sc.localPort)
		open := state == tcpEstablished
		// Not grown: the bridge added nothing (the peer may have taken a
		// little: a kernel compacting its receive queue reopens the window
		// a crack now and then).
		blocked := open && tx > 0 && prevTx > 0 && tx <= prevTx
		l := least()
		// Counted only inside a blocked stretch (this interval and the one
		// before it): a stalled write that held the others back could
		// still let a number through at the stretch's edges.
		if blocked && prevBlocked && l > prevLeast {
			whileStalled++
		}
		prevBlocked = blocked
		if blocked && !filled {
			filled = true
			t.Logf("the bridge can write no more to the staller after %v (%d big messages, send queue %d bytes)",
				time.Since(stalledAt).Round(100*time.Millisecond), bigs, tx)
		}
		prevTx, prevLeast = tx, l
		samples = append(samples, sample{time.Now(), l})
		if !open {
			break
		}
		// One big message at a time: the next once the readers have a
		// number broadcast after it (Rails' single worker is first in,
		// first out), so Rails never queues big ones ahead of the numbers.
		if !blocked && l >= pacedAt {
			pacedAt = sent.Load()
			if err := e.rails.Broadcast(ctx, "numbers:stall-fill", map[string]any{"big": bigs, "pad": big}); err != nil {
				t.Fatal(err)
			}
			bigs++
		}
		if time.Now().After(cutBy) {
			t.Fatalf("the staller was not cut off within %v (%d big messages, bridge send queue %d bytes, blocked %v, %d intervals with reader progress while blocked)",
				cutBy.Sub(stalledAt), bigs, tx, filled, whileStalled)
		}
	}
	cutAfter := time.Since(stalledAt)
	// The cut ends a write that could not finish within the write timeout
	// (10 s): for the 10 s before it the staller's write was blocked. The
	// readers must have got more in the middle of that stretch, from
	// 9.5 s to 4 s before the cut was seen (room for a slow sampling loop).
	cut := samples[len(samples)-1].at
	var from, to *sample
	for i := range samples {
		if !samples[i].at.After(cut.Add(-9500 * time.Millisecond)) {
			from = &samples[i]
		}
		if !samples[i].at.After(cut.Add(-4 * time.Second)) {
			to = &samples[i]
		}
	}
	t.Logf("staller cut off after about %v (%d big messages); readers got more in %d intervals of 100 ms inside blocked stretches",
		cutAfter.Round(100*time.Millisecond), bigs, whileStalled)
	if from == nil || to == nil {
		t.Errorf("no sample 9.5 s before the cut (%v after the stall began)", cutAfter)
	} else if to.least <= from.least {
		t.Errorf("the readers got nothing while the staller's last write was blocked: number %d %v before its cut, still %d %v before it",
			from.least, cut.Sub(from.at).Round(100*time.Millisecond), to.least, cut.Sub(to.at).Round(100*time.Millisecond))
	} else {
		t.Logf("while the staller's last write was blocked the readers went from number %d to %d", from.least, to.least)
	}
	// And after.
	close(stop)
	if err := <-broadcastErr; err != nil {
		t.Fatalf("broadcast: %v", err)
	}
	next := int(sent.Load())
	for least() < int64(next-1) {
		select {
		case err := <-readErr:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatalf("the readers have up to %d of %d", least(), next-1)
		case <-tick.C:
		}
	}

	// The staller reads again: what its socket held, then the end.
	got := 0
	for {
		ev, err := sc.next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			break
		}
		if err != nil {
			t.Fatalf("staller after the cut: %v", err)
		}
		if ev.event != "" {
			t.Fatalf("staller: event %q %q, want frames and then the cut", ev.event, ev.data)
		}
		if ev.seq != 0 {
			if ev.seq != lastSeq+1 {
				t.Fatalf("staller: frame %d after %d", ev.seq, lastSeq)
			}
			lastSeq = ev.seq
			got++
		}
	}
	sc.close()
	// It resumes at its cursor: the rest, in order, or a reset.
	st, _, err := e.openSSE(ctx, s, http.Header{"Last-Event-ID": {fmt.Sprintf("%d:%d", s.Epoch, lastSeq)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &sseDown{e: e, s: s, st: st, last: lastSeq}
	defer d.close()
	resumed := 0
	for {
		f, err := nextMatch(ctx, d, nil, notPing)
		if errors.Is(err, errSSEReset) {
			t.Logf("staller: resume refused with a reset (%v), as the resume window allows", err)
			break
		}
		if err != nil {
			t.Fatalf("staller resuming after frame %d: %v", lastSeq, err)
		}
		resumed++
		if f.number() == next-1 {
			break
		}
	}
	t.Logf("staller: %d frames from its socket after the cut, %d on resuming", got, resumed)
}

// subscribeDown reads d's welcome, subscribes to identifier and reads the
// confirmation.
func subscribeDown(t *testing.T, ctx context.Context, d downstream, identifier string) {
	t.Helper()
	if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
		t.Fatalf("%v %v, want a welcome", f, err)
	}
	if err := d.command(ctx, cmd("subscribe", identifier, "")); err != nil {
		t.Fatal(err)
	}
	if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "confirm_subscription" {
		t.Fatalf("%v %v, want the confirmation", f, err)
	}
}

// staller is a raw SSE client with a small receive buffer that reads only
// when told to.
type staller struct {
	conn      net.Conn
	localPort int
	resp      *http.Response
	br        *bufio.Reader
	cancel    context.CancelFunc
	once      sync.Once
}

type rawEvent struct {
	seq         uint64
	event, data string
}

func dialStaller(ctx context.Context, e *env, s sessionInfo) (*staller, error) {
	sc := &staller{}
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 128<<10)
		})
		return errors.Join(err, serr)
	}}
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				sc.conn = c
				sc.localPort = c.LocalAddr().(*net.TCPAddr).Port
			}
			return c, err
		},
	}}
	rctx, cancel := context.WithCancel(context.Background())
	sc.cancel = cancel
	req, err := http.NewRequestWithContext(rctx, "GET", e.srv.URL+"/sessions/"+s.SID+"/sse?"+url.Values{"token": {s.Token}}.Encode(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("sse: HTTP %d", resp.StatusCode)
	}
	sc.resp, sc.br = resp, bufio.NewReader(resp.Body)
	return sc, nil
}

// next reads the next event with an id, data or event name (comments and
// retry blocks are skipped), within 30 s.
func (sc *staller) next() (rawEvent, error) {
	sc.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var ev rawEvent
	has := false
	for {
		line, err := sc.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if has {
				return ev, nil
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			_, seq, _ := strings.Cut(value, ":")
			ev.seq, _ = strconv.ParseUint(seq, 10, 64)
			has = true
		case "data":
			ev.data += value
			has = true
		case "event":
			ev.event = value
			has = true
		}
	}
}

func (sc *staller) close() {
	sc.once.Do(func() {
		sc.cancel()
		sc.resp.Body.Close()
	})
}

const tcpEstablished = "01"

// tcpState is the state (as /proc/net/tcp writes it: "01" established)
// of the socket on this machine from local port to remote port on
// 127.0.0.1, or "" if there is none, and the bytes in its send queue.
func tcpState(localPort, remotePort int) (string, uint64) {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return "", 0
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		_, lp, _ := strings.Cut(f[1], ":")
		_, rp, _ := strings.Cut(f[2], ":")
		l, err1 := strconv.ParseUint(lp, 16, 16)
		r, err2 := strconv.ParseUint(rp, 16, 16)
		if err1 == nil && err2 == nil && int(l) == localPort && int(r) == remotePort {
			txq, _, _ := strings.Cut(f[4], ":")
			tx, _ := strconv.ParseUint(txq, 16, 64)
			return f[3], tx
		}
	}
	return "", 0
}

// TestFaultCompatUpstreamCut: the compat API (server/COMPAT.md) keeps its
// events id across upstream losses: it redials Rails and subscribes again.
// The bridge's socket to Rails is reset twice during a numbered stream;
// the listener must see, for each cut, "disconnected" and then "connected"
// again, every number missing lies between those two, none comes twice
// or out of order, msg_id counts every event with no gap, and after the
// last reconnect nothing is lost.
func TestFaultCompatUpstreamCut(t *testing.T) {
	rails := railstest.Start(t, railstest.WithOrderedDelivery())
	up, err := tcpcut.New(fmt.Sprintf("127.0.0.1:%d", rails.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	b := bridge.New("ws://"+up.Addr()+"/cable", bridge.WithUpstreamBackoff(backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}))
	srv := httptest.NewServer(b)
	defer func() {
		srv.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Close(cctx)
	}()
	ctx := testCtx(t, 60*time.Second)
	auth := http.Header{"Authorization": {"Bearer secret-erin"}}
	id := "faultsCompatUpstreamCut0001"

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A queue bound above what the test sends in a burst: with the
	// default (32) an attached listener whose stream writer is a little
	// behind a burst loses the oldest events, which the bound allows
	// (COMPAT.md; the listener sees a gap in msg_id).
	req, _ := http.NewRequestWithContext(rctx, "GET", srv.URL+"/events/"+id+"?poll-queue=1024", nil)
	req.Header = auth.Clone()
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /events: %v %v", resp, err)
	}
	st := &sseStream{Resp: resp, events: make(chan sseEvent, 4096), stop: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go st.read(bufio.NewReader(resp.Body))
	defer st.Close()
	body := `[{"identifier":{"channel":"NumbersChannel","stream":"compat-cut"},"subscribe":true}]`
	preq, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/events/"+id, strings.NewReader(body))
	preq.Header = auth.Clone()
	presp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	pbody, _ := io.ReadAll(presp.Body)
	presp.Body.Close()
	if presp.StatusCode != 200 || strings.Contains(string(pbody), "error") {
		t.Fatalf("subscribe: %d %s", presp.StatusCode, pbody)
	}

	// The listener's view, in order.
	type item struct {
		typ   string
		n     int
		msgID uint64
	}
	items := make(chan item, 4096)
	go func() {
		defer close(items)
		for {
			ev, err := st.next(ctx)
			if err != nil {
				return
			}
			if !ev.HasData {
				continue
			}
			var m struct {
				Type    string
				MsgID   string `json:"msg_id"`
				Message json.RawMessage
			}
			if json.Unmarshal([]byte(ev.Data), &m) != nil {
				items <- item{typ: "unparsable " + ev.Data}
				continue
			}
			it := item{typ: m.Type, n: -1}
			it.msgID, _ = strconv.ParseUint(m.MsgID, 10, 64)
			if m.Type == "received" {
				var v struct{ N *int }
				if json.Unmarshal(m.Message, &v) == nil && v.N != nil {
					it.n = *v.N
				}
			}
			items <- it
		}
	}()
	var log []item
	waitFor := func(what string, ok func(item) bool) {
		t.Helper()
		for {
			select {
			case it, open := <-items:
				if !open {
					t.Fatalf("stream ended waiting for %s; seen %v", what, len(log))
				}
				log = append(log, it)
				if ok(it) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %s before the deadline", what)
			}
		}
	}
	waitFor("the confirmation", func(it item) bool { return it.typ == "connected" })

	var next atomic.Int64
	stop := make(chan struct{})
	streamed := make(chan error, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			from := int(next.Load())
			if err := broadcastNumbers(ctx, &env{rails: rails}, "compat-cut", from, from+10, 10); err != nil {
				streamed <- err
				return
			}
			next.Store(int64(from + 10))
			select {
			case <-stop:
				streamed <- nil
				return
			case <-tick.C:
			}
		}
	}()
	const cuts = 2
	for range cuts {
		seen := 0
		waitFor("20 messages", func(it item) bool {
			if it.n >= 0 {
				seen++
			}
			return seen >= 20
		})
		if n := up.Cut(); n != 1 {
			t.Fatalf("cut %d upstream connections, want 1", n)
		}
		waitFor("disconnected", func(it item) bool { return it.typ == "disconnected" })
		waitFor("connected again", func(it item) bool { return it.typ == "connected" })
	}
	close(stop)
	if err := <-streamed; err != nil {
		t.Fatal(err)
	}
	from := int(next.Load())
	if err := broadcastNumbers(ctx, &env{rails: rails}, "compat-cut", from, from+50, 10); err != nil {
		t.Fatal(err)
	}
	waitFor("the last message", func(it item) bool { return it.n == from+49 })

	last, down, lost, received, disconnects := -1, false, 0, 0, 0
	var prevID uint64
	for _, it := range log {
		if it.msgID != 0 {
			if it.msgID != prevID+1 {
				t.Errorf("msg_id %d after %d: events dropped or repeated", it.msgID, prevID)
			}
			prevID = it.msgID
		}
		switch {
		case it.typ == "disconnected":
			down = true
			disconnects++
		case it.typ == "connected", it.typ == "joined":
		case it.n >= 0:
			received++
			switch {
			case it.n <= last:
				t.Errorf("message %d after %d: repeated or out of order", it.n, last)
			case it.n != last+1 && !down:
				t.Errorf("messages %d…%d skipped with no disconnected event", last+1, it.n-1)
			case it.n != last+1:
				lost += it.n - last - 1
			}
			last, down = max(last, it.n), false
		default:
			t.Errorf("unexpected event %+v", it)
		}
	}
	if t.Failed() {
		var b strings.Builder
		for _, it := range log {
			if it.n >= 0 {
				fmt.Fprintf(&b, "%d(%d) ", it.n, it.msgID)
			} else {
				fmt.Fprintf(&b, "[%s %d] ", it.typ, it.msgID)
			}
		}
		t.Logf("the listener saw: %s", b.String())
	}
	t.Logf("compat: %d messages broadcast, %d upstream cuts: %d received, %d lost across %d disconnected/connected pairs",
		from+50, cuts, received, lost, disconnects)
	if disconnects != cuts || received+lost != from+50 {
		t.Errorf("%d disconnected events (want %d); %d received + %d lost of %d", disconnects, cuts, received, lost, from+50)
	}
}
