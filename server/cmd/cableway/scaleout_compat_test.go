//go:build unix

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cableway/cableway/internal/nginxtest"
	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/internal/redistest"
)

// compatScaleClient is one client of the compat API (server/COMPAT.md)
// through the load balancer, on SSE or long-poll, checking and counting
// what it receives: msg_ids must follow each other (a gap is an event
// lost from the log, a repeat a duplicate), numbers are counted, and the
// other events are recorded in order with the numbers around them.
type compatScaleClient struct {
	name   string
	id     string // events id
	cookie string
	sse    bool
	url    string // the events URL through the load balancer
	http   *http.Client

	mu       sync.Mutex
	last     uint64 // the last msg_id
	seen     map[int]int
	probes   map[int]bool
	log      []compatLogEntry
	problems []string
	opened   bool
	changed  chan struct{}
}

// compatLogEntry is one received event: a number (n ≥ 0), or another
// event (what).
type compatLogEntry struct {
	n    int
	what string
}

func newCompatScaleClient(base string, i int, sse bool) *compatScaleClient {
	var b [16]byte
	rand.Read(b[:])
	kind := "longpoll"
	if sse {
		kind = "sse"
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	return &compatScaleClient{
		name: fmt.Sprintf("compat-%s-%d", kind, i), id: id, cookie: fmt.Sprintf("user=compat%d", i), sse: sse,
		url:  base + "/events/" + id,
		http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		seen: map[int]int{}, probes: map[int]bool{}, changed: make(chan struct{}),
	}
}

func (c *compatScaleClient) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// handle takes one event (JSON, SSE or long-poll form).
func (c *compatScaleClient) handle(raw []byte) {
	var ev struct {
		Type    string          `json:"type"`
		MsgID   string          `json:"msg_id"`
		Message json.RawMessage `json:"message"`
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.signalLocked()
	if err := json.Unmarshal(raw, &ev); err != nil {
		c.problems = append(c.problems, fmt.Sprintf("bad event %s: %v", raw, err))
		return
	}
	if ev.Type == "joined" {
		c.opened = true
		return
	}
	id, err := strconv.ParseUint(ev.MsgID, 10, 64)
	if err != nil || id != c.last+1 {
		c.problems = append(c.problems, fmt.Sprintf("msg_id %q after %d (%s)", ev.MsgID, c.last, raw))
	}
	if err == nil && id > c.last {
		c.last = id
	}
	var m struct {
		N     *int `json:"n"`
		Probe *int `json:"probe"`
	}
	if ev.Type == "received" && json.Unmarshal(ev.Message, &m) == nil {
		switch {
		case m.N != nil:
			c.seen[*m.N]++
			c.log = append(c.log, compatLogEntry{n: *m.N})
			return
		case m.Probe != nil:
			c.probes[*m.Probe] = true
			return
		}
	}
	what := ev.Type
	if ev.Type == "disconnected" {
		what += ":" + string(ev.Message)
	}
	c.log = append(c.log, compatLogEntry{n: -1, what: what})
}

func (c *compatScaleClient) request(ctx context.Context, method, u string, header http.Header, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Cookie", c.cookie)
	for k, v := range header {
		req.Header[k] = v
	}
	return c.http.Do(req)
}

// run listens until ctx ends, reconnecting as an EventSource does (at
// its Last-Event-ID) or polling again at its cursor after any failure.
func (c *compatScaleClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		c.mu.Lock()
		last := c.last
		c.mu.Unlock()
		var err error
		if c.sse {
			err = c.stream(ctx, last)
		} else {
			err = c.poll(ctx, last)
		}
		if err != nil && ctx.Err() == nil {
			select { // a failed request (the killed node): again shortly
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

func (c *compatScaleClient) stream(ctx context.Context, last uint64) error {
	h := http.Header{"Accept": {"text/event-stream"}}
	if last > 0 {
		h.Set("Last-Event-ID", strconv.FormatUint(last, 10))
	}
	resp, err := c.request(ctx, "GET", c.url+"?poll-queue=1024", h, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("SSE: %d %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	var data strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data.Len() > 0 {
				c.handle([]byte(data.String()))
				data.Reset()
			}
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

func (c *compatScaleClient) poll(ctx context.Context, last uint64) error {
	u := fmt.Sprintf("%s?poll-queue=1024&timeout=5&after=%d", c.url, last)
	resp, err := c.request(ctx, "GET", u, http.Header{"Accept": {"application/json"}}, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("poll: %d %s", resp.StatusCode, b)
	}
	var p struct {
		Messages []json.RawMessage `json:"messages"`
		Dropped  uint64            `json:"dropped"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if p.Dropped > 0 {
		c.mu.Lock()
		c.problems = append(c.problems, fmt.Sprintf("%d events dropped", p.Dropped))
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.opened = true
	c.signalLocked()
	c.mu.Unlock()
	for _, m := range p.Messages {
		c.handle(m)
	}
	return nil
}

// post sends a seed POST through the load balancer and checks the answer.
func (c *compatScaleClient) post(ctx context.Context, body string) error {
	resp, err := c.request(ctx, "POST", c.url, http.Header{"Content-Type": {"application/json"}}, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res []map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &res) != nil || len(res) != 1 || res[0]["error"] != nil {
		return fmt.Errorf("POST %s: %d %s", body, resp.StatusCode, b)
	}
	return nil
}

func (c *compatScaleClient) waitUntil(ctx context.Context, cond func(c *compatScaleClient) bool) bool {
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

// TestScaleOutCompatKillOwner: the compat API on three bridge processes
// sharing Redis behind nginx round-robin (no stickiness), Rails with its
// Redis adapter. Compat clients on SSE and long-poll open their sessions,
// subscribe through POSTs that land on any node, and receive a numbered
// stream. The bridge owning the most compat sessions is killed with
// SIGKILL mid-stream: the streams continue from the other bridges.
// Counted end to end: no msg_id gap (nothing in the log lost), no
// duplicate, every number broadcast before the kill (in the log) and after
// the takeover received; the numbers Rails broadcast while no node held a
// session's upstream are missing only where the client was told of the
// reconnect (disconnected, connection_lost, reconnect true, then
// connected), never silently.
func TestScaleOutCompatKillOwner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Second)
	defer cancel()
	rds := redistest.Start(t)
	rails := railstest.Start(t, railstest.WithEnv("CABLE_ADAPTER", "redis"), railstest.WithEnv("REDIS_URL", rds.URL(1)))

	type node struct {
		name string
		proc *binProc
		addr string
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

	// Clients: half on SSE, half on long-poll, every request through nginx.
	const perTransport = 3
	const ident = `{"channel":"NumbersChannel","stream":"scale"}`
	runCtx, stopRun := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopRun(); wg.Wait() }()
	var clients []*compatScaleClient
	for i := range 2 * perTransport {
		c := newCompatScaleClient(lb.URL(""), i, i%2 == 0)
		wg.Add(1)
		go func() { defer wg.Done(); c.run(runCtx) }()
		if !c.waitUntil(ctx, func(c *compatScaleClient) bool { return c.opened }) {
			t.Fatalf("%s: not opened", c.name)
		}
		// Subscribe through whichever node the POST lands on.
		if err := c.post(ctx, `[{"identifier":`+ident+`,"subscribe":true}]`); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !c.waitUntil(ctx, func(c *compatScaleClient) bool { return len(c.log) > 0 }) {
			t.Fatalf("%s: not subscribed", c.name)
		}
		if c.log[0].what != "connected" {
			t.Fatalf("%s: first event %+v, want connected", c.name, c.log[0])
		}
		clients = append(clients, c)
	}

	// Which bridge owns which compat session: the leases in Redis.
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer rdb.Close()
	owner := map[*compatScaleClient]string{}
	perNode := map[string]int{}
	for _, c := range clients {
		o, err := rdb.Get(ctx, "cableway:{compat:"+c.id+"}:o").Result()
		if err != nil {
			t.Fatalf("%s: no lease in Redis: %v", c.name, err)
		}
		owner[c] = o
		perNode[o]++
	}
	victim := nodes[0]
	for _, n := range nodes {
		if perNode[n.name] > perNode[victim.name] {
			victim = n
		}
	}
	if len(perNode) < 2 {
		t.Errorf("round-robin put every compat session on one bridge: %v", perNode)
	}
	t.Logf("compat sessions per bridge: %v; killing %s", perNode, victim.name)

	// Phase 1: numbers 0…N1-1, all in the victim's sessions' logs before the kill.
	const n1 = 200
	before := map[*compatScaleClient]uint64{}
	for _, c := range clients {
		before[c], _ = rdb.HGet(ctx, "cableway:{compat:"+c.id+"}:m", "n").Uint64()
	}
	broadcastRange(t, ctx, rails, 0, n1)
	if err := waitForCond(ctx, func() bool {
		for _, c := range clients {
			if nx, _ := rdb.HGet(ctx, "cableway:{compat:"+c.id+"}:m", "n").Uint64(); owner[c] == victim.name && nx < before[c]+n1 {
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

	// Every client is back: a probe broadcast after the takeover reaches
	// each (the victim's sessions were taken over and resubscribed).
	for probe := 0; ; probe++ {
		if err := rails.Broadcast(ctx, "numbers:scale", map[string]int{"probe": probe}); err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		all := true
		for _, c := range clients {
			if !c.waitUntil(pctx, func(c *compatScaleClient) bool { return c.probes[probe] }) {
				all = false
			}
		}
		pcancel()
		if all {
			break
		}
		if ctx.Err() != nil {
			for _, c := range clients {
				c.mu.Lock()
				t.Logf("%s: last msg_id %d, probes %v, problems %v", c.name, c.last, c.probes, c.problems)
				c.mu.Unlock()
			}
			t.Fatal("compat clients did not all come back after the kill")
		}
	}
	t.Logf("all compat clients back %v after the kill", time.Since(killed).Round(time.Millisecond))
	close(stop2)
	last2 := <-done2

	// Phase 3: numbers 5000…, after the takeover.
	const n3 = 200
	broadcastRange(t, ctx, rails, 5000, 5000+n3)
	for _, c := range clients {
		if !c.waitUntil(ctx, func(c *compatScaleClient) bool {
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
	// POSTs after the takeover land anywhere and reach the owner.
	for _, c := range clients {
		for range 3 {
			if err := c.post(ctx, `[{"identifier":`+ident+`,"send":{"action":"noop"}}]`); err != nil {
				t.Errorf("%s after the takeover: %v", c.name, err)
			}
		}
	}

	// The count, end to end.
	reconnect := `disconnected:{"reason":"connection_lost","reconnect":true}`
	for _, c := range clients {
		c.mu.Lock()
		var lost, dup []int
		for n, k := range c.seen {
			if k > 1 {
				dup = append(dup, n)
			}
		}
		for i := range n1 {
			if c.seen[i] == 0 {
				lost = append(lost, i)
			}
		}
		// What the client was told: the victim's sessions, one reconnect
		// (disconnected, then connected); the others, nothing.
		var told []string
		lastBefore, firstAfter := -1, -1
		for i, e := range c.log[1:] {
			if e.n >= 0 {
				continue
			}
			told = append(told, e.what)
			if e.what == reconnect {
				for j := i; j >= 0; j-- { // c.log[j] precedes c.log[1+i]
					if c.log[j].n >= 1000 && c.log[j].n < last2 {
						lastBefore = c.log[j].n
						break
					}
				}
				for _, f := range c.log[2+i:] {
					if f.n >= 1000 && f.n < last2 {
						firstAfter = f.n
						break
					}
				}
			}
		}
		want := []string(nil)
		if owner[c] == victim.name {
			want = []string{reconnect, "connected"}
		}
		if fmt.Sprint(told) != fmt.Sprint(want) {
			t.Errorf("%s (owned by %s): told %v, want %v", c.name, owner[c], told, want)
		}
		// Phase 2 numbers missing: only while the client was told its
		// session had no upstream.
		var silent []int
		got2 := 0
		for i := 1000; i < last2; i++ {
			if c.seen[i] > 0 {
				got2++
				continue
			}
			told := lastBefore < i && (firstAfter < 0 || i < firstAfter) && len(want) > 0
			if !told {
				silent = append(silent, i)
			}
		}
		t.Logf("%s (owner %s): phase 1 %d/%d, phase 2 %d/%d, phase 3 %d/%d; told %v", c.name, owner[c],
			n1-len(lost), n1, got2, last2-1000, n3, n3, told)
		if len(lost) > 0 || len(dup) > 0 || len(silent) > 0 || len(c.problems) > 0 {
			t.Errorf("%s: lost %v, duplicated %v, missing silently %v, problems %v", c.name, lost, dup, silent, c.problems)
		}
		c.mu.Unlock()
	}
	for _, c := range clients {
		if owner[c] != victim.name {
			continue
		}
		if o, _ := rdb.Get(ctx, "cableway:{compat:"+c.id+"}:o").Result(); o == "" || o == victim.name {
			t.Errorf("%s: owner after the kill %q, want a survivor", c.name, o)
		}
	}
}
