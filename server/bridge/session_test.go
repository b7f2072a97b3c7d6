//go:build unix

package bridge

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	core "github.com/cableway/cableway/server/session"
)

// Unit tests of the session buffer, driven through the upstream frame
// hook without any network.

func testSession(t *testing.T, opts ...Option) *session {
	t.Helper()
	b := New("ws://127.0.0.1:1/cable", opts...)
	t.Cleanup(func() { b.Close(context.Background()) })
	return newSession(b, "127.0.0.1")
}

func upstreamFrame(s *session, raw string) {
	var m protocol.Message
	if err := (protocol.JSONCodec{}).DecodeMessage([]byte(raw), &m); err != nil {
		panic(err)
	}
	s.onFrame(cable.Frame{Raw: []byte(raw), Message: &m, Codec: protocol.JSONCodec{}})
}

func number(n int) string {
	return fmt.Sprintf(`{"identifier":"{\"channel\":\"NumbersChannel\"}","message":{"n":%d}}`, n)
}

func seqs(bt core.Batch) []uint64 {
	var out []uint64
	for _, f := range bt.Frames {
		out = append(out, f.Seq)
	}
	return out
}

func TestSessionBuffer(t *testing.T) {
	s := testSession(t, WithQueue(4, 0))
	upstreamFrame(s, `{"type":"welcome"}`)
	upstreamFrame(s, `{"type":"ping","message":1}`)
	for n := range 3 {
		upstreamFrame(s, number(n))
	}
	bt, err := s.read(0, 0, 100, maxBatchBytes)
	if err != nil || fmt.Sprint(seqs(bt)) != "[1 2 3 4]" || string(bt.Ping) != `{"type":"ping","message":1}` || bt.Next != 5 {
		t.Fatalf("read(0): %v %v ping %s next %d", seqs(bt), err, bt.Ping, bt.Next)
	}
	// A ping the caller has seen is not repeated.
	if bt, _ := s.read(0, bt.PingN, 100, maxBatchBytes); bt.Ping != nil {
		t.Errorf("seen ping repeated")
	}
	// Reading after 2 acknowledges 1 and 2.
	if bt, err := s.read(2, 1, 100, maxBatchBytes); err != nil || fmt.Sprint(seqs(bt)) != "[3 4]" {
		t.Fatalf("read(2): %v %v", seqs(bt), err)
	}
	// From a cursor before what the client acknowledged: it has those,
	// so the read goes on after them and says so.
	if bt, err := s.read(1, 1, 100, maxBatchBytes); err != nil || bt.From != 2 || fmt.Sprint(seqs(bt)) != "[3 4]" {
		t.Errorf("read from an acknowledged cursor: from %d %v %v, want from 2 [3 4]", bt.From, seqs(bt), err)
	}
	if _, err := s.read(5, 1, 100, maxBatchBytes); !errors.Is(err, errReset) {
		t.Errorf("read from the future: %v, want reset", err)
	}
	// Bounds: 4 frames not yet read. The fifth waits in the frame hook
	// (the upstream read stops) until the client reads: nothing is lost.
	for n := 3; n < 7; n++ {
		upstreamFrame(s, number(n))
	}
	held := make(chan struct{})
	go func() {
		defer close(held)
		upstreamFrame(s, number(7))
	}()
	select {
	case <-held:
		t.Fatal("a frame past the queue bound was taken without waiting for the client")
	case <-time.After(50 * time.Millisecond):
	}
	if bt, err := s.read(4, 1, 2, maxBatchBytes); err != nil || fmt.Sprint(seqs(bt)) != "[5 6]" {
		t.Errorf("read(4, max 2): %v %v", seqs(bt), err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held frame was not taken after the client read")
	}
	if bt, err := s.read(6, 1, 100, maxBatchBytes); err != nil || fmt.Sprint(seqs(bt)) != "[7 8 9]" {
		t.Errorf("read(6): %v %v", seqs(bt), err)
	}
	if bt, err := s.read(9, 1, 100, maxBatchBytes); err != nil || len(bt.Frames) != 0 || s.log.Stats().Frames != 0 {
		t.Errorf("read at the end: %v %v; held %+v", seqs(bt), err, s.log.Stats())
	}
	if st := s.log.Stats(); st.Trimmed != 0 {
		t.Errorf("Trimmed %d, want 0", st.Trimmed)
	}
}

// TestSessionFinalFrameIsLast: after Close has appended its
// server_restart notice, frames still coming from upstream (Rails does
// not stop broadcasting) must not follow it.
func TestSessionFinalFrameIsLast(t *testing.T) {
	s := testSession(t)
	upstreamFrame(s, `{"type":"welcome"}`)
	upstreamFrame(s, number(1))
	s.injectFinal([]byte(`{"type":"disconnect","reason":"server_restart","reconnect":true}`))
	upstreamFrame(s, number(2)) // in flight when Close began
	bt, err := s.read(0, 0, 100, maxBatchBytes)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bt.Frames); n != 3 || string(bt.Frames[n-1].Data) != `{"type":"disconnect","reason":"server_restart","reconnect":true}` {
		var got []string
		for _, f := range bt.Frames {
			got = append(got, string(f.Data))
		}
		t.Fatalf("frames %q, want the disconnect last", got)
	}
	if _, err := s.read(3, 0, 100, maxBatchBytes); !errors.Is(err, errSessionEnded) {
		t.Errorf("read after the last frame: %v, want the end", err)
	}
}

// TestSessionWait: wait returns at once when something is newer than the
// cursor, and otherwise on a new frame, a new ping, the end, the tick or
// ctx.
func TestSessionWait(t *testing.T) {
	s := testSession(t)
	upstreamFrame(s, `{"type":"welcome"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.wait(ctx, 0, 0, nil); err != nil {
		t.Fatalf("wait with a frame pending: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.wait(ctx, 1, 0, nil) }()
	upstreamFrame(s, `{"type":"ping","message":2}`)
	if err := <-done; err != nil {
		t.Fatalf("wait for a ping: %v", err)
	}
	tick := make(chan time.Time, 1)
	tick <- time.Now()
	if err := s.wait(ctx, 1, 1, tick); !errors.Is(err, errTick) {
		t.Errorf("wait with a tick: %v", err)
	}
	go func() { done <- s.wait(ctx, 1, 1, nil) }()
	s.end(errSessionEnded)
	if err := <-done; err != nil {
		t.Errorf("wait for the end: %v", err)
	}
}

// TestSessionReadFrom: a downstream that keeps frames for its client's
// resumption reads past its acknowledgement without freeing anything.
func TestSessionReadFrom(t *testing.T) {
	s := testSession(t)
	upstreamFrame(s, `{"type":"welcome"}`)
	for n := range 4 {
		upstreamFrame(s, number(n))
	}
	if bt, err := s.readFrom(1, 3, 0, 100, maxBatchBytes); err != nil || fmt.Sprint(seqs(bt)) != "[4 5]" {
		t.Fatalf("readFrom(1, 3): %v %v", seqs(bt), err)
	}
	// The client resumes from 2: frames 3… are still there.
	if bt, err := s.read(2, 0, 100, maxBatchBytes); err != nil || fmt.Sprint(seqs(bt)) != "[3 4 5]" {
		t.Fatalf("read(2) after readFrom(1, 3): %v %v", seqs(bt), err)
	}
}

// Any disconnect from Rails is the session's last frame (later frames are
// dropped); a connection lost without one
// gets the bridge's upstream_lost frame; a stop the bridge made itself
// gets nothing.
func TestSessionEndsWithItsUpstream(t *testing.T) {
	s := testSession(t)
	upstreamFrame(s, `{"type":"welcome"}`)
	upstreamFrame(s, `{"type":"disconnect","reason":"server_restart","reconnect":true}`)
	if !s.isEnded() {
		t.Fatal("a disconnect did not end the session")
	}
	upstreamFrame(s, `{"type":"welcome"}`) // after the end: dropped
	s.upstreamGone(errors.New("read: connection reset"))
	if bt, _ := s.read(0, 0, 100, maxBatchBytes); fmt.Sprint(seqs(bt)) != "[1 2]" {
		t.Fatalf("frames %v, want the welcome and Rails' disconnect only", seqs(bt))
	}

	s = testSession(t)
	upstreamFrame(s, `{"type":"welcome"}`)
	s.upstreamGone(errors.New("read: connection reset"))
	bt, err := s.read(0, 0, 100, maxBatchBytes)
	if err != nil || len(bt.Frames) != 2 || string(bt.Frames[1].Data) != string(upstreamLost) {
		t.Fatalf("read: %v %v, want the welcome and then %s", bt.Frames, err, upstreamLost)
	}
	if _, err := s.read(2, bt.PingN, 100, maxBatchBytes); !errors.Is(err, errSessionEnded) {
		t.Fatalf("read after the last frame: %v, want errSessionEnded", err)
	}

	s = testSession(t)
	upstreamFrame(s, `{"type":"welcome"}`)
	s.upstreamGone(cable.ErrClosed)
	if s.isEnded() {
		t.Fatal("the bridge's own close of the upstream injected a frame")
	}
}

// An event stream acknowledges nothing by itself: the client's ack frees
// what it has received, and never more than was handed to a downstream.
func TestAckFreesWhatTheClientHas(t *testing.T) {
	s := testSession(t)
	for n := range 5 {
		upstreamFrame(s, number(n))
	}
	if bt, err := s.readFrom(0, 0, 0, 3, maxBatchBytes); err != nil || fmt.Sprint(seqs(bt)) != "[1 2 3]" {
		t.Fatalf("readFrom: %v %v", seqs(bt), err)
	}
	s.acknowledge(2)
	if bt, err := s.readFrom(0, 2, 0, 100, maxBatchBytes); err != nil || fmt.Sprint(seqs(bt)) != "[3 4 5]" {
		t.Fatalf("after ack 2: %v %v", seqs(bt), err)
	}
	// A downstream still at 1 (the client moves between two, and the other
	// acknowledged 2) goes on after 2: the client has it.
	if bt, err := s.readFrom(1, 1, 0, 100, maxBatchBytes); err != nil || bt.From != 2 || fmt.Sprint(seqs(bt)) != "[3 4 5]" {
		t.Fatalf("a reader behind the acknowledgement: from %d %v %v, want from 2 [3 4 5]", bt.From, seqs(bt), err)
	}
	s.acknowledge(99) // more than was delivered (5): only up to 5
	if st := s.log.Stats(); st.Frames != 0 || st.Acked != 5 {
		t.Fatalf("after an ack past the end: %+v, want nothing held and 5 acknowledged", st)
	}
}

// A reader behind frames trimmed from the resume window (sent, never
// acknowledged) gets a reset that says so, even when an acknowledgement
// came before the trim.
func TestTrimmedIsResetEvenAfterAnAck(t *testing.T) {
	s := testSession(t, WithResumeWindow(2*len(number(0))))
	for n := range 3 {
		upstreamFrame(s, number(n))
	}
	s.readFrom(0, 0, 0, 100, maxBatchBytes) // handed to a downstream: 1-3
	s.acknowledge(1)
	for n := range 4 { // 4-7
		upstreamFrame(s, number(n))
	}
	s.readFrom(1, 3, 0, 100, maxBatchBytes) // 4-7 sent: the window keeps 6-7
	_, err := s.readFrom(1, 1, 0, 100, maxBatchBytes)
	if !errors.Is(err, errReset) || resetReason(err) != "evicted" {
		t.Fatalf("a reader at 1 after 2-5 were trimmed: %v, want a reset", err)
	}
	if st := s.log.Stats(); st.Trimmed != 5 { // 1 (trimmed before its ack), 2-5
		t.Errorf("Trimmed %d, want 5", st.Trimmed)
	}
}
