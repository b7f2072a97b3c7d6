//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/coder/websocket"
)

// chunk encodes s in HTTP/1.1 chunks of at most n bytes, ended by the
// last chunk.
func chunk(s string, n int) string {
	var b strings.Builder
	for len(s) > 0 {
		k := min(n, len(s))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", k, s[:k])
		s = s[k:]
	}
	return b.String() + "0\r\n\r\n"
}

func broadcastEvent(id, seq int) string {
	return fmt.Sprintf("id: 77:%d\ndata: {\"identifier\":\"{\\\"channel\\\":\\\"BenchChannel\\\"}\",\"message\":{\"seq\":%d,\"ts\":5,\"pad\":\"xx\"}}\n\n", id, seq)
}

// The stream checker counts every seq of a phase: received once, in
// order; anything else is lost or duplicated. Chunks and reads split lines
// anywhere.
func TestStreamCheck(t *testing.T) {
	stream := "retry: 1000\n\n" +
		"id: 77:1\ndata: {\"type\":\"welcome\"}\n\n" +
		"id: 77:2\ndata: {\"identifier\":\"{\\\"channel\\\":\\\"BenchChannel\\\"}\",\"type\":\"confirm_subscription\"}\n\n" +
		broadcastEvent(3, 1) + broadcastEvent(4, 2) + broadcastEvent(5, 2) +
		"data: {\"type\":\"ping\",\"message\":1}\n\n" + ": keep-alive\n\n" +
		broadcastEvent(6, 4) +
		// Re-encoded: other key order, spaces.
		"id: 77:7\ndata: {\"message\": {\"pad\": \"xx\", \"ts\": 5, \"seq\": 5}, \"identifier\": \"{\\\"channel\\\":\\\"BenchChannel\\\"}\"}\n\n" +
		broadcastEvent(8, 7) +
		"event: reset\ndata: {\"reason\":\"evicted\"}\n\n" +
		broadcastEvent(9, 8) // after the reset: never read
	for _, size := range []int{1, 7, 64, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := &client{t0: time.Now(), perIP: 100}
			s := c.newSession(0)
			s.startPhase(1, 8, true)
			br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(chunk(stream, size))), 16)
			if err := s.readBody(br, true); err != errStop {
				t.Fatalf("readBody: %v, want the reset to stop it", err)
			}
			select {
			case <-s.confirmed:
			default:
				t.Error("the confirmation was not noticed")
			}
			r := s.result()
			// Broadcasts 1…8: 1, 2, 4, 5, 7 arrived (2 twice); 3, 6, 8 did not.
			if r.got != 5 || r.dup != 1 || r.lost != 3 {
				t.Errorf("got %d, dup %d, lost %d; want 5, 1, 3", r.got, r.dup, r.lost)
			}
			if len(r.lat) != 5 {
				t.Errorf("%d latencies, want 5", len(r.lat))
			}
			if r.dead != `reset {"reason":"evicted"}` {
				t.Errorf("dead = %q", r.dead)
			}
			if s.cursor.Load() != 8 || s.epoch.Load() != 77 {
				t.Errorf("cursor %d:%d, want 77:8", s.epoch.Load(), s.cursor.Load())
			}
			if c.frames.Load() != 6 {
				t.Errorf("%d broadcast frames counted, want 6", c.frames.Load())
			}
		})
	}
}

func TestStreamBadChunk(t *testing.T) {
	c := &client{t0: time.Now(), perIP: 100}
	s := c.newSession(0)
	s.startPhase(1, 1, false)
	for _, in := range []string{"zz\r\nabc\r\n", "3\r\nabcdef\r\n", "5\r\nabc"} {
		err := s.readBody(bufio.NewReader(strings.NewReader(in)), true)
		if err == nil || err == errStop || err == io.EOF {
			t.Errorf("%q: %v, want an error", in, err)
		}
	}
}

// The feeder speaks ActionCable to a real WebSocket client: welcome,
// confirmation, then every broadcast published after the subscription, in
// order, with its publish time.
func TestFeeder(t *testing.T) {
	for _, coalesce := range []bool{true, false} {
		t.Run(fmt.Sprint("coalesce=", coalesce), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			f, err := newFeeder(time.Now(), 64, coalesce)
			if err != nil {
				t.Fatal(err)
			}
			defer f.close()
			f.publish(2) // before anyone subscribed: nobody gets these
			c, _, err := websocket.Dial(ctx, f.url, &websocket.DialOptions{Subprotocols: []string{"actioncable-v1-json"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			read := func() map[string]any {
				t.Helper()
				_, data, err := c.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]any
				if err := json.Unmarshal(data, &m); err != nil {
					t.Fatalf("%q: %v", data, err)
				}
				return m
			}
			if m := read(); m["type"] != "welcome" {
				t.Fatalf("first frame %v, want a welcome", m)
			}
			sub, _ := json.Marshal(map[string]string{"command": "subscribe", "identifier": benchIdentifier})
			if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
				t.Fatal(err)
			}
			if m := read(); m["type"] != "confirm_subscription" || m["identifier"] != benchIdentifier {
				t.Fatalf("got %v, want the confirmation", m)
			}
			for f.subscribers() != 1 {
				select {
				case <-ctx.Done():
					t.Fatal("the subscription was not registered")
				case <-time.After(time.Millisecond):
				}
			}
			f.publish(300) // more than one coalesced write
			ts := f.times()
			for want := 3; want <= 302; want++ {
				m := read()
				if m["type"] == "ping" {
					want--
					continue
				}
				msg, _ := m["message"].(map[string]any)
				if msg["seq"] != float64(want) || msg["ts"] != float64(ts[want-1]) || len(msg["pad"].(string)) != 64 {
					t.Fatalf("frame %v, want seq %d", m, want)
				}
			}
		})
	}
}

// End to end against the cableway binary: within the bridge's bounds
// nothing is lost, and when the bridge evicts frames no client had, the
// benchmark reports them lost and the sessions reset.
func TestAgainstBridge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cableway binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, err := buildBridge(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := func(paced time.Duration, args ...string) options {
		return options{ks: []int{4}, blast: 3000, rate: 400, paced: paced, pad: 64, conc: 4,
			perIP: 2, ack: 200 * time.Millisecond, ackWorkers: 4, bridgeBin: bin, bridgeArgs: args, stall: 20 * time.Second, coalesce: true}
	}
	run := func(o options) (kResult, string) {
		t.Helper()
		var out, errs bytes.Buffer
		r, err := benchResults(ctx, o, &out, &errs)
		if err != nil {
			t.Fatalf("%v\n%s", err, errs.String())
		}
		return r[0], out.String()
	}
	check := func(name string, p phase) {
		t.Helper()
		if p.got+p.lost != p.expected {
			t.Errorf("%s: %d received + %d lost ≠ %d expected", name, p.got, p.lost, p.expected)
		}
		if p.dup != 0 {
			t.Errorf("%s: %d duplicated", name, p.dup)
		}
	}

	// 3000 frames fit a queue of 8192 frames and 1 MiB: nothing may go.
	r, out := run(opts(250*time.Millisecond, "--queue-size", "8192"))
	check("paced", r.paced)
	check("blast", r.blast)
	if r.paced.lost != 0 || r.blast.lost != 0 || r.blast.resets != 0 || r.blast.evicted != 0 {
		t.Errorf("within the bounds: lost %d paced, %d blast, %d resets, %v evicted\n%s",
			r.paced.lost, r.blast.lost, r.blast.resets, r.blast.evicted, out)
	}
	if r.paced.broadcasts != 25 || len(r.paced.lat) != int(r.paced.expected) {
		t.Errorf("paced: %d broadcasts, %d latencies for %d frames", r.paced.broadcasts, len(r.paced.lat), r.paced.expected)
	}
	if r.idleGoroutines <= 0 || r.idleRSS <= 0 || !strings.Contains(out, "blast: lost / dup") {
		t.Errorf("idle figures missing or report incomplete:\n%s", out)
	}

	// A queue of 2 frames: a blast outruns every SSE writer, and the
	// bridge holds each session's upstream back instead of dropping (the
	// tool's loss accounting itself is tested above, on crafted streams).
	r, out = run(opts(0, "--queue-size", "2"))
	check("blast", r.blast)
	if r.blast.lost != 0 || r.blast.resets != 0 {
		t.Errorf("a queue of 2: lost %d, resets %d, evicted %v; backpressure must lose nothing\n%s", r.blast.lost, r.blast.resets, r.blast.evicted, out)
	}
}

// A stream opened in one request names its session first: the reader
// takes the session's name, token and epoch from that event.
func TestStreamSessionEvent(t *testing.T) {
	c := &client{t0: time.Now(), perIP: 100}
	s := c.newSession(0)
	s.startPhase(1, 1, false)
	stream := "retry: 1000\n\n" +
		"event: session\ndata: {\"sid\":\"S\",\"token\":\"T\",\"epoch\":77,\"ttl\":30}\n\n" +
		"id: 77:1\ndata: {\"type\":\"welcome\"}\n\n" +
		"id: 77:2\ndata: {\"identifier\":\"{\\\"channel\\\":\\\"BenchChannel\\\"}\",\"type\":\"confirm_subscription\"}\n\n" +
		broadcastEvent(3, 1)
	br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(chunk(stream, 5))), 16)
	if err := s.readBody(br, true); err != io.EOF {
		t.Fatalf("readBody: %v", err)
	}
	if s.sid != "S" || s.token != "T" || s.epoch.Load() != 77 || s.cursor.Load() != 3 {
		t.Errorf("session %q %q epoch %d cursor %d; want S T 77 3", s.sid, s.token, s.epoch.Load(), s.cursor.Load())
	}
	if r := s.result(); r.got != 1 || r.lost != 0 {
		t.Errorf("got %d, lost %d; want the broadcast", r.got, r.lost)
	}
	// A session event that does not parse ends the stream.
	s2 := c.newSession(1)
	if err := s2.feed([]byte("event: session\ndata: {}\n\n")); err == nil {
		t.Error("a session event without sid and token was accepted")
	}
}
