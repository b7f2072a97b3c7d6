package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/server/session"
)

// benchPair is forEachStore for benchmarks: the writer's and a reader's
// handle, on one process (memory) or two (Redis).
func benchPairs(b *testing.B, run func(b *testing.B, p pair)) {
	b.Run("memory", func(b *testing.B) {
		l := session.NewLog()
		run(b, pair{l, l})
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		a, c := newStore(b, srv, "a", defaults), newStore(b, srv, "b", defaults)
		ctx := context.Background()
		w, err := a.Create(ctx, "s", session.Meta{})
		if err != nil {
			b.Fatal(err)
		}
		r, _, err := c.Open(ctx, "s")
		if err != nil {
			b.Fatal(err)
		}
		run(b, pair{w, r})
	})
}

// BenchmarkThroughput: one writer appends b.N frames of 100 bytes, one
// reader (on another process with Redis) reads them in batches,
// acknowledging as it goes: frames/s through the log.
func BenchmarkThroughput(b *testing.B) {
	benchPairs(b, func(b *testing.B, p pair) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		frame := make([]byte, 100)
		b.ResetTimer()
		go func() {
			for range b.N {
				if _, err := p.w.Append(ctx, frame); err != nil {
					return
				}
			}
		}()
		var after uint64
		for after < uint64(b.N) {
			bt, err := p.r.Read(after, after, 0, 256, 64<<10)
			if err != nil {
				b.Fatal(err)
			}
			if len(bt.Frames) == 0 {
				if err := p.r.Wait(ctx, after, 0, nil); err != nil {
					b.Fatal(err)
				}
				continue
			}
			after = bt.Frames[len(bt.Frames)-1].Seq
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	})
}

// BenchmarkLatency: a frame at a time, from Append to a waiting reader
// (another process with Redis) having read it: the delivery latency the
// store adds, median and p99.
func BenchmarkLatency(b *testing.B) {
	benchPairs(b, func(b *testing.B, p pair) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		frame := make([]byte, 100)
		lat := make([]time.Duration, 0, b.N)
		got := make(chan time.Duration, 1)
		var after uint64
		b.ResetTimer()
		for range b.N {
			ready := make(chan struct{})
			go func() {
				close(ready)
				for {
					bt, err := p.r.Read(after, after, 0, 1, 1<<20)
					if err != nil && !errors.Is(err, session.ErrTick) {
						got <- -1
						return
					}
					if len(bt.Frames) > 0 {
						after = bt.Frames[0].Seq
						got <- 0
						return
					}
					p.r.Wait(ctx, after, 0, nil)
				}
			}()
			<-ready
			start := time.Now()
			if _, err := p.w.Append(ctx, frame); err != nil {
				b.Fatal(err)
			}
			if d := <-got; d < 0 {
				b.Fatal("read failed")
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
}
