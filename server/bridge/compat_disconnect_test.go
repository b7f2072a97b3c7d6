package bridge

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

// TestCompatDisconnectReadAsConsumer: the compat API tells its clients of
// an upstream disconnect with the reconnect advice the Go consumer (which
// keeps the upstream link) acts on; a frame with no "reconnect" key
// included.
func TestCompatDisconnectReadAsConsumer(t *testing.T) {
	for _, frame := range []string{
		`{"type":"disconnect","reason":"server_restart"}`,
		`{"type":"disconnect","reason":"server_restart","reconnect":true}`,
		`{"type":"disconnect","reason":"remote","reconnect":false}`,
		`{"type":"disconnect","reason":"unauthorized"}`,
	} {
		var m protocol.Message
		if err := (protocol.JSONCodec{}).DecodeMessage([]byte(frame), &m); err != nil {
			t.Fatal(err)
		}
		want := cable.DisconnectOf(&m).Reconnect

		b := &Bridge{}
		b.cfg.logger = slog.New(slog.DiscardHandler)
		id := `{"channel":"ChatChannel","room":"lobby"}`
		cs := &compatSession{b: b, e: &compatEntry{}, limit: 16, changed: make(chan struct{}),
			chans: map[string]*compatChan{id: {identifier: []byte(id), chanID: compatChanID(id), confirmed: true}}}
		cs.onFrame([]byte(frame), time.Now(), &m)
		if len(cs.queue) != 1 || cs.queue[0].typ != "disconnected" {
			t.Fatalf("%s: events %+v, want one disconnected", frame, cs.queue)
		}
		var got struct{ Reconnect bool }
		if err := json.Unmarshal(cs.queue[0].message, &got); err != nil {
			t.Fatal(err)
		}
		if got.Reconnect != want {
			t.Errorf("%s: compat says reconnect %v, the consumer %v", frame, got.Reconnect, want)
		}
	}
}
