//go:build unix

package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

// broadcastNumbers broadcasts {"n": from…to-1} to numbers:<stream> in
// chunks, one request per chunk.
func broadcastNumbers(ctx context.Context, e *env, stream string, from, to, chunk int) error {
	for i := from; i < to; i += chunk {
		msgs := make([]any, 0, chunk)
		for n := i; n < min(i+chunk, to); n++ {
			msgs = append(msgs, map[string]int{"n": n})
		}
		if err := e.rails.BroadcastMany(ctx, "numbers:"+stream, msgs); err != nil {
			return err
		}
	}
	return nil
}

// checkNumbers reports numbers missing from or repeated in got, which
// should hold each of 0…total-1 once, in any order (Rails 6.1 reorders
// bursts).
func checkNumbers(t *testing.T, got []int, total int) {
	t.Helper()
	seen := make([]int, total)
	for _, n := range got {
		if n < 0 || n >= total {
			t.Errorf("number %d out of range", n)
			continue
		}
		seen[n]++
	}
	var missing, dup []int
	for n, c := range seen {
		switch {
		case c == 0:
			missing = append(missing, n)
		case c > 1:
			dup = append(dup, n)
		}
	}
	if len(missing) > 0 || len(dup) > 0 {
		t.Errorf("%d numbers received: missing %v, duplicated %v", len(got), missing, dup)
	}
}

// TestSSEResumeMidStream drops the SSE stream twice while Rails broadcasts
// 300 numbered messages and resumes it each time with Last-Event-ID, as
// EventSource does: every number arrives once, and the sequence numbers
// run on with no gap and no repeat across the three connections.
func TestSSEResumeMidStream(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 60*time.Second)
	s := e.create(ctx, "alice")
	st, _, err := e.openSSE(ctx, s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &sseDown{e: e, s: s, st: st}
	defer func() { d.close() }()
	if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
		t.Fatalf("welcome: %v %v", f, err)
	}
	id := identifier("NumbersChannel", "stream", "resume")
	tick := identifier("NumbersChannel", "stream", "tick")
	for _, id := range []string{id, tick} {
		if err := d.command(ctx, cmd("subscribe", id, "")); err != nil {
			t.Fatal(err)
		}
		if _, err := nextMatch(ctx, d, nil, func(f tframe) bool { return f.kind() == "confirm_subscription" }); err != nil {
			t.Fatal(err)
		}
	}

	const total = 300
	var sent atomic.Int64 // numbers broadcast so far
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < total && err == nil; i += 10 {
			err = broadcastNumbers(ctx, e, "resume", i, i+10, 10)
			sent.Store(int64(i + 10))
		}
		done <- err
	}()

	var (
		got    []int
		lastID string
		drops  []int64 // numbers broadcast when each drop happened
	)
	for len(got) < total {
		f, err := d.next(ctx)
		if err != nil {
			t.Fatalf("after %d numbers (last id %s): %v", len(got), lastID, err)
		}
		if f.kind() == "ping" {
			continue
		}
		if n := f.number(); n >= 0 {
			got = append(got, n)
		} else if f.Identifier != tick {
			t.Errorf("unexpected frame %v", f)
		}
		lastID = f.ID
		if len(got) == 100 || len(got) == 200 {
			// The connection breaks: whatever the bridge had written
			// after this event is lost with it. Make sure there is some.
			if err := waitFor(ctx, "frames written ahead of the reader", func() bool { return e.bridge.Stats().FramesOut >= f.Seq+5 }); err != nil {
				t.Fatal(err)
			}
			// And one more frame written after those, whatever the
			// broadcaster is doing: a handler that took its own
			// progress for an acknowledgement frees them by now.
			out := e.bridge.Stats().FramesOut
			if err := e.rails.Broadcast(ctx, "numbers:tick", map[string]int{"tick": len(got)}); err != nil {
				t.Fatal(err)
			}
			if err := waitFor(ctx, "the tick to be written", func() bool { return e.bridge.Stats().FramesOut > out }); err != nil {
				t.Fatal(err)
			}
			drops = append(drops, sent.Load())
			d.st.Close()
			st, _, err := e.openSSE(ctx, s, http.Header{"Last-Event-ID": {lastID}}, nil)
			if err != nil {
				t.Fatalf("resume at %s: %v", lastID, err)
			}
			d.st = st // d.last carries on: the next id must follow lastID
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkNumbers(t, got, total)
	if drops[0] >= total {
		t.Logf("the first drop came after the last broadcast (%v)", drops)
	}
	t.Logf("drops while %v of %d numbers were broadcast; last id %s", drops, total, lastID)

	// Nothing more is pending: a resume at the last id waits.
	if st := e.bridge.Stats(); st.Evicted != 0 {
		t.Errorf("%d frames evicted", st.Evicted)
	}
}

// TestLongPollLostResponse loses a long-poll answer the bridge has written
// (the client never reads it): polling again from the same cursor returns
// those frames, since only a later cursor acknowledges them. Once a later
// cursor has, the old one gets a reset.
func TestLongPollLostResponse(t *testing.T) {
	served := make(chan string, 16)
	e := newEnvWith(t, envConfig{after: func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/poll") {
			select {
			case served <- r.URL.RawQuery:
			default: // drained before the poll that matters
			}
		}
	}})
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "alice")
	var after uint64
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "welcome" })
	drain(served)
	id := identifier("NumbersChannel", "stream", "lost")
	if code, body := e.send(ctx, s, 1, cmd("subscribe", id, "")); code != 200 {
		t.Fatalf("send: %d %s", code, body)
	}
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	drain(served)
	cursor := after

	const total = 20
	if err := broadcastNumbers(ctx, e, "lost", 0, total, total); err != nil {
		t.Fatal(err)
	}
	// welcome, confirmation and the numbers: wait until the bridge has
	// sequenced them all, so one poll answer carries them.
	if err := waitFor(ctx, "the numbers to reach the bridge", func() bool { return e.bridge.Stats().FramesIn >= 2+total }); err != nil {
		t.Fatal(err)
	}

	// A poll whose answer is written but never read: raw TCP, closed
	// unread once the handler has flushed the answer.
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"token": {s.Token}, "after": {fmt.Sprint(cursor)}, "timeout": {"5"}}
	fmt.Fprintf(conn, "GET /sessions/%s/poll?%s HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n", s.SID, q.Encode())
	select {
	case <-served:
	case <-ctx.Done():
		t.Fatal("the lost poll was not served")
	}
	conn.Close()
	if out := e.bridge.Stats().FramesOut; out < total {
		t.Fatalf("frames out %d: the lost answer did not carry the numbers", out)
	}

	// The same cursor again: everything is still there.
	var got []int
	next := cursor
	for len(got) < total {
		p, err := e.tryPoll(ctx, s, next, "5")
		if err != nil {
			t.Fatal(err)
		}
		if p.Reset || p.Ended {
			t.Fatalf("poll after %d: %+v", next, p)
		}
		for _, raw := range p.Frames {
			f, err := parseFrame(raw)
			if err != nil {
				t.Fatal(err)
			}
			if n := f.number(); n >= 0 {
				got = append(got, n)
			}
		}
		next = p.Next
	}
	checkNumbers(t, got, total)
	if next != cursor+total {
		t.Errorf("next %d, want %d", next, cursor+total)
	}

	// A poll from the end acknowledges everything: a poll from the old
	// cursor (a client that acknowledged more through another downstream)
	// goes on after the acknowledgement, and gets none of them again.
	p, err := e.tryPoll(ctx, s, next, "0")
	if err != nil || p.Reset || len(slices.DeleteFunc(p.Frames, func(r json.RawMessage) bool { return frameType(r) == "ping" })) != 0 {
		t.Fatalf("poll at the end: %+v %v", p, err)
	}
	if p, err := e.tryPoll(ctx, s, cursor, "0"); err != nil || p.Reset || p.Next != next ||
		len(slices.DeleteFunc(p.Frames, func(r json.RawMessage) bool { return frameType(r) == "ping" })) != 0 {
		t.Fatalf("poll from an acknowledged cursor: %+v %v, want no frame and next %d", p, err, next)
	}
}

func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// TestBurstHeldBack: a client that does not read holds its session's
// upstream back (the bridge stops reading Rails' socket) instead of losing
// frames: with a queue of 4, a burst of 20 is taken 4 at a time as the
// client reads, and all 20 arrive once, in order.
func TestBurstHeldBack(t *testing.T) {
	e := newEnv(t, bridge.WithQueue(4, 0))
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "alice")
	var after uint64
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "welcome" })
	id := identifier("NumbersChannel", "stream", "burst")
	if code, body := e.send(ctx, s, 1, cmd("subscribe", id, "")); code != 200 {
		t.Fatalf("send: %d %s", code, body)
	}
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	base := e.bridge.Stats().FramesIn
	const total = 20
	if err := broadcastNumbers(ctx, e, "burst", 0, total, total); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, "the queue to fill", func() bool { return e.bridge.Stats().FramesIn >= base+3 }); err != nil {
		t.Fatal(err)
	}
	// The session's frames are numbered 1, 2, …: FramesIn is the highest
	// (the only session of this bridge) and after the client's cursor, so
	// the difference is what the bridge holds unsent.
	if in := e.bridge.Stats().FramesIn; in > after+4 {
		t.Errorf("the bridge holds %d frames its client has not read, want at most the queue's 4", in-after)
	}
	var got []int
	for len(got) < total && ctx.Err() == nil {
		p := e.poll(ctx, s, after, "5")
		if p.Reset || p.Ended {
			t.Fatalf("poll: %+v", p)
		}
		for _, raw := range p.Frames {
			if f, _ := parseFrame(raw); f.number() >= 0 {
				got = append(got, f.number())
			}
		}
		after = p.Next
	}
	slices.Sort(got) // Rails' async adapter does not keep broadcasts in order
	if fmt.Sprint(got) != fmt.Sprint(seqRange(0, total)) {
		t.Errorf("received %v, want 0..%d once each", got, total-1)
	}
	if ev := e.bridge.Stats().Evicted; ev != 0 {
		t.Errorf("Evicted %d, want 0", ev)
	}
}

// TestTrimmedWindowIsReset: frames sent on an event stream but never
// acknowledged are kept for resuming only up to the resume window; a
// client that asks for trimmed ones learns it as a reset with the reason
// (long-poll reset:true, SSE "event: reset", WebSocket re-attach 409).
func TestTrimmedWindowIsReset(t *testing.T) {
	frameSize := len(`{"identifier":"{\"channel\":\"NumbersChannel\",\"stream\":\"trim\"}","message":{"n":10}}`)
	e := newEnv(t, bridge.WithResumeWindow(4*frameSize))
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "alice")
	var after uint64
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "welcome" })
	id := identifier("NumbersChannel", "stream", "trim")
	if code, body := e.send(ctx, s, 1, cmd("subscribe", id, "")); code != 200 {
		t.Fatalf("send: %d %s", code, body)
	}
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	e.poll(ctx, s, after, "0") // acknowledges the confirmation: the buffer is empty

	// An event stream from the cursor receives all 20 and acknowledges
	// none of them.
	st, _, err := e.openSSE(ctx, s, http.Header{"Last-Event-ID": {fmt.Sprintf("%d:%d", s.Epoch, after)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const total = 20
	if err := broadcastNumbers(ctx, e, "trim", 10, 10+total, total); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for n := 0; n < total; {
		f, err := st.nextData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.number() >= 0 {
			n++
			last = f.Seq
		}
	}
	st.Close()
	if ev := e.bridge.Stats().Evicted; ev < total-4 {
		t.Errorf("Evicted %d, want at least %d (sent, never acknowledged, past the window)", ev, total-4)
	}

	if p, err := e.tryPoll(ctx, s, after, "0"); err != nil || !p.Reset || p.Reason != "evicted" {
		t.Errorf("poll from a trimmed cursor: %+v %v, want reset (evicted)", p, err)
	}
	st, _, err = e.openSSE(ctx, s, http.Header{"Last-Event-ID": {fmt.Sprintf("%d:%d", s.Epoch, after)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.nextData(ctx); !errors.Is(err, errSSEReset) {
		t.Errorf("SSE from a trimmed cursor: %v, want a reset event", err)
	}
	if _, err := st.next(ctx); err != io.EOF {
		t.Errorf("SSE after the reset: %v, want the end of the stream", err)
	}

	q := url.Values{"token": {s.Token}, "after": {fmt.Sprint(after)}}
	if c, resp, err := e.dialWS(ctx, "/sessions/"+s.SID+"/ws?"+q.Encode(), nil); err == nil {
		c.CloseNow()
		t.Error("WebSocket re-attach from a trimmed cursor was accepted")
	} else if resp == nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("WebSocket re-attach from a trimmed cursor: %v, want 409", err)
	}

	// The window's newest frames are still there for a cursor inside it.
	p, err := e.tryPoll(ctx, s, last-2, "0")
	if err != nil || p.Reset || len(p.Frames) != 2 {
		t.Fatalf("poll inside the window: %+v %v", p, err)
	}
}

func seqRange(from, to int) []int {
	out := make([]int, 0, to-from)
	for n := from; n < to; n++ {
		out = append(out, n)
	}
	return out
}

// TestReattachResume moves a session from long-poll to a WebSocket at its
// cursor, breaks the socket mid-stream, and goes back to long-poll from
// the last frame the socket delivered: nothing lost, nothing repeated.
func TestReattachResume(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 60*time.Second)
	s := e.create(ctx, "alice")
	lp := &pollDown{e: e, s: s}
	if f, err := nextMatch(ctx, lp, nil, notPing); err != nil || f.kind() != "welcome" {
		t.Fatalf("welcome: %v %v", f, err)
	}
	id := identifier("NumbersChannel", "stream", "reattach")
	tick := identifier("NumbersChannel", "stream", "reattach-tick")
	for _, id := range []string{id, tick} {
		if err := lp.command(ctx, cmd("subscribe", id, "")); err != nil {
			t.Fatal(err)
		}
		if _, err := nextMatch(ctx, lp, nil, func(f tframe) bool { return f.kind() == "confirm_subscription" }); err != nil {
			t.Fatal(err)
		}
	}
	q := url.Values{"token": {s.Token}, "after": {fmt.Sprint(lp.after)}}
	c, _, err := e.dialWS(ctx, "/sessions/"+s.SID+"/ws?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := newWSDown(c)
	d.after = lp.after
	defer d.close()
	base := e.bridge.Stats().FramesOut

	const total = 200
	done := make(chan error, 1)
	go func() { done <- broadcastNumbers(ctx, e, "reattach", 0, total, 10) }()
	var got []int
	read := 0 // frames read from the socket, pings included
	for len(got) < 100 {
		f, err := d.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		read++
		if n := f.number(); n >= 0 {
			got = append(got, n)
		}
	}
	if err := waitFor(ctx, "frames written ahead of the reader", func() bool { return e.bridge.Stats().FramesOut >= base+uint64(read)+5 }); err != nil {
		t.Fatal(err)
	}
	out := e.bridge.Stats().FramesOut
	if err := e.rails.Broadcast(ctx, "numbers:reattach-tick", map[string]int{"tick": 1}); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, "the tick to be written", func() bool { return e.bridge.Stats().FramesOut > out }); err != nil {
		t.Fatal(err)
	}
	d.close() // the socket breaks

	lp.after, lp.queue = d.after, nil
	for len(got) < total {
		f, err := lp.next(ctx)
		if err != nil {
			t.Fatalf("long-poll from %d after the socket broke: %v", d.after, err)
		}
		if n := f.number(); n >= 0 {
			got = append(got, n)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkNumbers(t, got, total)
}
