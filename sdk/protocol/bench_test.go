package protocol

import (
	"encoding/json"
	"testing"
)

// benchFrame is a typical channel message as Rails sends it (~200 bytes):
// the identifier string, JSON-escaped inside the frame, and a small object.
const benchFrame = `{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","message":` +
	`{"id":918273,"user":{"id":42,"name":"alice"},"text":"Hello everyone, the build is green again!","sent_at":1700000000,"tags":["ci","release"]}}`

func benchMsgpackFrame(tb testing.TB) []byte {
	var m Message
	if err := (JSONCodec{}).DecodeMessage([]byte(benchFrame), &m); err != nil {
		tb.Fatal(err)
	}
	frame, err := (MessagePackCodec{}).AppendMessage(nil, &m)
	if err != nil {
		tb.Fatal(err)
	}
	return frame
}

// benchFrames: the typical frame plus every other kind, for the zero-alloc
// check.
func benchFrames(tb testing.TB) map[Codec][][]byte {
	out := map[Codec][][]byte{}
	jsonFrames := append([]string{benchFrame}, validJSONFrames...)
	for _, f := range jsonFrames {
		out[JSONCodec{}] = append(out[JSONCodec{}], []byte(f))
		var m Message
		if err := (JSONCodec{}).DecodeMessage([]byte(f), &m); err != nil {
			tb.Fatal(err)
		}
		mp, err := (MessagePackCodec{}).AppendMessage(nil, &m)
		if err != nil {
			tb.Fatal(err)
		}
		out[MessagePackCodec{}] = append(out[MessagePackCodec{}], mp)
	}
	return out
}

// TestDecodeMessageZeroAllocs: a read loop decoding into one Message
// allocates nothing per frame, for every frame kind except a disconnect
// (its Reason is a string, allocated once per connection at most).
func TestDecodeMessageZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	for c, frames := range benchFrames(t) {
		var m Message
		for _, f := range frames {
			if err := c.DecodeMessage(f, &m); err != nil {
				t.Fatal(err)
			}
			if m.Type == TypeDisconnect {
				continue
			}
			allocs := testing.AllocsPerRun(200, func() {
				if err := c.DecodeMessage(f, &m); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s DecodeMessage(%q): %v allocs per frame", c.Subprotocol(), f, allocs)
			}
		}
	}
}

func BenchmarkJSONDecodeMessage(b *testing.B) {
	frame := []byte(benchFrame)
	var m Message
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := (JSONCodec{}).DecodeMessage(frame, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMsgpackDecodeMessage(b *testing.B) {
	frame := benchMsgpackFrame(b)
	var m Message
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := (MessagePackCodec{}).DecodeMessage(frame, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodingJSONUnmarshal is the baseline: encoding/json decoding
// the same frame into a struct that also keeps the message raw.
func BenchmarkEncodingJSONUnmarshal(b *testing.B) {
	frame := []byte(benchFrame)
	var v struct {
		Type       string          `json:"type"`
		Identifier string          `json:"identifier"`
		Message    json.RawMessage `json:"message"`
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		v.Type, v.Identifier, v.Message = "", "", v.Message[:0]
		if err := json.Unmarshal(frame, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONAppendMessage(b *testing.B) {
	var m Message
	if err := (JSONCodec{}).DecodeMessage([]byte(benchFrame), &m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = (JSONCodec{}).AppendMessage(buf[:0], &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTranscodeJSONToMsgpack(b *testing.B) {
	var m Message
	if err := (JSONCodec{}).DecodeMessage([]byte(benchFrame), &m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(m.Body.Bytes())))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = m.Body.AppendMessagePack(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTranscodeMsgpackToJSON(b *testing.B) {
	var m Message
	if err := (MessagePackCodec{}).DecodeMessage(benchMsgpackFrame(b), &m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(m.Body.Bytes())))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = m.Body.AppendJSON(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
