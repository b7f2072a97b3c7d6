package protocol

import (
	"encoding/json"
	"testing"
)

// The payloads Payload.Decode is measured on: a ~100 B channel message
// (a ~170 B frame) decoded into {Seq, Ts}, and the README's chat line with
// lower-case keys decoded into struct{ User, Text string }.
var (
	benchTickJSON = []byte(`{"seq":1234567,"ts":1764910000123456789,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	benchLineJSON = []byte(`{"user":"alice","text":"hello, world — a typical chat line"}`)
)

type benchTick struct{ Seq, Ts int64 }

type benchLine struct{ User, Text string }

// BenchmarkPayloadDecode compares Payload.Decode for each codec with
// encoding/json.Unmarshal of the same JSON (the reference, and what Decode
// used before).
func BenchmarkPayloadDecode(b *testing.B) {
	for _, c := range []struct {
		name string
		js   []byte
		into func() any
	}{
		{"tick", benchTickJSON, func() any { return new(benchTick) }},
		{"line", benchLineJSON, func() any { return new(benchLine) }},
		{"any", benchTickJSON, func() any { return new(any) }},
	} {
		mp, err := jsonToMsgpack(nil, c.js)
		if err != nil {
			b.Fatal(err)
		}
		v := c.into()
		b.Run(c.name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if err := json.Unmarshal(c.js, v); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, p := range []Payload{RawJSON(c.js), RawMessagePack(mp)} {
			b.Run(c.name+"/"+p.Format().String(), func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					if err := p.Decode(v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecodeFrameAndPayload is the per-message work of a consumer that
// decodes every message: the envelope, then the payload into a struct.
func BenchmarkDecodeFrameAndPayload(b *testing.B) {
	frame := []byte(`{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","message":` + string(benchTickJSON) + `}`)
	var m Message
	if err := (JSONCodec{}).DecodeMessage(frame, &m); err != nil {
		b.Fatal(err)
	}
	mp, err := (MessagePackCodec{}).AppendMessage(nil, &m)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		codec Codec
		frame []byte
	}{{JSONCodec{}, frame}, {MessagePackCodec{}, mp}} {
		b.Run(c.codec.Subprotocol(), func(b *testing.B) {
			b.ReportAllocs()
			var m Message
			for range b.N {
				var t benchTick
				if err := c.codec.DecodeMessage(c.frame, &m); err != nil {
					b.Fatal(err)
				}
				if err := m.Body.Decode(&t); err != nil || t.Seq != 1234567 {
					b.Fatal(t, err)
				}
			}
		})
	}
}
