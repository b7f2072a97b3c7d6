//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cableway/cableway/internal/nginxtest"
	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
)

// scaleConsumer is one SDK consumer through the load balancer, counting
// what it receives.
type scaleConsumer struct {
	name     string
	consumer *cable.Consumer
	sub      *cable.Subscription

	mu       sync.Mutex
	seen     map[int]int // number → times received
	probes   map[int]bool
	welcomes int // connections welcomed (the first, and one per takeover)
	changed  chan struct{}
}

func (c *scaleConsumer) read() {
	for msg := range c.sub.Messages() {
		var m struct {
			N     *int `json:"n"`
			Probe *int `json:"probe"`
		}
		msg.Decode(&m)
		c.mu.Lock()
		switch {
		case m.N != nil:
			c.seen[*m.N]++
		case m.Probe != nil:
			c.probes[*m.Probe] = true
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

// waitUntil waits until cond holds on the consumer's counts or ctx ends.
func (c *scaleConsumer) waitUntil(ctx context.Context, cond func(c *scaleConsumer) bool) bool {
	for {
		c.mu.Lock()
		ok, ch := cond(c), c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// TestScaleOutKillOwner is issue 13's test: three bridge processes (this
// binary, --store redis://…) behind nginx doing plain round-robin (no
// stickiness), a real redis-server, Rails with its Redis adapter; SDK
// consumers over SSE and long-poll, whose requests land on a different
// bridge each time. The bridge owning the most sessions is killed with
// SIGKILL mid-stream: its sessions continue on the other bridges. Every
// numbered broadcast is counted end to end: none of those in the log
// before the kill is lost, none is received twice, and the broadcasts
// after the takeover reach every consumer.
func TestScaleOutKillOwner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Second)
	defer cancel()
	rds := redistest.Start(t)
	rails := railstest.Start(t, railstest.WithEnv("CABLE_ADAPTER", "redis"), railstest.WithEnv("REDIS_URL", rds.URL(1)))

	// Three bridges, as an operator runs them.
	type node struct {
		name string
		proc *binProc
		addr string // host:port
	}
	listening := regexp.MustCompile(`msg="bridge listening" addr=(\S+)`)
	var nodes []*node
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i)}
		n.proc = startBin(t, "bridge", "--listen", "127.0.0.1:0", "--upstream", rails.CableURL(),
			"--store", rds.URL(0), "--node", n.name, "--lease", "1s", "--shutdown-timeout", "1s",
			"--trusted-proxy-header", "X-Forwarded-For")
		n.addr = n.proc.stderr.waitFor(t, ctx, listening)[1]
		nodes = append(nodes, n)
	}
	var servers strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&servers, "    server %s max_fails=1 fail_timeout=30s;\n", n.addr)
	}
	lb := nginxtest.StartHTTP(t, "  upstream cableway {\n"+servers.String()+"  }\n", `
    location / {
      proxy_pass http://cableway;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering off;
      proxy_read_timeout 120s;
      proxy_next_upstream error timeout;
    }
`)

	// Consumers: half on SSE, half on long-poll, every request through nginx.
	const perTransport = 3
	ident := protocol.MustIdentifier("NumbersChannel", "stream", "scale")
	var consumers []*scaleConsumer
	for i := range 2 * perTransport {
		var tr transport.Transport = sse.New(lb.URL(""))
		kind := "sse"
		if i%2 == 1 {
			tr, kind = longpoll.New(lb.URL(""), longpoll.WithPollTimeout(5*time.Second)), "longpoll"
		}
		c := &scaleConsumer{name: fmt.Sprintf("%s-%d", kind, i), seen: map[int]int{}, probes: map[int]bool{}, changed: make(chan struct{})}
		var err error
		c.consumer, err = cable.Dial(ctx, lb.WSURL("/cable"), cable.WithTransport(tr),
			cable.WithHeader("Authorization", fmt.Sprintf("Bearer secret-user%d", i)),
			cable.WithEventHandler(func(e cable.Event) {
				if e.Kind == cable.EventConnected {
					c.mu.Lock()
					c.welcomes++
					close(c.changed)
					c.changed = make(chan struct{})
					c.mu.Unlock()
				}
			}))
		if err != nil {
			t.Fatalf("%s: dial: %v", c.name, err)
		}
		t.Cleanup(func() { c.consumer.Close() })
		if c.sub, err = c.consumer.Subscribe(ctx, ident); err != nil {
			t.Fatalf("%s: subscribe: %v", c.name, err)
		}
		go c.read()
		consumers = append(consumers, c)
	}

	// Which bridge owns which session: the leases in Redis.
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer rdb.Close()
	owners := map[string][]string{} // node → session lease keys
	var leaseKeys []string
	if err := waitForCond(ctx, func() bool {
		leaseKeys, _ = rdb.Keys(ctx, "cableway:{*}:o").Result()
		return len(leaseKeys) == len(consumers)
	}); err != nil {
		t.Fatalf("%d session leases in Redis, want %d", len(leaseKeys), len(consumers))
	}
	for _, k := range leaseKeys {
		o, _ := rdb.Get(ctx, k).Result()
		owners[o] = append(owners[o], strings.TrimSuffix(k, ":o"))
	}
	victim := nodes[0]
	for _, n := range nodes {
		if len(owners[n.name]) > len(owners[victim.name]) {
			victim = n
		}
	}
	if len(owners) < 2 {
		t.Errorf("round-robin put every session on one bridge: %v", owners)
	}
	t.Logf("sessions per bridge: n0 %d, n1 %d, n2 %d; killing %s", len(owners["n0"]), len(owners["n1"]), len(owners["n2"]), victim.name)

	// Phase 1: numbers 0…N1-1, all in the victim's sessions' logs before the kill.
	const n1 = 200
	before := map[string]uint64{}
	for _, k := range owners[victim.name] {
		before[k], _ = rdb.HGet(ctx, k+":m", "n").Uint64()
	}
	broadcastRange(t, ctx, rails, 0, n1)
	if err := waitForCond(ctx, func() bool {
		for _, k := range owners[victim.name] {
			if nx, _ := rdb.HGet(ctx, k+":m", "n").Uint64(); nx < before[k]+n1 {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal("phase 1 not in the victim's logs")
	}
	// Phase 2, while the victim dies: numbers 1000… broadcast steadily.
	stop2 := make(chan struct{})
	done2 := make(chan int)
	go func() {
		i := 1000
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop2:
				done2 <- i
				return
			case <-tick.C:
				if rails.Broadcast(ctx, "numbers:scale", map[string]int{"n": i}) == nil {
					i++
				}
			}
		}
	}()
	killed := time.Now()
	syscall.Kill(-victim.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-victim.proc.done

	// Every consumer is back: a probe broadcast after the takeover reaches
	// each (the victim's consumers saw a new welcome and resubscribed).
	for probe := 0; ; probe++ {
		if err := rails.Broadcast(ctx, "numbers:scale", map[string]int{"probe": probe}); err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		all := true
		for _, c := range consumers {
			if !c.waitUntil(pctx, func(c *scaleConsumer) bool { return c.probes[probe] }) {
				all = false
			}
		}
		pcancel()
		if all {
			break
		}
		if ctx.Err() != nil {
			for _, c := range consumers {
				c.mu.Lock()
				t.Logf("%s: welcomes %d, probes %v, err %v", c.name, c.welcomes, c.probes, c.sub.Err())
				c.mu.Unlock()
			}
			t.Fatal("consumers did not all come back after the kill")
		}
	}
	t.Logf("all consumers back %v after the kill", time.Since(killed).Round(time.Millisecond))
	close(stop2)
	last2 := <-done2

	// Phase 3: numbers 5000…, after the takeover.
	const n3 = 200
	broadcastRange(t, ctx, rails, 5000, 5000+n3)
	for _, c := range consumers {
		if !c.waitUntil(ctx, func(c *scaleConsumer) bool {
			for i := 5000; i < 5000+n3; i++ {
				if c.seen[i] == 0 {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("%s: phase 3 incomplete", c.name)
		}
	}

	// The count, end to end.
	for _, c := range consumers {
		c.mu.Lock()
		var lost, dup []int
		check := func(from, to int, mustHave bool) {
			for i := from; i < to; i++ {
				switch n := c.seen[i]; {
				case n > 1:
					dup = append(dup, i)
				case n == 0 && mustHave:
					lost = append(lost, i)
				}
			}
		}
		check(0, n1, true)
		check(1000, last2, false) // broadcast while a session had no upstream: lost by ActionCable itself
		check(5000, 5000+n3, true)
		got2 := 0
		for i := 1000; i < last2; i++ {
			got2 += min(c.seen[i], 1)
		}
		t.Logf("%s: welcomes %d; phase 1 %d/%d, phase 2 %d/%d, phase 3 %d/%d; dropped %d", c.name, c.welcomes,
			n1-len(lost), n1, got2, last2-1000, n3, n3, c.sub.Dropped())
		if len(lost) > 0 || len(dup) > 0 || c.sub.Dropped() > 0 {
			t.Errorf("%s: lost %v, duplicated %v, dropped %d", c.name, lost, dup, c.sub.Dropped())
		}
		c.mu.Unlock()
	}

	// The survivors took the victim's sessions over.
	var takeovers int
	for _, n := range nodes {
		if n == victim {
			continue
		}
		takeovers += int(scrapeCounter(t, ctx, "http://"+n.addr+"/metrics", "cableway_bridge_store_takeovers_total"))
	}
	if takeovers != len(owners[victim.name]) {
		t.Errorf("takeovers %d, want %d (the victim's sessions)", takeovers, len(owners[victim.name]))
	}
}

func broadcastRange(t *testing.T, ctx context.Context, rails *railstest.Server, from, to int) {
	t.Helper()
	msgs := make([]any, 0, to-from)
	for i := from; i < to; i++ {
		msgs = append(msgs, map[string]int{"n": i})
	}
	if err := rails.BroadcastMany(ctx, "numbers:scale", msgs); err != nil {
		t.Fatal(err)
	}
}

// waitForCond polls cond (a figure in Redis, which has no event to wait
// on) until it holds or ctx ends.
func waitForCond(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// scrapeCounter reads one metric's value from a Prometheus text page.
func scrapeCounter(t *testing.T, ctx context.Context, u, name string) float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(line, name+" "), &v)
			return v
		}
	}
	t.Fatalf("%s: no %s in\n%s", u, name, body)
	return 0
}
