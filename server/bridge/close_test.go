//go:build unix

package bridge_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
	"github.com/cableway/cableway/sdk/protocol"
)

// TestBridgeClose closes the bridge while Rails streams to its sessions:
// each attached client (SSE, WebSocket proxy) gets a server_restart
// disconnect as its last frame, the streams end, every upstream socket is
// closed, and new sessions are refused.
func TestBridgeClose(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 60*time.Second)
	stream := identifier("NumbersChannel", "stream", "close")

	s := e.create(ctx, "alice")
	st, _, err := e.openSSE(ctx, s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sse := &sseDown{e: e, s: s, st: st}
	defer sse.close()
	proxy, err := e.openProxy(ctx, protocol.SubprotocolMessagePack)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.close()
	idle := e.create(ctx, "carol") // no client attached
	_ = idle
	for _, d := range []downstream{sse, proxy} {
		if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
			t.Fatalf("welcome: %v %v", f, err)
		}
		if err := d.command(ctx, cmd("subscribe", stream, "")); err != nil {
			t.Fatal(err)
		}
		if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "confirm_subscription" {
			t.Fatalf("confirmation: %v %v", f, err)
		}
	}

	// Rails broadcasts on and on while the bridge closes.
	bctx, stopBroadcast := context.WithCancel(ctx)
	broadcasting := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 5000 && err == nil && bctx.Err() == nil; i += 10 {
			err = broadcastNumbers(bctx, e, "close", i, i+10, 10)
		}
		if bctx.Err() != nil {
			err = nil
		}
		broadcasting <- err
	}()
	defer func() { stopBroadcast(); <-broadcasting }()
	for _, d := range []downstream{sse, proxy} {
		if _, err := nextMatch(ctx, d, nil, func(f tframe) bool { return f.number() >= 0 }); err != nil {
			t.Fatalf("first number: %v", err)
		}
	}

	closed := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- e.bridge.Close(cctx)
	}()

	for what, d := range map[string]downstream{"sse": sse, "ws": proxy} {
		var last tframe
		numbers := 0
		for {
			f, err := d.next(ctx)
			if err != nil {
				if ctx.Err() != nil {
					t.Fatalf("%s: the stream did not end: %v", what, err)
				}
				break // the end of the stream
			}
			if f.kind() == "ping" {
				continue
			}
			if last.kind() == "disconnect" {
				t.Errorf("%s: %v after the disconnect", what, f)
			}
			if f.number() >= 0 {
				numbers++
			}
			last = f
		}
		if last.kind() != "disconnect" || last.Reason != "server_restart" || last.Reconnect == nil || !*last.Reconnect {
			t.Errorf("%s: last frame %v, want a server_restart disconnect", what, last)
		}
		t.Logf("%s: %d numbers, then %v", what, numbers, last)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	stopBroadcast()
	if err := <-broadcasting; err != nil {
		t.Error(err)
	}
	broadcasting <- nil // for the deferred wait

	if st, err := e.rails.WaitStats(ctx, func(s railstest.Stats) bool { return s.Connections == 0 }); err != nil {
		t.Errorf("upstream sockets left open after Close: %+v %v", st, err)
	}
	resp, body, err := e.request(ctx, "POST", "/sessions", authHeader("alice"), "")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("create after Close: %v %v %s, want 503", resp, err, body)
	}
	if n := e.bridge.Stats().Sessions; n != 0 {
		t.Errorf("%d sessions after Close", n)
	}
}
