package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/server/session"
	"github.com/cableway/cableway/server/session/redisstore"
)

// A pair is one session's log seen from two processes: w is the writer's
// (the owner's) handle, r a reader's on another process. The contract
// tests run on the in-memory Log (w and r are the same log: the contract
// the bridge relies on) and on Redis (two Stores, as two bridges), so that
// the Redis log is held to exactly what the memory one promises.
type pair struct {
	w, r session.Frames
}

type limits struct{ pendingFrames, pendingBytes, window int }

var defaults = limits{session.DefaultPendingFrames, session.DefaultPendingBytes, session.DefaultWindowBytes}

func forEachStore(t *testing.T, lim limits, test func(t *testing.T, p pair)) {
	t.Run("memory", func(t *testing.T) {
		l := session.NewLog(session.WithPendingLimit(lim.pendingFrames, lim.pendingBytes), session.WithWindowLimit(lim.window))
		test(t, pair{l, l})
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		a, b := newStore(t, srv, "a", lim), newStore(t, srv, "b", lim)
		ctx := context.Background()
		w, err := a.Create(ctx, "s1", session.Meta{Token: "t", Epoch: 7})
		if err != nil {
			t.Fatal(err)
		}
		r, m, err := b.Open(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		if m.Token != "t" || m.Epoch != 7 {
			t.Fatalf("meta %+v", m)
		}
		test(t, pair{w, r})
	})
}

func newStore(t testing.TB, srv *redistest.Server, node string, lim limits, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]redisstore.Option{redisstore.WithNode(node), redisstore.WithLimits(lim.pendingFrames, lim.pendingBytes, lim.window)}, opts...)
	s, err := redisstore.New(ctx, srv.URL(0), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendAsync(l session.Frames, ctx context.Context, data []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, data)
		done <- err
	}()
	return done
}

// blocked asserts that done has no result yet after a short grace: it
// can only fail on a bug (Append returning early), never because of load.
func blocked(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("Append returned (%v) while it should be held back", err)
	case <-time.After(50 * time.Millisecond):
	}
}

func within(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("still blocked after 10 s")
		return nil
	}
}

func TestContractHeldBackUntilRead(t *testing.T) {
	forEachStore(t, limits{3, 1 << 20, 1 << 20}, func(t *testing.T, p pair) {
		ctx := context.Background()
		for i := range 3 {
			if seq, err := p.w.Append(ctx, []byte{byte('0' + i)}); err != nil || seq != uint64(i+1) {
				t.Fatalf("Append %d = %d, %v", i, seq, err)
			}
		}
		done := appendAsync(p.w, ctx, []byte("4"))
		blocked(t, done)
		b, err := p.r.Read(0, 0, 0, 2, 1<<20)
		if err != nil || len(b.Frames) != 2 || !b.More || b.Next != 4 && b.Next != 5 {
			t.Fatalf("Read = %+v, %v", b, err)
		}
		if err := within(t, done); err != nil {
			t.Fatal(err)
		}
		b, err = p.r.Read(2, 2, 0, 10, 1<<20)
		if err != nil || len(b.Frames) != 2 || b.Frames[0].Seq != 3 || b.Frames[1].Seq != 4 || string(b.Frames[1].Data) != "4" || b.More {
			t.Fatalf("Read = %+v, %v", b, err)
		}
	})
}

func TestContractEndVisibleToReaders(t *testing.T) {
	forEachStore(t, limits{1, 1 << 20, 1 << 20}, func(t *testing.T, p pair) {
		ctx, cancel := context.WithCancel(context.Background())
		p.w.Append(ctx, []byte("a"))
		done := appendAsync(p.w, ctx, []byte("b"))
		blocked(t, done)
		cancel()
		if err := within(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("after cancel: %v", err)
		}
		done = appendAsync(p.w, context.Background(), []byte("b"))
		blocked(t, done)
		p.r.End(errors.New("gone")) // ended by another process
		if err := within(t, done); err == nil || !strings.Contains(err.Error(), "gone") {
			t.Fatalf("Append after End: %v", err)
		}
		b, err := p.r.Read(0, 0, 0, 10, 1<<20)
		if err != nil || len(b.Frames) != 1 {
			t.Fatalf("Read = %+v, %v", b, err)
		}
		if _, err := p.r.Read(1, 1, 0, 10, 1<<20); err == nil || !strings.Contains(err.Error(), "gone") {
			t.Fatalf("Read after the last frame = %v", err)
		}
	})
}

func TestContractFinalVisibleToReaders(t *testing.T) {
	forEachStore(t, defaults, func(t *testing.T, p pair) {
		ctx := context.Background()
		p.w.Append(ctx, []byte("a"))
		p.w.Final([]byte("last"))
		if _, err := p.w.Append(ctx, []byte("late")); !errors.Is(err, session.ErrEnded) {
			t.Fatalf("Append after Final = %v", err)
		}
		b, err := p.r.Read(0, 0, 0, 10, 1<<20)
		if err != nil || len(b.Frames) != 2 || string(b.Frames[1].Data) != "last" {
			t.Fatalf("Read = %+v, %v", b, err)
		}
		if _, err := p.r.Read(2, 2, 0, 10, 1<<20); !errors.Is(err, session.ErrEnded) {
			t.Fatalf("Read after Final = %v", err)
		}
		p.r.WaitDrained(ctx, time.Hour) // returns: the last frame was read
		deadline := time.Now().Add(10 * time.Second)
		for !p.w.Drained() || p.w.Ended() == nil { // the writer's figures catch up (a sweep)
			if time.Now().After(deadline) {
				t.Fatalf("writer sees drained=%v ended=%v", p.w.Drained(), p.w.Ended())
			}
			p.w.WaitDrained(ctx, time.Hour)
			time.Sleep(10 * time.Millisecond) // polling a figure refreshed by a timer, under a deadline
		}
	})
}

func TestContractWindowKeptUntilAckedThenTrimmed(t *testing.T) {
	forEachStore(t, limits{1024, 1 << 20, 4}, func(t *testing.T, p pair) {
		ctx := context.Background()
		for i := range 6 {
			p.w.Append(ctx, []byte{byte('a' + i)})
		}
		if b, _ := p.r.Read(0, 0, 0, 3, 1<<20); len(b.Frames) != 3 {
			t.Fatalf("read %d", len(b.Frames))
		}
		if b, err := p.r.Read(0, 0, 0, 10, 1<<20); err != nil || b.Frames[0].Seq != 1 || len(b.Frames) != 6 {
			t.Fatalf("resume from 0: %+v, %v", b, err)
		}
		_, err := p.r.Read(0, 0, 0, 10, 1<<20)
		var re *session.ResetError
		if !errors.As(err, &re) || !errors.Is(err, session.ErrReset) || re.Reason != session.ReasonTrimmed || re.First != 3 {
			t.Fatalf("Read of a trimmed frame = %v", err)
		}
		p.r.Ack(4)
		b, err := p.w.Read(0, 4, 0, 10, 1<<20)
		if err != nil || b.From != 4 || len(b.Frames) != 2 {
			t.Fatalf("after Ack: %+v, %v", b, err)
		}
		if _, err := p.r.Read(0, 99, 0, 10, 1<<20); !errors.As(err, &re) || re.Reason != session.ReasonBadCursor {
			t.Fatalf("future cursor: %v", err)
		}
		// Acknowledged frames count as had: a reader behind them goes on.
		if !p.r.Has(4) || !p.r.Has(1) || p.r.Has(99) {
			t.Fatalf("Has: 1=%v 4=%v 99=%v", p.r.Has(1), p.r.Has(4), p.r.Has(99))
		}
	})
}

// TestContractNumberedStream: a writer appends numbered frames under a
// small pending limit and window; a reader on another process reads them
// with Wait and acknowledgements: each arrives once, in order, none lost.
func TestContractNumberedStream(t *testing.T) {
	forEachStore(t, limits{4, 64, 16}, func(t *testing.T, p pair) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		const n = 1000
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= n; i++ {
				if _, err := p.w.Append(ctx, []byte(fmt.Sprint(i))); err != nil {
					t.Errorf("Append %d: %v", i, err)
					return
				}
			}
			p.w.Final([]byte("end"))
		}()
		var after, ack uint64
		want := 1
		for {
			b, err := p.r.Read(ack, after, 0, 3, 1<<20)
			for _, f := range b.Frames {
				after = f.Seq
				if string(f.Data) == "end" {
					continue
				}
				if string(f.Data) != fmt.Sprint(want) {
					t.Fatalf("got %q, want %d", f.Data, want)
				}
				want++
			}
			ack = after
			if errors.Is(err, session.ErrEnded) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Frames) == 0 {
				if err := p.r.Wait(ctx, after, 0, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		wg.Wait()
		if want != n+1 {
			t.Fatalf("received %d of %d", want-1, n)
		}
	})
}

func fired() (func(), chan struct{}) {
	ch := make(chan struct{}, 4)
	return func() { ch <- struct{}{} }, ch
}

func expectCall(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no notification", what)
	}
}

// TestContractNotify: a notification on the reader's process fires for a
// frame, a ping or the end made on the writer's; at once when there is
// news already; never once stopped.
func TestContractNotify(t *testing.T) {
	forEachStore(t, defaults, func(t *testing.T, p pair) {
		ctx := context.Background()
		f, ch := fired()
		p.r.Notify(0, 0, f)
		p.w.Append(ctx, []byte("a"))
		expectCall(t, ch, "append")
		p.r.Notify(0, 0, f)
		expectCall(t, ch, "news already")
		stop := p.r.Notify(1, 0, f)
		p.w.SetPing([]byte("p"))
		expectCall(t, ch, "ping")
		if stop() {
			t.Error("stop after the call reported true")
		}
		stop = p.r.Notify(1, 1, f)
		if !stop() {
			t.Error("stop before the call reported false")
		}
		p.r.Notify(2, 1, f) // after the next append: only the end wakes it
		p.w.Append(ctx, []byte("b"))
		p.r.Notify(2, 1, f)
		p.w.End(nil)
		expectCall(t, ch, "end")
		expectCall(t, ch, "end (second)")
		b, _ := p.r.Read(0, 0, 0, 10, 1<<20)
		if len(b.Frames) != 2 || string(b.Ping) != "p" || b.PingN != 1 {
			t.Fatalf("Read = %+v", b)
		}
	})
}

// TestContractAttachKicksAcrossProcesses: a downstream attached on one
// process kicks the one of the same kind attached before on another.
func TestContractAttachKicksAcrossProcesses(t *testing.T) {
	forEachStore(t, defaults, func(t *testing.T, p pair) {
		k1, ch1 := fired()
		k2, ch2 := fired()
		d1 := p.w.AttachFunc(0, k1)
		if p.w.Idle(time.Now().Add(time.Hour)) != 0 {
			t.Error("idle while attached")
		}
		d2 := p.r.AttachFunc(0, k2)
		expectCall(t, ch1, "replaced from the other process")
		d1()
		d2()
		select {
		case <-ch2:
			t.Fatal("the newer downstream was kicked")
		default:
		}
	})
}
