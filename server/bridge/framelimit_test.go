//go:build unix

package bridge_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/transport/websocket"
	"github.com/cableway/cableway/server/bridge"
)

// TestFrameLimitWithUpstreamTransport: WithFrameLimit holds for frames
// from Rails when the upstream transport is the user's (whose own read
// limit is far above it): no larger frame reaches the session's client.
func TestFrameLimitWithUpstreamTransport(t *testing.T) {
	const limit = 2048
	e := newEnv(t, bridge.WithFrameLimit(limit), bridge.WithUpstreamTransport(websocket.New(websocket.WithReadLimit(1<<20))))
	ctx := testCtx(t, 30*time.Second)
	stream := identifier("NumbersChannel", "stream", "big")
	s := e.create(ctx, "alice")
	if code, body := e.send(ctx, s, 1, cmd("subscribe", stream, "")); code != 200 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	var after uint64
	e.pollUntil(ctx, s, &after, func(f json.RawMessage) bool { return frameType(f) == "confirm_subscription" })
	if err := e.rails.Broadcast(ctx, "numbers:big", map[string]string{"text": strings.Repeat("x", 2*limit)}); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		p, err := e.tryPoll(ctx, s, after, "5")
		if err != nil || p.Reset || p.Ended {
			return // the session ended with its upstream: nothing too large came through
		}
		after = p.Next
		for _, f := range p.Frames {
			if len(f) > limit {
				t.Fatalf("a %d-byte frame passed the %d-byte limit", len(f), limit)
			}
			if frameType(f) == "disconnect" {
				return
			}
		}
	}
	t.Fatal("the session neither ended nor reported the upstream's loss")
}
