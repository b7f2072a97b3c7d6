package compat

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/cableway/cableway/server/session"
)

func testQueue(budget *core.Budget) *queue {
	var last atomic.Uint64
	return newMemoryQueue(0, last.Store, func(string, ...any) {}, budget)
}

func numbered(n int) event {
	return event{typ: "received", chanID: "c", at: time.Now(), identifier: []byte(`{}`), message: []byte(strconv.Itoa(n))}
}

// TestQueueBound: the seed's poll-queue bound on the core log: the oldest
// events go, counted as dropped when no listener had them, and every event
// is either handed out or counted, once.
func TestQueueBound(t *testing.T) {
	q := testQueue(nil)
	q.setLimit(3)
	for n := 1; n <= 10; n++ {
		q.push(numbered(n))
	}
	items, rest, ended, _ := q.take(q.cursor(), 256, true)
	if len(items) != 3 || items[0].id != 8 || items[2].id != 10 || rest != 0 || ended {
		t.Fatalf("take: %v rest %d ended %v, want msg_ids 8..10", items, rest, ended)
	}
	if d := q.takeDropped(); d != 7 {
		t.Fatalf("dropped %d, want 7", d)
	}
	// Handed out, then pushed out by the bound: not dropped.
	for n := 11; n <= 16; n++ {
		q.push(numbered(n))
	}
	items, _, _, _ = q.take(10, 2, false)
	if len(items) != 2 || items[0].id != 14 {
		t.Fatalf("take after 10: %v, want 14, 15", items)
	}
	for n := 17; n <= 18; n++ {
		q.push(numbered(n))
	}
	if d := q.takeDropped(); d != 3 {
		t.Fatalf("dropped %d, want 3 (11..13; 14 and 15 were handed out)", d)
	}
	q.end()
	items, _, ended, _ = q.take(15, 256, true)
	if len(items) != 3 || !ended || !q.over() {
		t.Fatalf("after end: %v ended %v over %v, want 16..18 and the end", items, ended, q.over())
	}
}

// TestQueueBudget: over the shared memory budget, an event that would
// pass it while the session holds events not handed out is dropped and
// counted, not queued silently past the budget.
func TestQueueBudget(t *testing.T) {
	ev := numbered(1)
	size := len(ev.appendJSON(nil))
	b := core.NewBudget(int64(2*size + size/2))
	q := testQueue(b)
	for n := 1; n <= 5; n++ {
		q.push(numbered(n))
	}
	if used := b.Used(); used > int64(3*size) {
		t.Fatalf("budget use %d, want at most %d", used, 3*size)
	}
	items, _, _, _ := q.take(q.cursor(), 256, true)
	if got := len(items) + int(q.takeDropped()); got != 5 {
		t.Fatalf("%d handed out + dropped, want 5", got)
	}
	q.release()
	if used := b.Used(); used != 0 {
		t.Fatalf("budget use %d after release, want 0", used)
	}
}

// TestPollTimeout: a timeout beyond what a time.Duration holds is capped,
// not overflowed into a poll that answers at once.
func TestPollTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"": DefaultPollTimeout, "0": 0, "1.5": 1500 * time.Millisecond, "60": MaxPollTimeout,
		"61": MaxPollTimeout, "1e10": MaxPollTimeout, "1e300": MaxPollTimeout, "Inf": MaxPollTimeout,
	} {
		if got, err := pollTimeout(v); err != nil || got != want {
			t.Errorf("timeout=%s: %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"abc", "-1", "NaN", "-Inf"} {
		if _, err := pollTimeout(v); err == nil {
			t.Errorf("timeout=%s: no error", v)
		}
	}
}
