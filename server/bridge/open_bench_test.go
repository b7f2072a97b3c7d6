//go:build unix

package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
)

// BenchmarkOpen opens sessions through the bridge against the in-process
// Go feeder, 32 at a time, each until its client has read the
// confirmation of its subscription through its SSE stream: "two-step" is
// POST /sessions, GET …/sse and POST …/send; "one-request" is GET
// /sessions/sse?subscribe=…. The sessions stay open until the end, so use
// -benchtime=Nx (e.g. 1000x). ns/op is per session opened, client, bridge
// and feeder all in this process; cpu-µs/op is this process's user and
// system CPU per session, which a busy machine disturbs less than ns/op.
func BenchmarkOpen(b *testing.B) {
	if err := raiseNoFile(); err != nil {
		b.Skip(err)
	}
	for _, mode := range []string{"two-step", "one-request"} {
		b.Run(mode, func(b *testing.B) {
			f := newFeeder()
			defer f.close()
			_, srv := benchBridge(b, f.url) // no per-client limits: every client is 127.0.0.1
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			defer client.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			open := openTwoStep
			if mode == "one-request" {
				open = openInOne
			}
			var (
				mu      sync.Mutex
				streams []*benchSSE
				next    = make(chan struct{})
				errs    = make(chan error, 1)
				wg      sync.WaitGroup
			)
			defer func() {
				for _, st := range streams {
					st.close()
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for range 32 {
				wg.Go(func() {
					for range next {
						st, err := open(ctx, client, srv.URL)
						if err != nil {
							select {
							case errs <- err:
							default:
							}
							continue
						}
						mu.Lock()
						streams = append(streams, st)
						mu.Unlock()
					}
				})
			}
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			select {
			case err := <-errs:
				b.Fatal(err)
			default:
			}
		})
	}
}

var confirmType = []byte(`"type":"confirm_subscription"`)

// untilConfirmed reads st until the confirmation of a subscription.
func untilConfirmed(st *benchSSE) (*benchSSE, error) {
	for {
		data, err := st.nextData()
		if err != nil {
			st.close()
			return nil, err
		}
		if bytes.Contains(data, confirmType) {
			return st, nil
		}
	}
}

func openTwoStep(ctx context.Context, client *http.Client, base string) (*benchSSE, error) {
	s, err := createSession(ctx, client, base)
	if err != nil {
		return nil, err
	}
	st, err := openBenchSSE(context.Background(), client, base, s)
	if err != nil {
		return nil, err
	}
	body := fmt.Sprintf(`[{"cseq":1,"frame":{"command":"subscribe","identifier":%q}}]`, benchID)
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/sessions/"+s.SID+"/send?token="+s.Token, strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		st.close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		st.close()
		return nil, fmt.Errorf("send: HTTP %d", resp.StatusCode)
	}
	return untilConfirmed(st)
}

func openInOne(ctx context.Context, client *http.Client, base string) (*benchSSE, error) {
	req, err := http.NewRequestWithContext(context.Background(), "GET",
		base+bridgewire.OpenSSEPath+"?"+url.Values{bridgewire.SubscribeParam: {benchID}}.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("open: HTTP %d", resp.StatusCode)
	}
	return untilConfirmed(&benchSSE{resp: resp, br: bufio.NewReaderSize(resp.Body, 16<<10)})
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
