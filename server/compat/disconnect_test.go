package compat

import (
	"encoding/json"
	"testing"

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

		// A session whose one channel is confirmed on its first
		// connection, as the consumer's hook and events leave it.
		h := New("ws://127.0.0.1:1/cable")
		t.Cleanup(func() { h.Close(t.Context()) })
		id := `{"channel":"ChatChannel","room":"lobby"}`
		s := newSession(h, &entry{}, func() {})
		s.chans[id] = &channel{identifier: []byte(id), chanID: chanIDOf(id), confirmed: true, withdraw: func() {}}
		var welcome protocol.Message
		(protocol.JSONCodec{}).DecodeMessage([]byte(`{"type":"welcome"}`), &welcome)
		s.onFrame(cable.Frame{Message: &welcome})
		s.onEvent(cable.Event{Kind: cable.EventConnected})
		// The frame, then the consumer's report of the loss it caused.
		s.onFrame(cable.Frame{Raw: []byte(frame), Message: &m})
		s.onEvent(cable.Event{Kind: cable.EventDisconnected, Err: cable.DisconnectOf(&m)})

		evs, _, _, _ := s.q.take(0, 10, false)
		var ev struct {
			Type    string
			Message struct{ Reconnect bool }
		}
		if len(evs) != 1 || json.Unmarshal(evs[0].data, &ev) != nil || ev.Type != "disconnected" {
			t.Fatalf("%s: events %v, want one disconnected", frame, evs)
		}
		got := ev.Message
		if got.Reconnect != want {
			t.Errorf("%s: compat says reconnect %v, the consumer %v", frame, got.Reconnect, want)
		}
	}
}
