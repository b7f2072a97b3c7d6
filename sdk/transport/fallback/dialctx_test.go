//go:build unix

package fallback_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/fallback"
)

// TestConnOutlivesDialContext: Dial's context bounds the race, not the
// connection it returns (transport.Transport's contract). The winner's
// welcome was read with the attempt's context; cancelling the caller's
// context right after Dial must leave the connection working.
func TestConnOutlivesDialContext(t *testing.T) {
	s := newStack(t)
	for _, c := range []struct {
		name string
		url  string
		tr   transport.Transport
	}{
		{"websocket", s.rails.CableURL(), fallback.Bridged(s.bridge, fallback.WithProbeInterval(-1))},
		{"sse", refusedURL(t), fallback.Bridged(s.bridge, fallback.WithProbeInterval(-1))},
	} {
		t.Run(c.name, func(t *testing.T) {
			dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			conn, err := c.tr.Dial(dctx, &transport.Request{
				URL:          c.url,
				Header:       http.Header{"Authorization": {"Bearer secret-alice"}},
				Subprotocols: []string{protocol.SubprotocolJSON},
			})
			cancel() // as a caller's defer would
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer rcancel()
			// The welcome (held back by Dial), then Rails' next ping.
			for i, want := range []protocol.Type{protocol.TypeWelcome, protocol.TypePing} {
				frame, err := conn.ReadFrame(rctx, nil)
				if err != nil {
					t.Fatalf("frame %d after the dial context ended: %v", i+1, err)
				}
				var m protocol.Message
				if err := (protocol.JSONCodec{}).DecodeMessage(frame, &m); err != nil || m.Type != want {
					t.Fatalf("frame %d: %s (%v), want type %v", i+1, frame, err, want)
				}
			}
		})
	}
}
