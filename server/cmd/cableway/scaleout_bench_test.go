//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/internal/redistest"
)

// benchBridge is one "cableway bridge --store …" process of a benchmark.
type benchBridge struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

func startBenchBridge(b *testing.B, bin string, args ...string) *benchBridge {
	b.Helper()
	cmd := exec.Command(bin, append([]string{"bridge", "--listen", "127.0.0.1:0", "--shutdown-timeout", "1s", "--metrics=false"}, args...)...)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &benchBridge{cmd: cmd, done: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg="bridge listening" addr=\S+ url=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	b.Cleanup(p.kill)
	select {
	case p.url = <-urls:
	case <-p.done:
		b.Fatal("bridge exited before listening")
	case <-time.After(30 * time.Second):
		b.Fatal("bridge not listening within 30 s")
	}
	return p
}

func (p *benchBridge) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func benchDo(ctx context.Context, method, url, auth, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := noKeepAlive().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// BenchmarkScaleOut measures, with bridge processes sharing a real
// redis-server (run it with -benchtime=1x; each sub-benchmark does a
// fixed amount of work):
//
//   - takeover/lease=…: the time from kill -9 of a session's owner to the
//     new welcome reaching a long-poll client on the surviving bridge,
//     over 12 takeovers (median, p99 = the slowest of 12);
//   - idle-session-memory: Redis's used_memory per idle session (INFO
//     memory, 200 sessions, each holding its welcome).
func BenchmarkScaleOut(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "cableway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	rds := redistest.Start(b)
	rails := railstest.Start(b)
	for _, lease := range []string{"1s", "3s"} {
		b.Run("takeover/lease="+lease, func(b *testing.B) {
			for range b.N {
				benchTakeovers(b, bin, rds, rails, lease, 12)
			}
		})
	}
	b.Run("idle-session-memory", func(b *testing.B) {
		for range b.N {
			benchIdleMemory(b, bin, rds, rails, 200)
		}
	})
}

func benchTakeovers(b *testing.B, bin string, rds *redistest.Server, rails *railstest.Server, lease string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	survivor := startBenchBridge(b, bin, "--upstream", rails.CableURL(), "--store", rds.URL(0), "--node", "survivor-"+lease, "--lease", lease)
	var took []time.Duration
	for i := range n {
		victim := startBenchBridge(b, bin, "--upstream", rails.CableURL(), "--store", rds.URL(0), "--node", fmt.Sprintf("victim-%s-%d", lease, i), "--lease", lease)
		code, body, err := benchDo(ctx, "POST", victim.url+"/sessions", "Bearer secret-bench", "")
		if err != nil || code != http.StatusCreated {
			b.Fatalf("create: %d %s %v", code, body, err)
		}
		var s struct {
			SID, Token string
		}
		json.Unmarshal(body, &s)
		// The client long-polls the survivor, past the first welcome.
		welcomed := make(chan time.Time, 1)
		go func() {
			after := uint64(1)
			for ctx.Err() == nil {
				code, body, err := benchDo(ctx, "GET", fmt.Sprintf("%s/sessions/%s/poll?token=%s&after=%d&timeout=5", survivor.url, s.SID, s.Token, after), "", "")
				if err != nil || code != http.StatusOK {
					continue
				}
				var p struct {
					Frames []json.RawMessage
					Next   uint64
				}
				json.Unmarshal(body, &p)
				after = p.Next
				for _, f := range p.Frames {
					if strings.Contains(string(f), `"welcome"`) {
						welcomed <- time.Now()
						return
					}
				}
			}
		}()
		// Once the survivor serves the poll (its handle is open), kill.
		for !survivorServes(ctx, rds, s.SID) {
			select {
			case <-ctx.Done():
				b.Fatal("the survivor never served the session")
			case <-time.After(10 * time.Millisecond):
			}
		}
		killed := time.Now()
		victim.kill()
		select {
		case at := <-welcomed:
			took = append(took, at.Sub(killed))
		case <-ctx.Done():
			b.Fatal("no takeover")
		}
		benchDo(ctx, "DELETE", fmt.Sprintf("%s/sessions/%s?token=%s", survivor.url, s.SID, s.Token), "", "")
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(took[0].Milliseconds()), "min-ms")
}

// survivorServes reports whether a client's attach on another bridge was
// recorded for the session (its activity stamp moved past creation).
func survivorServes(ctx context.Context, rds *redistest.Server, sid string) bool {
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer rdb.Close()
	n, err := rdb.HGet(ctx, "cableway:{"+sid+"}:m", "k1").Int()
	return err == nil && n > 0 // a long-poll downstream attached (kind 1)
}

func benchIdleMemory(b *testing.B, bin string, rds *redistest.Server, rails *railstest.Server, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer rdb.Close()
	br := startBenchBridge(b, bin, "--upstream", rails.CableURL(), "--store", rds.URL(2), "--node", "mem",
		"--session-rate", "0", "--max-sessions-per-ip", "100000")
	used := func() int64 {
		info, _ := rdb.InfoMap(ctx, "memory").Result()
		var v int64
		fmt.Sscan(info["Memory"]["used_memory"], &v)
		return v
	}
	before := used()
	for i := range n {
		code, body, err := benchDo(ctx, "POST", br.url+"/sessions", fmt.Sprintf("Bearer secret-idle%d", i), "")
		if err != nil || code != http.StatusCreated {
			b.Fatalf("create %d: %d %s %v", i, code, body, err)
		}
	}
	time.Sleep(4 * time.Second) // a ping from Rails (every 3 s) recorded in each session: the idle state measured
	after := used()
	b.ReportMetric(float64(after-before)/float64(n), "bytes/session")
}
