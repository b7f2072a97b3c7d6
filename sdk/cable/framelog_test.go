package cable_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/cable"
)

// lineCounter is a slog.Handler that keeps the records it gets.
type lineCounter struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *lineCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *lineCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *lineCounter) WithGroup(string) slog.Handler            { return h }
func (h *lineCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}

// skipped returns the "frame skipped" lines so far and the frames they
// account for: each line stands for its own frame plus the ones it says
// were not logged before it.
func (h *lineCounter) skipped() (lines int, accounted uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message != "cable: frame skipped" {
			continue
		}
		lines++
		accounted++
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "not_logged_before" {
				accounted += a.Value.Uint64()
			}
			return true
		})
	}
	return lines, accounted
}

// A server sending malformed frames as fast as it can costs at most a log
// line a second, not a line a frame; every skipped frame is still counted
// and events are still emitted, and the next line says how many were not
// logged.
func TestFrameErrorLogRateLimited(t *testing.T) {
	r := newRig(t)
	logs := &lineCounter{}
	c := r.dial(cable.WithLogger(slog.New(logs)))
	sc := r.conn()
	s := r.subscribe(c, lobby)
	r.event(cable.EventConnected)

	const burst = 2000
	start := time.Now()
	for range burst {
		if err := sc.WriteText(r.ctx, []byte(`{"type":"welcome"`)); err != nil {
			t.Fatal(err)
		}
	}
	r.broadcast(sc, lobby, text{"after the burst"})
	if got := r.receiveText(s); got != "after the burst" {
		t.Fatalf("got %q", got)
	}
	elapsed := time.Since(start)
	if got := c.Stats().DecodeErrors; got != burst {
		t.Fatalf("DecodeErrors = %d, want %d", got, burst)
	}
	lines, _ := logs.skipped()
	if most := 1 + int(elapsed/time.Second) + 1; lines < 1 || lines > most {
		t.Fatalf("%d malformed frames in %v made %d log lines, want 1 to %d", burst, elapsed, lines, most)
	}

	// Once the second has passed, the next malformed frame is logged with
	// the count of those that were not.
	sent := uint64(burst)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := sc.WriteText(r.ctx, []byte(`{`)); err != nil {
			t.Fatal(err)
		}
		sent++
		for c.Stats().DecodeErrors != sent { // handled, and logged if it is to be
			select {
			case <-tick.C:
			case <-r.ctx.Done():
				t.Fatal("malformed frame not handled before the deadline")
			}
		}
		if n, accounted := logs.skipped(); n > lines {
			if accounted != sent {
				t.Fatalf("the log accounts for %d skipped frames, %d were sent", accounted, sent)
			}
			return
		}
	}
}
