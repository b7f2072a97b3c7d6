//go:build linux

package bridge_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
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
	ctx := testCtx(t, 150*time.Second)
	stream := identifier("NumbersChannel", "stream", "stall")
	// Big messages fill the staller's socket buffers (the bridge's grows
	// to a few MiB) in few broadcasts; small ones then pass quickly.
	big, small := strings.Repeat("x", 32000), strings.Repeat("x", 100)

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
	if code, body := e.send(ctx, s, 1, cmd("subscribe", stream, "")); code != http.StatusOK {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	lastSeq := uint64(0)
	for {
		ev, err := sc.next()
		if err != nil {
			t.Fatalf("staller before the stall: %v", err)
		}
		lastSeq = ev.seq
		if strings.Contains(ev.data, "confirm_subscription") {
			break
		}
	}

	// Broadcast batches; after each, every reader must have it before the
	// next. Count the batches that got through while the bridge could not
	// write to the staller but had not cut it off yet. A staller that held
	// the others back would let none through until its cut.
	next, whileStalled := 0, 0
	bridgePort := e.srv.Listener.Addr().(*net.TCPAddr).Port
	batch := func(count int, pad string) {
		t.Helper()
		msgs := make([]any, 0, count)
		for range count {
			msgs = append(msgs, map[string]any{"n": next, "pad": pad})
			next++
		}
		if err := e.rails.BroadcastMany(ctx, "numbers:stall", msgs); err != nil {
			t.Fatal(err)
		}
		for i, d := range others {
			for want := next - count; want < next; want++ {
				f, err := nextMatch(ctx, d, nil, notPing)
				if err != nil || f.number() != want {
					t.Fatalf("reader %d: %v %v, want message %d", i, f, err, want)
				}
			}
		}
	}
	stalledAt := time.Now()
	cutBy := stalledAt.Add(120 * time.Second) // the write timeout and time to fill the buffers, with room
	prevTx, filled := uint64(0), false
	for {
		// The bridge's socket to the staller: open, and its send queue
		// neither growing nor draining over a whole batch: the bridge can
		// write no more to it (its write is blocked, or its session is
		// held back).
		state, tx := tcpState(bridgePort, sc.localPort)
		open := state == tcpEstablished
		blocked := open && tx > 0 && tx == prevTx
		prevTx = tx
		filled = filled || blocked
		if filled {
			batch(1, small)
		} else {
			batch(10, big)
		}
		if !open {
			break
		}
		if blocked {
			whileStalled++
		}
		if time.Now().After(cutBy) {
			t.Fatalf("the staller was not cut off within %v", cutBy.Sub(stalledAt))
		}
	}
	cutAfter := time.Since(stalledAt)
	t.Logf("staller cut off after about %v (%d messages); %d broadcasts reached the 3 readers while it was blocked",
		cutAfter.Round(100*time.Millisecond), next, whileStalled)
	if whileStalled < 3 {
		t.Errorf("only %d broadcasts reached the other readers while the staller was blocked and not cut off yet", whileStalled)
	}
	batch(1, small) // and after

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
