//go:build unix

package bridge_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/server/bridge"
	"github.com/cableway/cableway/server/session/redisstore"
)

// storeOptions returns the bridge options of one store for the
// benchmarks: "memory" (the default) or "redis" (a redis-server of the
// benchmark's own), each with room for queue frames per session.
func storeOptions(b *testing.B, store string, queue int) []bridge.Option {
	if store == "memory" {
		return []bridge.Option{bridge.WithQueue(queue, 1<<30)}
	}
	srv := redistest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := redisstore.New(ctx, srv.URL(0), redisstore.WithLimits(queue, 1<<30, 1<<20))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() }) // after the bridge's Close (registered later, run earlier)
	return []bridge.Option{bridge.WithSharedStore(st)}
}

// BenchmarkStoreLatency is BenchmarkLatency's SSE case on each store:
// frames timestamped at the feeder (one every 500 µs), their age when the
// SSE client reads them, through one bridge keeping its sessions in
// memory or in Redis. -benchtime=3000x.
func BenchmarkStoreLatency(b *testing.B) {
	for _, store := range []string{"memory", "redis"} {
		b.Run(store, func(b *testing.B) {
			f := newFeeder()
			defer f.close()
			_, srv := benchBridge(b, f.url, storeOptions(b, store, b.N+16)...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			st, err := openOne(ctx, client, srv.URL)
			if err != nil {
				b.Fatal(err)
			}
			defer st.close()
			fc, err := f.next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			errc := make(chan error, 1)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			go func() {
				tick := time.NewTicker(500 * time.Microsecond)
				defer tick.Stop()
				prefix := []byte(`{"identifier":"{\"channel\":\"BenchChannel\"}","message":{"t":`)
				frame := make([]byte, 0, 128)
				for range b.N {
					<-tick.C
					frame = strconv.AppendInt(append(frame[:0], prefix...), time.Now().UnixNano(), 10)
					frame = append(frame, "}}"...)
					if err := fc.c.Write(ctx, ws.MessageText, frame); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for len(lat) < b.N {
				data, err := st.nextData()
				if err != nil {
					b.Fatal(err)
				}
				if bytes.HasPrefix(data, pingPrefix) {
					continue
				}
				now := time.Now().UnixNano()
				i := bytes.LastIndex(data, []byte(`"t":`))
				ts, err := strconv.ParseInt(string(bytes.TrimSuffix(data[i+4:], []byte("}}"))), 10, 64)
				if i < 0 || err != nil {
					b.Fatalf("frame %s: %v", data, err)
				}
				lat = append(lat, time.Duration(now-ts))
			}
			b.StopTimer()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)]) / 1e3 }
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}

// BenchmarkStoreThroughput is BenchmarkSSEThroughput on each store: b.N
// frames from the feeder to each of N sessions, each read by its own SSE
// client, through one bridge; frames/s delivered in total.
// -benchtime=20000x.
func BenchmarkStoreThroughput(b *testing.B) {
	for _, store := range []string{"memory", "redis"} {
		for _, n := range []int{1, 50} {
			b.Run(fmt.Sprintf("%s/sessions=%d", store, n), func(b *testing.B) {
				f := newFeeder()
				defer f.close()
				_, srv := benchBridge(b, f.url, storeOptions(b, store, b.N+16)...)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				defer client.CloseIdleConnections()
				conns := make([]*feedConn, n)
				streams := make([]*benchSSE, n)
				for i := range n {
					st, err := openOne(ctx, client, srv.URL)
					if err != nil {
						b.Fatal(err)
					}
					defer st.close()
					streams[i] = st
					if conns[i], err = f.next(ctx); err != nil {
						b.Fatal(err)
					}
				}
				var (
					wg     sync.WaitGroup
					failed atomic.Pointer[error]
				)
				b.ResetTimer()
				start := time.Now()
				for _, st := range streams {
					wg.Go(func() {
						for got := 0; got < b.N; {
							data, err := st.nextData()
							if err != nil {
								failed.Store(&err)
								return
							}
							if !bytes.HasPrefix(data, pingPrefix) {
								got++
							}
						}
					})
				}
				for _, fc := range conns {
					wg.Go(func() {
						for range b.N {
							if err := fc.c.Write(ctx, ws.MessageText, benchFrame); err != nil {
								failed.Store(&err)
								return
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				if err := failed.Load(); err != nil {
					b.Fatal(*err)
				}
				b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "frames/s")
			})
		}
	}
}
