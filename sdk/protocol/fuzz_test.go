package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

// Fuzz targets. Run one with, for example:
//
//	go test -run='^$' -fuzz='^FuzzJSONDecodeMessage$' -fuzztime=30s ./sdk/protocol/
//
// Inputs the fuzzer found worth keeping live in testdata/fuzz/<target>/
// and run as part of every plain `go test`.

// jsonSeeds are JSON frames and fragments for the JSON targets' corpus.
func jsonSeeds() []string {
	s := append([]string{}, validJSONFrames...)
	return append(s,
		benchFrame,
		`{"type":"welcome"}`,
		`{"type":"ping","message":1700000000}`,
		`{"type":"disconnect"}`,
		`{"type":"disconnect","reason":null,"reconnect":null}`,
		`{"identifier":"x","message":null}`,
		`{"identifier":{"channel":"C"},"type":"confirm_subscription"}`,
		`{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"\u003cb\u003e \u0026\"}","type":"confirm_subscription"}`,
		`{"identifier":"\ud83d\ude00\ud800\udc00\ud800x","type":"reject_subscription"}`,
		`{"\u0074ype":"w\u0065lcome"}`,
		`{"type":"foo","identifier":"x"}`,
		`{"type":"foo","type":"welcome"}`,
		`{"type":1}`,
		`{"identifier":"x","message":[1e400,-0,0.1,18446744073709551616,-9223372036854775809]}`,
		`{"identifier":"x","message":{"a":{"b":[[],{},"",0]}}}`,
		`{"command":"subscribe","identifier":"{\"channel\":\"ChatChannel\"}"}`,
		`{"command":"message","identifier":"x","data":"{\"action\":\"speak\"}"}`,
		`{"command":"message","identifier":{"channel":"C"},"data":{"action":"x"}}`,
		"{\"identifier\":\"\xff\xfe\",\"message\":\"\x7f\xed\xa0\x80\"}",
		` { "identifier" : "x" , "message" : [ 1 , 2 ] } `,
		`{}`, `null`, `[]`, ``, `{"type":"welcome"}x`, `{"identifier":"x","message":01}`, `{"a":"\u12"}`,
		strings.Repeat("[", 600)+strings.Repeat("]", 600),
		`{"identifier":"x","message":`+strings.Repeat("[", maxDepth-1)+strings.Repeat("]", maxDepth-1)+`}`,
	)
}

// msgpackSeeds are MessagePack frames for the MessagePack targets' corpus.
func msgpackSeeds() [][]byte {
	s := validMsgpackFrames()
	return append(s,
		benchMsgpackFrame(nil),
		newMP().Map(1).KV("type", "welcome").Bytes(),
		newMP().Map(2).KV("type", "nope").KV("identifier", "x").Bytes(),
		newMP().Map(2).KV("identifier", "x").Str("message").Ext(-1, []byte{0, 0, 0, 1}).Bytes(),
		newMP().Map(2).KV("identifier", "x").Str("message").Map(3).Int(1).Str("a").Bin([]byte("k")).Int(2).Str("f").F64(math.NaN()).Bytes(),
		newMP().Map(2).Bin([]byte("identifier")).Bin([]byte("\xff")).Bin([]byte("type")).Bin([]byte("confirm_subscription")).Bytes(),
		newMP().Map(2).Int(1).Nil().KV("type", "welcome").Bytes(),
		newMP().Map(2).KV("command", "subscribe").KV("identifier", railsChatID).Bytes(),
		newMP().Map(3).KV("command", "message").KV("identifier", "x").Str("data").Map(1).KV("action", "speak").Bytes(),
		newMP().Map(3).KV("command", "message").KV("identifier", "x").KV("data", `{"action":"speak"}`).Bytes(),
		[]byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa4, 't', 'y', 'p', 'e'},
		append(newMP().Map(2).KV("identifier", "x").Str("message").Bytes(), bytes.Repeat([]byte{0x91}, 600)...),
		[]byte{}, []byte{0xc1}, []byte{0x80}, []byte{0xc0},
	)
}

// checkDecodeError fails unless err is a *DecodeError wrapping exactly one
// of the sentinels.
func checkDecodeError(t *testing.T, err error) *DecodeError {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	n := 0
	for _, s := range []error{ErrMalformed, ErrUnknownType, ErrInvalidField, ErrUnsupported} {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v wraps %d sentinels", err, n)
	}
	_ = err.Error()
	return de
}

// checkJSONScanner: the package's scanner and json.Valid agree on whether
// data is one complete JSON value, except that the scanner stops at
// maxDepth levels of nesting where encoding/json allows more.
func checkJSONScanner(t *testing.T, data []byte) {
	t.Helper()
	ours, jerr := scanComplete(data)
	valid := json.Valid(data)
	if ours && !valid {
		t.Fatalf("scanner accepts %q, json.Valid does not", data)
	}
	if !ours && valid && (jerr == nil || jerr.err != errJSONDepth) {
		t.Fatalf("json.Valid accepts %q, scanner does not: %v", data, jerr)
	}
	if jerr != nil && (jerr.off < 0 || jerr.off > len(data)) {
		t.Fatalf("scanner error offset %d outside %d bytes", jerr.off, len(data))
	}
}

// jsonEnvelope is the frame object as encoding/json reads it (last
// duplicate wins, as in our decoder).
func jsonEnvelope(t *testing.T, data []byte) map[string]json.RawMessage {
	t.Helper()
	var env map[string]json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("encoding/json rejects accepted frame %q: %v", data, err)
	}
	return env
}

func jsonString(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("encoding/json: %s: %v", raw, err)
	}
	return s
}

func FuzzJSONDecodeMessage(f *testing.F) {
	for _, s := range jsonSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(fuzzJSONDecodeMessage)
}

func fuzzJSONDecodeMessage(t *testing.T, data []byte) {
	checkJSONScanner(t, data)
	var m Message
	err := (JSONCodec{}).DecodeMessage(data, &m)
	if err != nil {
		de := checkDecodeError(t, err)
		if errors.Is(err, ErrMalformed) {
			if de.Offset < 0 || de.Offset > len(data) {
				t.Fatalf("Offset %d outside %d bytes", de.Offset, len(data))
			}
			trimmed := bytes.TrimLeft(data, " \t\r\n")
			if json.Valid(data) && len(trimmed) > 0 && trimmed[0] == '{' && jsonDepth(data) <= maxDepth {
				t.Fatalf("valid JSON object %q rejected as malformed: %v", data, err)
			}
		}
		return
	}
	if !json.Valid(data) {
		t.Fatalf("accepted invalid JSON %q", data)
	}
	if !m.Body.IsZero() && (m.Body.Format() != FormatJSON || !json.Valid(m.Body.Bytes())) {
		t.Fatalf("Body %q of %q is not a JSON value", m.Body.Bytes(), data)
	}

	// encoding/json reads the same envelope.
	env := jsonEnvelope(t, data)
	if raw, ok := env["type"]; ok && jsonString(t, raw) != m.Type.String() {
		t.Fatalf("type: encoding/json %s, we %v", raw, m.Type)
	}
	if raw, ok := env["identifier"]; ok {
		if raw[0] == '"' {
			if s := jsonString(t, raw); s != fixUTF8(string(m.Identifier)) {
				t.Fatalf("identifier: encoding/json %q, we %q", s, m.Identifier)
			}
		} else if !bytes.Equal(raw, m.Identifier) {
			t.Fatalf("object identifier: encoding/json %s, we %s", raw, m.Identifier)
		}
	}
	if raw, ok := env["message"]; ok != !m.Body.IsZero() || !bytes.Equal(raw, m.Body.Bytes()) {
		t.Fatalf("message: encoding/json %s, we %q", raw, m.Body.Bytes())
	}
	if raw, ok := env["reason"]; ok && raw[0] == '"' && jsonString(t, raw) != fixUTF8(m.Reason) {
		t.Fatalf("reason: encoding/json %s, we %q", raw, m.Reason)
	}
	if raw, ok := env["reconnect"]; ok && string(raw) != "null" {
		if !m.HasReconnect || m.Reconnect != (string(raw) == "true") {
			t.Fatalf("reconnect: encoding/json %s, we %v/%v", raw, m.Reconnect, m.HasReconnect)
		}
	}

	// Re-encoding and decoding again gives the same Message.
	frame, err := (JSONCodec{}).AppendMessage(nil, &m)
	if err != nil {
		t.Fatalf("AppendMessage(%s): %v", fmtMsg(&m), err)
	}
	var m2 Message
	if err := (JSONCodec{}).DecodeMessage(frame, &m2); err != nil {
		t.Fatalf("DecodeMessage(AppendMessage) %q: %v", frame, err)
	}
	if want := canonical(&m); !msgEqual(&m2, &want) {
		t.Fatalf("round trip of %q via %q\n got  %s\n want %s", data, frame, fmtMsg(&m2), fmtMsg(&want))
	}

	// Through the MessagePack codec: same envelope, same body value.
	mp, err := (MessagePackCodec{}).AppendMessage(nil, &m)
	if err != nil {
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("MessagePack AppendMessage(%s): %v", fmtMsg(&m), err)
		}
		var v any
		if json.Unmarshal(m.Body.Bytes(), &v) == nil {
			t.Fatalf("body %q refused (%v) though encoding/json reads it", m.Body.Bytes(), err)
		}
		return
	}
	var m3 Message
	if err := (MessagePackCodec{}).DecodeMessage(mp, &m3); err != nil {
		t.Fatalf("MessagePack DecodeMessage(% x): %v", mp, err)
	}
	want := canonical(&m)
	if m3.Type != want.Type || !bytes.Equal(m3.Identifier, want.Identifier) || m3.Reason != want.Reason ||
		m3.Reconnect != want.Reconnect || m3.HasReconnect != want.HasReconnect || m3.Body.IsZero() != want.Body.IsZero() {
		t.Fatalf("via MessagePack\n got  %s\n want %s", fmtMsg(&m3), fmtMsg(&want))
	}
	if !want.Body.IsZero() {
		back, err := m3.Body.JSON()
		if err != nil {
			t.Fatalf("Body.JSON() of % x: %v", m3.Body.Bytes(), err)
		}
		if eq, err := jsonSemEqual(back, want.Body.Bytes()); err != nil || !eq {
			t.Fatalf("body %s came back as %s (%v)", want.Body.Bytes(), back, err)
		}
	}
}

func FuzzMsgpackDecodeMessage(f *testing.F) {
	for _, s := range msgpackSeeds() {
		f.Add(s)
	}
	f.Fuzz(fuzzMsgpackDecodeMessage)
}

func fuzzMsgpackDecodeMessage(t *testing.T, data []byte) {
	var m Message
	err := (MessagePackCodec{}).DecodeMessage(data, &m)
	if err != nil {
		de := checkDecodeError(t, err)
		if errors.Is(err, ErrMalformed) && (de.Offset < 0 || de.Offset > len(data)) {
			t.Fatalf("Offset %d outside %d bytes", de.Offset, len(data))
		}
		return
	}
	// The msgpack library agrees the frame is exactly one value.
	if end, err := mpSkip(data, 0); err != nil || end != len(data) {
		t.Fatalf("accepted frame % x does not skip: %d, %v", data, end, err)
	}
	if !m.Body.IsZero() {
		if end, err := mpSkip(m.Body.Bytes(), 0); err != nil || end != len(m.Body.Bytes()) {
			t.Fatalf("Body % x is not one value", m.Body.Bytes())
		}
	}

	frame, err := (MessagePackCodec{}).AppendMessage(nil, &m)
	if err != nil {
		t.Fatalf("AppendMessage(%s): %v", fmtMsg(&m), err)
	}
	var m2 Message
	if err := (MessagePackCodec{}).DecodeMessage(frame, &m2); err != nil {
		t.Fatalf("DecodeMessage(AppendMessage) % x: %v", frame, err)
	}
	want := canonical(&m)
	if !msgEqual(&m2, &want) {
		t.Fatalf("round trip of % x via % x\n got  %s\n want %s", data, frame, fmtMsg(&m2), fmtMsg(&want))
	}

	// Through the JSON codec: same envelope, and the body JSON holds what
	// the msgpack library reads from the original body.
	js, err := (JSONCodec{}).AppendMessage(nil, &m)
	if err != nil {
		if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("JSON AppendMessage(%s): %v", fmtMsg(&m), err)
		}
		if errors.Is(err, ErrMalformed) && !strings.Contains(err.Error(), "nesting") {
			t.Fatalf("JSON AppendMessage(%s): %v", fmtMsg(&m), err)
		}
		return
	}
	if !json.Valid(js) {
		t.Fatalf("JSON frame %q is not valid JSON", js)
	}
	var jm Message
	if err := (JSONCodec{}).DecodeMessage(js, &jm); err != nil {
		t.Fatalf("JSON DecodeMessage(%q): %v", js, err)
	}
	if jm.Type != want.Type || !bytes.Equal(jm.Identifier, want.Identifier) || jm.Reason != want.Reason ||
		jm.Reconnect != want.Reconnect || jm.HasReconnect != want.HasReconnect || jm.Body.IsZero() != want.Body.IsZero() {
		t.Fatalf("via JSON\n got  %s\n want %s", fmtMsg(&jm), fmtMsg(&want))
	}
	if !want.Body.IsZero() {
		mref, err := mpRef(want.Body.Bytes())
		if err != nil {
			t.Fatalf("msgpack library rejects body % x we transcoded: %v", want.Body.Bytes(), err)
		}
		jref, err := jsonRef(jm.Body.Bytes())
		if err != nil {
			t.Fatalf("encoding/json rejects %q: %v", jm.Body.Bytes(), err)
		}
		if err := refEqual(mref, jref); err != nil {
			t.Fatalf("body % x as JSON %s: %v", want.Body.Bytes(), jm.Body.Bytes(), err)
		}
	}
}

func checkCommandRoundTrip(t *testing.T, c *Command) {
	t.Helper()
	for _, codec := range []Codec{JSONCodec{}, MessagePackCodec{}} {
		frame, err := codec.AppendCommand(nil, c)
		if err != nil {
			t.Fatalf("%s AppendCommand(%+q): %v", codec.Subprotocol(), *c, err)
		}
		var c2 Command
		if err := codec.DecodeCommand(frame, &c2); err != nil {
			t.Fatalf("%s DecodeCommand(%q): %v", codec.Subprotocol(), frame, err)
		}
		if c2 != *c {
			t.Fatalf("%s round trip\n got  %+q\n want %+q", codec.Subprotocol(), c2, *c)
		}
	}
	// encoding/json reads our JSON frame as the same strings.
	frame, _ := (JSONCodec{}).AppendCommand(nil, c)
	var ref struct{ Command, Identifier, Data string }
	if err := json.Unmarshal(frame, &ref); err != nil {
		t.Fatalf("encoding/json rejects %q: %v", frame, err)
	}
	if ref.Command != fixUTF8(c.Command) || ref.Identifier != fixUTF8(c.Identifier) || ref.Data != fixUTF8(c.Data) {
		t.Fatalf("encoding/json reads %q as %+q, want %+q", frame, ref, *c)
	}
}

func FuzzJSONDecodeCommand(f *testing.F) {
	for _, s := range jsonSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(fuzzJSONDecodeCommand)
}

func fuzzJSONDecodeCommand(t *testing.T, data []byte) {
	var c Command
	err := (JSONCodec{}).DecodeCommand(data, &c)
	if err != nil {
		checkDecodeError(t, err)
		trimmed := bytes.TrimLeft(data, " \t\r\n")
		if errors.Is(err, ErrMalformed) && json.Valid(data) && len(trimmed) > 0 && trimmed[0] == '{' && jsonDepth(data) <= maxDepth {
			t.Fatalf("valid JSON object %q rejected as malformed: %v", data, err)
		}
		return
	}
	if !json.Valid(data) {
		t.Fatalf("accepted invalid JSON %q", data)
	}
	env := jsonEnvelope(t, data)
	for key, got := range map[string]string{"command": c.Command, "identifier": c.Identifier, "data": c.Data} {
		raw, ok := env[key]
		switch {
		case !ok:
			if got != "" {
				t.Fatalf("%s: absent, we %q", key, got)
			}
		case raw[0] == '"':
			if s := jsonString(t, raw); s != fixUTF8(got) {
				t.Fatalf("%s: encoding/json %q, we %q", key, s, got)
			}
		default:
			if string(raw) != got {
				t.Fatalf("%s: encoding/json %s, we %q", key, raw, got)
			}
		}
	}
	checkCommandRoundTrip(t, &c)
}

func FuzzMsgpackDecodeCommand(f *testing.F) {
	for _, s := range msgpackSeeds() {
		f.Add(s)
	}
	f.Fuzz(fuzzMsgpackDecodeCommand)
}

func fuzzMsgpackDecodeCommand(t *testing.T, data []byte) {
	var c Command
	err := (MessagePackCodec{}).DecodeCommand(data, &c)
	if err != nil {
		checkDecodeError(t, err)
		return
	}
	if end, err := mpSkip(data, 0); err != nil || end != len(data) {
		t.Fatalf("accepted frame % x does not skip: %d, %v", data, end, err)
	}
	checkCommandRoundTrip(t, &c)
}

func FuzzPayloadTranscode(f *testing.F) {
	for _, s := range jsonSeeds() {
		f.Add([]byte(s))
	}
	for _, s := range msgpackSeeds() {
		f.Add(s)
	}
	for _, v := range []any{
		nil, true, int64(-1), uint64(math.MaxUint64), math.MinInt64, 1.5, float32(0.1), "s\"\\\n", []byte{0, 255},
		[]any{1, "a", []any{}}, map[string]any{"a": map[string]any{"b": []any{nil}}}, map[int]string{1: "a", -2: "b"},
	} {
		f.Add(mpValue(v))
	}
	f.Add(newMP().Ext(5, []byte{1}).Bytes())
	f.Add(newMP().Map(1).F64(1.5).Nil().Bytes())
	f.Add([]byte(`1e400`))
	f.Add([]byte(`[-0,-0.0,1E+2,0.1,18446744073709551616]`))
	f.Fuzz(fuzzPayloadTranscode)
}

func fuzzPayloadTranscode(t *testing.T, data []byte) {
	// data as JSON.
	checkJSONScanner(t, data)
	valid := json.Valid(data)
	mp, err := jsonToMsgpack([]byte("keep"), data)
	if err != nil {
		de := checkDecodeError(t, err)
		if string(mp) != "keep" {
			t.Fatalf("dst changed on error: %q", mp)
		}
		switch {
		case errors.Is(err, ErrUnsupported):
			var v any
			if !valid || json.Unmarshal(data, &v) == nil {
				t.Fatalf("%q refused as unsupported (%v); valid %v", data, err, valid)
			}
		case valid && !strings.Contains(de.Detail, "nesting"):
			t.Fatalf("valid JSON %q refused: %v", data, err)
		}
	} else {
		mp = mp[4:]
		if !valid {
			t.Fatalf("transcoded invalid JSON %q", data)
		}
		mref, err := mpRef(mp)
		if err != nil {
			t.Fatalf("msgpack library rejects % x (from %q): %v", mp, data, err)
		}
		jref, err := jsonRef(data)
		if err != nil {
			t.Fatalf("encoding/json tokenizer rejects %q: %v", data, err)
		}
		if err := refEqual(mref, jref); err != nil {
			t.Fatalf("%q as % x: %v", data, mp, err)
		}
		back, err := msgpackToJSON(nil, mp)
		if err != nil {
			t.Fatalf("JSON→MessagePack→JSON of %q: %v", data, err)
		}
		if eq, err := jsonSemEqual(data, back); err != nil || !eq {
			t.Fatalf("JSON %q came back as %q (%v)", data, back, err)
		}
	}

	// data as MessagePack.
	js, err := msgpackToJSON([]byte("keep"), data)
	if err != nil {
		de := checkDecodeError(t, err)
		if string(js) != "keep" {
			t.Fatalf("dst changed on error: %q", js)
		}
		if errors.Is(err, ErrMalformed) && !strings.Contains(de.Detail, "nesting") {
			if _, rerr := mpRef(data); rerr == nil {
				t.Fatalf("% x refused as malformed (%v), the msgpack library reads it", data, err)
			}
		}
		if errors.Is(err, ErrUnsupported) {
			if end, serr := mpSkip(data, 0); serr != nil || end != len(data) {
				t.Fatalf("malformed % x reported as unsupported: %v", data, err)
			}
		}
		return
	}
	js = js[4:]
	if !json.Valid(js) {
		t.Fatalf("msgpackToJSON(% x) = %q, not valid JSON", data, js)
	}
	mref, err := mpRef(data)
	if err != nil {
		t.Fatalf("msgpack library rejects % x that we transcoded: %v", data, err)
	}
	jref, err := jsonRef(js)
	if err != nil {
		t.Fatalf("encoding/json tokenizer rejects %q: %v", js, err)
	}
	if err := refEqual(mref, jref); err != nil {
		t.Fatalf("% x as %s: %v", data, js, err)
	}
	mp2, err := jsonToMsgpack(nil, js)
	if err != nil {
		t.Fatalf("MessagePack→JSON→MessagePack of % x via %s: %v", data, js, err)
	}
	js2, err := msgpackToJSON(nil, mp2)
	if err != nil {
		t.Fatal(err)
	}
	if eq, err := jsonSemEqual(js, js2); err != nil || !eq {
		t.Fatalf("%s came back as %s (%v)", js, js2, err)
	}
}
