//go:build unix

package bridge_test

// Benchmarks of the bridge against an in-process Go ActionCable feeder
// (Rails is the bottleneck, at ~9k broadcasts/s, so it is not used here):
//
//	go test -run='^$' -bench=. ./server/bridge/
//
// (each benchmark's comment says which -benchtime suits it alone).
//
// BenchmarkIdleSSEMemory keeps the feeder and the SSE clients in a child
// process (this test binary, started with CABLEWAY_BENCH_PEER=1), so that
// the heap and stacks measured are the bridge's alone.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/server/bridge"
)

// ---- the feeder: a minimal ActionCable server in Go ----

// feeder welcomes every connection, confirms every subscribe, pings every
// 3 s as Rails does, and streams frames on demand.
type feeder struct {
	srv   *httptest.Server
	url   string
	conns chan *feedConn // each welcomed connection, in order

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	all []*feedConn
}

type feedConn struct{ c *ws.Conn }

var (
	welcomeFrame = []byte(`{"type":"welcome"}`)
	benchID      = `{"channel":"BenchChannel"}`
	// A small chat message, as most ActionCable traffic is (113 bytes).
	benchFrame = []byte(`{"identifier":"{\"channel\":\"BenchChannel\"}","message":{"user":"alice","text":"hello, this is a short chat line"}}`)
)

func newFeeder() *feeder {
	f := &feeder{conns: make(chan *feedConn, 1<<16)}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.url = "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/cable"
	f.wg.Add(1)
	go f.pinger()
	return f
}

func (f *feeder) serve(w http.ResponseWriter, r *http.Request) {
	c, err := ws.Accept(w, r, &ws.AcceptOptions{Subprotocols: []string{protocol.SubprotocolJSON}, InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	f.mu.Lock()
	if f.ctx.Err() != nil {
		f.mu.Unlock()
		return
	}
	f.wg.Add(1) // httptest does not wait for hijacked connections; Close does
	defer f.wg.Done()
	fc := &feedConn{c: c}
	f.all = append(f.all, fc)
	f.mu.Unlock()
	c.SetReadLimit(1 << 20)
	if c.Write(f.ctx, ws.MessageText, welcomeFrame) != nil {
		return
	}
	select {
	case f.conns <- fc:
	default:
	}
	var cmd protocol.Command
	for {
		_, data, err := c.Read(f.ctx)
		if err != nil {
			return
		}
		if (protocol.JSONCodec{}).DecodeCommand(data, &cmd) == nil && cmd.Command == protocol.CommandSubscribe {
			confirm, _ := (protocol.JSONCodec{}).AppendMessage(nil, &protocol.Message{Type: protocol.TypeConfirm, Identifier: []byte(cmd.Identifier)})
			if c.Write(f.ctx, ws.MessageText, confirm) != nil {
				return
			}
		}
	}
}

func (f *feeder) pinger() {
	defer f.wg.Done()
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case now := <-t.C:
			ping := fmt.Appendf(nil, `{"type":"ping","message":%d}`, now.Unix())
			f.mu.Lock()
			all := slices.Clone(f.all)
			f.mu.Unlock()
			for _, fc := range all {
				ctx, cancel := context.WithTimeout(f.ctx, time.Second)
				fc.c.Write(ctx, ws.MessageText, ping)
				cancel()
			}
		}
	}
}

// next returns the next connection the feeder welcomed.
func (f *feeder) next(ctx context.Context) (*feedConn, error) {
	select {
	case fc := <-f.conns:
		return fc, nil
	case <-ctx.Done():
		return nil, errors.New("feeder: no connection came")
	}
}

func (f *feeder) close() {
	f.mu.Lock()
	f.cancel()
	all := f.all
	f.all = nil
	f.mu.Unlock()
	for _, fc := range all {
		fc.c.CloseNow()
	}
	f.srv.Close()
	f.wg.Wait()
}

// ---- lean SSE client for the benchmarks ----

type benchSSE struct {
	resp *http.Response
	br   *bufio.Reader
}

func openBenchSSE(ctx context.Context, client *http.Client, base string, s sessionInfo) (*benchSSE, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/sessions/"+s.SID+"/sse?token="+s.Token, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("sse: HTTP %d", resp.StatusCode)
	}
	return &benchSSE{resp: resp, br: bufio.NewReaderSize(resp.Body, 16<<10)}, nil
}

// nextData returns the payload of the next data line (valid until the
// next call).
func (c *benchSSE) nextData() ([]byte, error) {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			return d[:len(d)-1], nil
		}
	}
}

func (c *benchSSE) close() { c.resp.Body.Close() }

var pingPrefix = []byte(`{"type":"ping"`)

func createSession(ctx context.Context, client *http.Client, base string) (sessionInfo, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/sessions", nil)
	resp, err := client.Do(req)
	if err != nil {
		return sessionInfo{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var s sessionInfo
	if resp.StatusCode != http.StatusCreated {
		return s, fmt.Errorf("create: %d %s", resp.StatusCode, body)
	}
	return s, json.Unmarshal(body, &s)
}

func raiseNoFile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return nil
}

// benchBridge serves a bridge to feederURL over HTTP/1.1 on loopback.
func benchBridge(tb testing.TB, feederURL string, opts ...bridge.Option) (*bridge.Bridge, *httptest.Server) {
	opts = append([]bridge.Option{bridge.WithSessionLimits(1<<20, 1<<20), bridge.WithSessionRate(0, 0)}, opts...)
	b := bridge.New(feederURL, opts...)
	srv := httptest.NewServer(b)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.Close(ctx)
		srv.Close()
	})
	return b, srv
}

// ---- idle memory per SSE session ----

// BenchmarkIdleSSEMemory opens N sessions, each with one SSE stream
// attached and idle (Rails-like pings every 3 s only), and reports the
// bridge process's heap in use plus goroutine stacks per session, after a
// GC. Each call measures once (-benchtime=1x runs it once).
// CABLEWAY_BENCH_HEAPPROFILE=prefix
// writes heap and goroutine profiles at the measurement.
func BenchmarkIdleSSEMemory(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		// One measurement per call, whatever b.N: it is not a loop.
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) { idleMemory(b, n) })
	}
}

type memSample struct {
	heapInuse, heapAlloc, stack uint64
	goroutines                  int
}

func sampleMemory() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heapInuse: ms.HeapInuse, heapAlloc: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

func idleMemory(b *testing.B, n int) {
	if err := raiseNoFile(); err != nil {
		b.Fatal(err)
	}
	peer := startPeer(b)
	defer peer.stop(b)
	br, srv := benchBridge(b, peer.feederURL)

	before := sampleMemory()
	start := time.Now()
	peer.command(b, fmt.Sprintf("OPEN %s %d", srv.URL, n), "READY")
	opened := time.Since(start)
	after := sampleMemory()
	if got := br.Stats().Sessions; got != n {
		b.Fatalf("%d sessions open, want %d", got, n)
	}
	if prefix := os.Getenv("CABLEWAY_BENCH_HEAPPROFILE"); prefix != "" {
		writeProfile(b, fmt.Sprintf("%s-%d.heap", prefix, n), "heap")
		writeProfile(b, fmt.Sprintf("%s-%d.goroutine", prefix, n), "goroutine")
	}
	perSession := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) / 1024 }
	b.ReportMetric(perSession(after.heapInuse+after.stack, before.heapInuse+before.stack), "KiB/session")
	b.ReportMetric(perSession(after.heapInuse, before.heapInuse), "heap-KiB/session")
	b.ReportMetric(perSession(after.heapAlloc, before.heapAlloc), "live-KiB/session")
	b.ReportMetric(perSession(after.stack, before.stack), "stack-KiB/session")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/session")
	b.ReportMetric(opened.Seconds()/float64(n)*1e6, "µs-to-open/session")
	b.ReportMetric(0, "ns/op") // not a loop: no time per op
	peer.command(b, "CLOSE", "CLOSED")
}

func writeProfile(b *testing.B, path, name string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

const peerEnv = "CABLEWAY_BENCH_PEER"

// peer is the child process holding the feeder and the SSE clients.
type peer struct {
	cmd       *exec.Cmd
	in        io.WriteCloser
	out       *bufio.Scanner
	feederURL string
}

func startPeer(b *testing.B) *peer {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), peerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &peer{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	line := p.read(b)
	u, ok := strings.CutPrefix(line, "FEEDER ")
	if !ok {
		b.Fatalf("peer: %q", line)
	}
	p.feederURL = u
	return p
}

func (p *peer) read(b *testing.B) string {
	if !p.out.Scan() {
		b.Fatalf("peer exited: %v", p.out.Err())
	}
	return p.out.Text()
}

func (p *peer) command(b *testing.B, cmd, want string) {
	fmt.Fprintln(p.in, cmd)
	if got := p.read(b); got != want {
		b.Fatalf("peer: %s: %q", cmd, got)
	}
}

func (p *peer) stop(b *testing.B) {
	fmt.Fprintln(p.in, "EXIT")
	p.in.Close()
	p.cmd.Wait()
}

// runPeer is the child process: a feeder, and on OPEN url n, n sessions
// created on the bridge at url, each with an SSE stream read to its
// welcome and then drained.
func runPeer() int {
	if err := raiseNoFile(); err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	f := newFeeder()
	defer f.close()
	fmt.Println("FEEDER", f.url)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var (
		streams []*benchSSE
		drained sync.WaitGroup
	)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		switch {
		case len(fields) == 3 && fields[0] == "OPEN":
			n, _ := strconv.Atoi(fields[2])
			opened, err := openMany(client, fields[1], n)
			streams = append(streams, opened...)
			if err != nil {
				fmt.Println("ERROR", err)
				continue
			}
			for _, st := range opened {
				drained.Go(func() { io.Copy(io.Discard, st.br) })
			}
			fmt.Println("READY")
		case len(fields) == 1 && fields[0] == "CLOSE":
			for _, st := range streams {
				st.close()
			}
			drained.Wait()
			streams = nil
			client.CloseIdleConnections()
			fmt.Println("CLOSED")
		case len(fields) == 1 && fields[0] == "EXIT":
			return 0
		}
	}
	return 0
}

func openMany(client *http.Client, base string, n int) ([]*benchSSE, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var (
		mu      sync.Mutex
		streams []*benchSSE
		first   error
		next    atomic.Int64
		wg      sync.WaitGroup
	)
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				st, err := openOne(ctx, client, base)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if st != nil {
					streams = append(streams, st)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return streams, first
}

func openOne(ctx context.Context, client *http.Client, base string) (*benchSSE, error) {
	s, err := createSession(ctx, client, base)
	if err != nil {
		return nil, err
	}
	st, err := openBenchSSE(context.Background(), client, base, s)
	if err != nil {
		return nil, err
	}
	for {
		data, err := st.nextData()
		if err != nil {
			st.close()
			return nil, err
		}
		if bytes.Equal(data, welcomeFrame) {
			return st, nil
		}
	}
}

// ---- throughput ----

// BenchmarkSSEThroughput streams b.N frames from the feeder to each of N
// sessions, each read by its own SSE client, and reports frames/s
// delivered in total. The session buffers are made large enough for b.N:
// choose it with -benchtime=Nx (e.g. 200000x for 1 session, 5000x for
// 100).
func BenchmarkSSEThroughput(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) { sseThroughput(b, n) })
	}
}

func sseThroughput(b *testing.B, n int) {
	if err := raiseNoFile(); err != nil {
		b.Fatal(err)
	}
	f := newFeeder()
	defer f.close()
	_, srv := benchBridge(b, f.url, bridge.WithQueue(b.N+16, 1<<30))
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
		readers sync.WaitGroup
		failed  atomic.Pointer[error]
	)
	b.ResetTimer()
	start := time.Now()
	for _, st := range streams {
		readers.Go(func() {
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
	var writers sync.WaitGroup
	for _, fc := range conns {
		writers.Go(func() {
			for range b.N {
				if err := fc.c.Write(ctx, ws.MessageText, benchFrame); err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	writers.Wait()
	readers.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "frames/s")
}

// ---- added latency ----

// BenchmarkLatency timestamps frames at the feeder (one every 500 µs, so
// nothing queues) and measures their age when a client reads them:
// directly over a WebSocket to the feeder, and through the bridge over
// SSE and over the WebSocket proxy. It reports p50 and p99 in µs; the
// difference from "direct" is the bridge's added latency. b.N frames per
// run: -benchtime=5000x.
func BenchmarkLatency(b *testing.B) {
	for _, via := range []string{"direct", "sse", "ws-proxy"} {
		b.Run(via, func(b *testing.B) { latency(b, via) })
	}
}

func latency(b *testing.B, via string) {
	f := newFeeder()
	defer f.close()
	_, srv := benchBridge(b, f.url, bridge.WithQueue(b.N+16, 1<<30))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	// next returns the payload of the next non-ping frame the client gets.
	var next func() ([]byte, error)
	switch via {
	case "direct", "ws-proxy":
		u := f.url
		if via == "ws-proxy" {
			u = "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
		}
		c, _, err := ws.Dial(ctx, u, &ws.DialOptions{HTTPClient: client, Subprotocols: []string{protocol.SubprotocolJSON}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.CloseNow()
		var buf []byte
		next = func() ([]byte, error) {
			for {
				_, r, err := c.Reader(ctx)
				if err != nil {
					return nil, err
				}
				buf = buf[:0]
				for {
					if len(buf) == cap(buf) {
						buf = slices.Grow(buf, 512)
					}
					k, err := r.Read(buf[len(buf):cap(buf)])
					buf = buf[:len(buf)+k]
					if err == io.EOF {
						break
					}
					if err != nil {
						return nil, err
					}
				}
				if !bytes.HasPrefix(buf, pingPrefix) && !bytes.Equal(buf, welcomeFrame) {
					return buf, nil
				}
			}
		}
	case "sse":
		st, err := openOne(ctx, client, srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		defer st.close()
		next = func() ([]byte, error) {
			for {
				data, err := st.nextData()
				if err != nil || !bytes.HasPrefix(data, pingPrefix) {
					return data, err
				}
			}
		}
	}
	fc, err := f.next(ctx)
	if err != nil {
		b.Fatal(err)
	}

	lat := make([]time.Duration, 0, b.N)
	errc := make(chan error, 1)
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
	for range b.N {
		data, err := next()
		if err != nil {
			b.Fatal(err)
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
	b.ReportMetric(pct(0.999), "p99.9-µs")
}
