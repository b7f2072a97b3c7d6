//go:build unix

package bridge_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const lobby = `{"channel":"ChatChannel","room":"lobby"}`

func TestLongPollSubscribePerformBroadcast(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := e.create(ctx, "alice")

	var after uint64
	f := e.pollUntil(ctx, s, &after, func(json.RawMessage) bool { return true })
	if frameType(f) != "welcome" || after != 1 {
		t.Fatalf("first frame %s at %d, want welcome at 1", f, after)
	}
	if code, body := e.send(ctx, s, 1, cmd("subscribe", lobby, "")); code != 200 {
		t.Fatalf("send: %d %s", code, body)
	}
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	if code, body := e.send(ctx, s, 2, cmd("message", lobby, `{"text":"via bridge","action":"speak"}`)); code != 200 {
		t.Fatalf("send: %d %s", code, body)
	}
	got := e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "message" })
	if !strings.Contains(string(got), `via bridge`) || !strings.Contains(string(got), `alice`) {
		t.Fatalf("broadcast = %s", got)
	}
}
