package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// appendAsync runs Append on a goroutine and reports its result.
func appendAsync(l *Log, ctx context.Context, data []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, data)
		done <- err
	}()
	return done
}

// blocked asserts that done has no result yet after a short grace; it can
// only fail on a bug (Append returning early), never because of load.
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
		t.Fatal("Append still blocked after 10 s")
		return nil
	}
}

func TestAppendHeldBackUntilRead(t *testing.T) {
	ctx := context.Background()
	l := NewLog(WithPendingLimit(3, 1<<20))
	for i := range 3 {
		if seq, err := l.Append(ctx, []byte{byte(i)}); err != nil || seq != uint64(i+1) {
			t.Fatalf("Append %d = %d, %v", i, seq, err)
		}
	}
	done := appendAsync(l, ctx, []byte("4"))
	blocked(t, done)
	b, err := l.Read(0, 0, 0, 2, 1<<20)
	if err != nil || len(b.Frames) != 2 || !b.More {
		t.Fatalf("Read = %+v, %v", b, err)
	}
	if err := within(t, done); err != nil {
		t.Fatal(err)
	}
	// Everything appended is readable, in order, exactly once.
	b, err = l.Read(2, 2, 0, 10, 1<<20)
	if err != nil || len(b.Frames) != 2 || b.Frames[0].Seq != 3 || b.Frames[1].Seq != 4 || b.More {
		t.Fatalf("Read = %+v, %v", b, err)
	}
}

func TestAppendHeldBackByBytes(t *testing.T) {
	ctx := context.Background()
	l := NewLog(WithPendingLimit(100, 10))
	if _, err := l.Append(ctx, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	done := appendAsync(l, ctx, make([]byte, 8))
	blocked(t, done)
	l.Read(0, 0, 0, 1, 1<<20)
	if err := within(t, done); err != nil {
		t.Fatal(err)
	}
	// The first pending frame is always taken, however large.
	l2 := NewLog(WithPendingLimit(100, 10))
	if _, err := l2.Append(ctx, make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
}

func TestAppendEndsWithLogAndContext(t *testing.T) {
	l := NewLog(WithPendingLimit(1, 1<<20))
	ctx, cancel := context.WithCancel(context.Background())
	l.Append(ctx, []byte("a"))
	done := appendAsync(l, ctx, []byte("b"))
	blocked(t, done)
	cancel()
	if err := within(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
	done = appendAsync(l, context.Background(), []byte("b"))
	blocked(t, done)
	gone := errors.New("gone")
	l.End(gone)
	if err := within(t, done); err != gone {
		t.Fatalf("after End: %v", err)
	}
	// The frame appended before End is still read, then the end error.
	b, err := l.Read(0, 0, 0, 10, 1<<20)
	if err != nil || len(b.Frames) != 1 {
		t.Fatalf("Read = %+v, %v", b, err)
	}
	if _, err := l.Read(1, 1, 0, 10, 1<<20); err != gone {
		t.Fatalf("Read after the last frame = %v", err)
	}
}

func TestWindowKeptUntilAckedThenTrimmed(t *testing.T) {
	ctx := context.Background()
	l := NewLog(WithWindowLimit(4))
	for i := range 6 {
		l.Append(ctx, []byte{byte('a' + i)})
	}
	// A stream reads 1..3 without acknowledging: they stay for resuming.
	if b, _ := l.Read(0, 0, 0, 3, 1<<20); len(b.Frames) != 3 {
		t.Fatalf("read %d", len(b.Frames))
	}
	if b, err := l.Read(0, 0, 0, 10, 1<<20); err != nil || b.Frames[0].Seq != 1 || len(b.Frames) != 6 {
		t.Fatalf("resume from 0: %+v, %v", b, err)
	}
	// All six delivered: the window keeps the newest 4 bytes; a client
	// that asks for 1 again was not acknowledged: reset, with the range.
	_, err := l.Read(0, 0, 0, 10, 1<<20)
	var re *ResetError
	if !errors.As(err, &re) || !errors.Is(err, ErrReset) || re.Reason != ReasonTrimmed || re.First != 3 {
		t.Fatalf("Read of a trimmed frame = %v", err)
	}
	if st := l.Stats(); st.Trimmed != 2 || st.Frames != 4 {
		t.Fatalf("stats %+v", st)
	}
	// Acknowledged through another downstream (Ack): a reader behind
	// goes on after it, without a reset.
	l.Ack(4)
	b, err := l.Read(0, 4, 0, 10, 1<<20)
	if err != nil || b.From != 4 || len(b.Frames) != 2 {
		t.Fatalf("after Ack: %+v, %v", b, err)
	}
	if _, err := l.Read(0, 99, 0, 10, 1<<20); !errors.Is(err, ErrReset) {
		t.Fatalf("future cursor: %v", err)
	}
}

func TestBudgetHoldsWritersBack(t *testing.T) {
	ctx := context.Background()
	budget := NewBudget(10)
	a := NewLog(WithBudget(budget), WithWindowLimit(1<<20))
	b := NewLog(WithBudget(budget), WithWindowLimit(1<<20))
	a.Append(ctx, make([]byte, 6))
	b.Append(ctx, make([]byte, 4))
	if budget.Used() != 10 {
		t.Fatalf("used %d", budget.Used())
	}
	done := appendAsync(a, ctx, make([]byte, 2))
	blocked(t, done)
	// b's reader takes its frame: b's client acknowledges (it is new),
	// so b keeps it for resuming, and a waits on.
	if r, _ := b.Read(0, 0, 0, 10, 1<<20); len(r.Frames) != 1 {
		t.Fatal("b read nothing")
	}
	blocked(t, done)
	// b's client acknowledges it: room for a.
	b.Ack(1)
	if err := within(t, done); err != nil {
		t.Fatal(err)
	}

	// A client that does not acknowledge loses its window to the budget
	// instead: c reads, never acknowledges; d's writer gets c's room.
	a.Release()
	b.Release()
	c := NewLog(WithBudget(budget), WithWindowLimit(1<<20))
	c.ackGrace = 0
	c.Append(ctx, make([]byte, 6))
	d := NewLog(WithBudget(budget), WithWindowLimit(1<<20))
	d.Append(ctx, make([]byte, 4)) // the budget's 10 bytes, all pending
	done = appendAsync(d, ctx, make([]byte, 1))
	blocked(t, done)
	c.Read(0, 0, 0, 10, 1<<20)
	if err := within(t, done); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Trimmed != 1 {
		t.Errorf("c: %+v, want its frame trimmed", st)
	}
	c.Release()
	d.Release()
	if budget.Used() != 0 {
		t.Fatalf("used after release %d", budget.Used())
	}
}

// TestNumberedStreamUnderBackpressure: a fast writer and a slow reader
// with tiny limits: every frame arrives once, in order.
func TestNumberedStreamUnderBackpressure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	budget := NewBudget(256)
	l := NewLog(WithPendingLimit(4, 64), WithWindowLimit(16), WithBudget(budget))
	const n = 5000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			if _, err := l.Append(ctx, []byte(fmt.Sprint(i))); err != nil {
				t.Errorf("Append %d: %v", i, err)
				return
			}
		}
		l.Final([]byte("end"))
	}()
	var after, ack uint64
	want := 1
	for {
		b, err := l.Read(ack, after, 0, 3, 1<<20)
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
		if errors.Is(err, ErrEnded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Frames) == 0 {
			if err := l.Wait(ctx, after, 0, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if want != n+1 {
		t.Fatalf("received %d of %d", want-1, n)
	}
	l.Release()
	if budget.Used() != 0 {
		t.Fatalf("budget used %d after release", budget.Used())
	}
}

// TestBudgetSharedByManyLogs: fifty writers and readers share a budget a
// few frames large: every frame of every log arrives once, in order, and
// the budget is back to zero at the end (no writer is stranded waiting).
func TestBudgetSharedByManyLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	budget := NewBudget(64)
	const logs, n = 50, 300
	var wg sync.WaitGroup
	for range logs {
		l := NewLog(WithBudget(budget), WithPendingLimit(8, 1<<10), WithWindowLimit(32))
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 1; i <= n; i++ {
				if _, err := l.Append(ctx, []byte(fmt.Sprintf("%04d", i))); err != nil {
					t.Errorf("Append %d: %v", i, err)
					return
				}
			}
			l.Final([]byte("end!"))
		}()
		go func() {
			defer wg.Done()
			defer l.Release()
			var after uint64
			want := 1
			for {
				b, err := l.Read(after, after, 0, 5, 1<<10)
				for _, f := range b.Frames {
					after = f.Seq
					if string(f.Data) == "end!" {
						continue
					}
					if string(f.Data) != fmt.Sprintf("%04d", want) {
						t.Errorf("got %q, want %d", f.Data, want)
						return
					}
					want++
				}
				if err != nil {
					if !errors.Is(err, ErrEnded) || want != n+1 {
						t.Errorf("reader stopped at %d: %v", want, err)
					}
					return
				}
				if len(b.Frames) == 0 {
					if err := l.Wait(ctx, after, 0, nil); err != nil {
						t.Errorf("Wait: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if budget.Used() != 0 {
		t.Fatalf("budget used %d after every log was released", budget.Used())
	}
}
