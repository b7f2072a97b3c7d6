package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/server/session"
)

// TestManySessionsAppendAtOnce: sessions of one process append numbered
// frames at the same time, read on another process (appends and reads go
// to Redis grouped), while Redis forgets its scripts once (a restart's
// SCRIPT FLUSH): the readers get every session's frames once each, in
// order, and each Append's seq is its frame's.
func TestManySessionsAppendAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newStore(t, srv, "a", defaults), newStore(t, srv, "b", defaults)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const sessions, frames = 16, 150
	var wg sync.WaitGroup
	flushed := make(chan struct{})
	var once sync.Once
	for i := range sessions {
		id := fmt.Sprint("s", i)
		w, err := a.Create(ctx, id, session.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := b.Open(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for n := 1; n <= frames; n++ {
				if n == frames/2 {
					once.Do(func() {
						a.Client().ScriptFlush(ctx)
						close(flushed)
					})
				}
				seq, err := w.Append(ctx, []byte(fmt.Sprint(n)))
				if err != nil || seq != uint64(n) {
					t.Errorf("%s: Append %d = %d, %v", id, n, seq, err)
					return
				}
			}
			w.Final([]byte("end"))
		})
		wg.Go(func() {
			var after uint64
			want := 1
			for {
				bt, err := r.Read(after, after, 0, 64, 1<<20)
				for _, f := range bt.Frames {
					if f.Seq != after+1 {
						t.Errorf("%s: seq %d after %d", id, f.Seq, after)
						return
					}
					after = f.Seq
					if string(f.Data) == "end" {
						continue
					}
					if string(f.Data) != fmt.Sprint(want) {
						t.Errorf("%s: got %q, want %d", id, f.Data, want)
						return
					}
					want++
				}
				if errors.Is(err, session.ErrEnded) {
					break
				}
				if err != nil {
					t.Errorf("%s: %v", id, err)
					return
				}
				if len(bt.Frames) == 0 {
					if err := r.Wait(ctx, after, 0, nil); err != nil {
						t.Errorf("%s: %v", id, err)
						return
					}
				}
			}
			if want != frames+1 {
				t.Errorf("%s: received %d of %d", id, want-1, frames)
			}
		})
	}
	wg.Wait()
	select {
	case <-flushed:
	default:
		t.Fatal("the scripts were never flushed")
	}
}
