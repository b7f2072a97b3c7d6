//go:build unix

package bridge_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/server/bridge"
)

// TestSendIdempotent posts the same command batch twice: Rails performs
// it once. A batch that skips a cseq is refused with 409 and the acked
// sequence number; nothing of it is applied.
func TestSendIdempotent(t *testing.T) {
	// One worker: Rails performs a connection's commands in order, so a
	// marker performed after the duplicate proves the duplicate is not
	// merely late.
	e := newEnvWith(t, envConfig{rails: []railstest.Option{railstest.WithOrderedDelivery()}})
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "alice")
	d := &pollDown{e: e, s: s}
	if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
		t.Fatalf("welcome: %v %v", f, err)
	}
	echo := identifier("EchoChannel", "test", "idempotency")
	if code, body := e.send(ctx, s, 1, cmd("subscribe", echo, "")); code != 200 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	if _, err := nextMatch(ctx, d, nil, func(f tframe) bool { return f.kind() == "confirm_subscription" }); err != nil {
		t.Fatal(err)
	}

	batch := []string{
		cmd("message", echo, `{"action":"echo","text":"once-a"}`),
		cmd("message", echo, `{"action":"echo","text":"once-b"}`),
	}
	for try := range 2 {
		code, body := e.send(ctx, s, 2, batch...)
		if code != http.StatusOK || !strings.Contains(string(body), `"acked":3`) {
			t.Fatalf("batch, try %d: %d %s, want 200 acked 3", try+1, code, body)
		}
	}
	// An overlapping retry: 3 was applied, 4 is new.
	code, body := e.send(ctx, s, 3, cmd("message", echo, `{"action":"echo","text":"once-b"}`), cmd("message", echo, `{"action":"echo","text":"marker"}`))
	if code != http.StatusOK || !strings.Contains(string(body), `"acked":4`) {
		t.Fatalf("overlapping batch: %d %s, want 200 acked 4", code, body)
	}
	// A gap: 6 after 4.
	code, body = e.send(ctx, s, 6, cmd("message", echo, `{"action":"echo","text":"gap"}`))
	var gap struct {
		Error string
		Acked uint64
	}
	if json.Unmarshal(body, &gap); code != http.StatusConflict || gap.Error != "cseq_gap" || gap.Acked != 4 {
		t.Fatalf("gap: %d %s, want 409 cseq_gap acked 4", code, body)
	}
	// After the gap, the client resends from acked+1.
	if code, body := e.send(ctx, s, 5, cmd("message", echo, `{"action":"echo","text":"end"}`)); code != 200 {
		t.Fatalf("after the gap: %d %s", code, body)
	}

	counts := map[string]int{}
	for counts["end"] == 0 {
		f, err := nextMatch(ctx, d, nil, func(f tframe) bool { return f.kind() == "message" && f.Identifier == echo })
		if err != nil {
			t.Fatalf("echoes so far %v: %v", counts, err)
		}
		var m struct{ Text string }
		json.Unmarshal(f.Message, &m)
		counts[m.Text]++
	}
	if want := map[string]int{"once-a": 1, "once-b": 1, "marker": 1, "end": 1}; !equalCounts(counts, want) {
		t.Errorf("echoes %v, want %v", counts, want)
	}
	if c := e.bridge.Stats().Commands; c != 5 {
		t.Errorf("commands relayed %d, want 5", c)
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSendRateLimit: beyond the command rate (burst twice the rate) a
// batch is refused with 429, and none of it is applied.
func TestSendRateLimit(t *testing.T) {
	e := newEnv(t, bridge.WithCommandRate(1))
	ctx := testCtx(t, 20*time.Second)
	s := e.create(ctx, "alice")
	chat := identifier("ChatChannel", "room", "rate")
	speak := cmd("message", chat, `{"action":"speak","text":"x"}`)
	code, body := e.send(ctx, s, 1, cmd("subscribe", chat, ""), speak, speak)
	if code != http.StatusTooManyRequests || !strings.Contains(string(body), `"rate_limited"`) {
		t.Fatalf("3 commands at 1/s: %d %s, want 429 rate_limited", code, body)
	}
	// Within the burst it goes through, from cseq 1: nothing was applied.
	if code, body := e.send(ctx, s, 1, cmd("subscribe", chat, "")); code != http.StatusOK || !strings.Contains(string(body), `"acked":1`) {
		t.Fatalf("1 command: %d %s, want 200 acked 1", code, body)
	}
	if r := e.bridge.Stats().Refused["rate_limited"]; r != 1 {
		t.Errorf("refused rate_limited %d, want 1", r)
	}
}
