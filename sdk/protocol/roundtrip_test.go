package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// roundTripMessages are Messages of every Type, with JSON bodies; the
// MessagePack round trip uses the same bodies transcoded.
func roundTripMessages() []Message {
	ids := []string{
		railsChatID,
		`{"channel":"C","room":"<b> & \"q\" \\ é 😀 ` + "\u2028\x00\x1f\x7f" + `"}`,
		"not json at all \xff\xfe",
		strings.Repeat("long ", 20000),
	}
	bodies := []string{
		`{"user":"alice","text":"hi","n":[1,-2,3.5,{"deep":[true,false,null]}]}`,
		`"a string with \"escapes\" \\ and \n"`,
		`[]`, `{}`, `null`, `true`, `0`, `-9223372036854775808`, `18446744073709551615`, `1.5`,
	}
	var ms []Message
	ms = append(ms,
		Message{Type: TypeWelcome},
		Message{Type: TypePing, Body: RawJSON([]byte(`1700000000`))},
		Message{Type: TypeWelcome, Body: RawJSON([]byte(`{"sid":"abc"}`))},
		Message{Type: TypeDisconnect},
		Message{Type: TypeDisconnect, Reason: ReasonUnauthorized, HasReconnect: true},
		Message{Type: TypeDisconnect, Reason: ReasonServerRestart, Reconnect: true, HasReconnect: true},
		Message{Type: TypeDisconnect, Reason: ReasonInvalidRequest},
		Message{Type: TypeDisconnect, Reason: "weird \"reason\"\n\xff", Reconnect: true, HasReconnect: true},
	)
	for _, id := range ids {
		ms = append(ms,
			Message{Type: TypeConfirm, Identifier: []byte(id)},
			Message{Type: TypeReject, Identifier: []byte(id)},
		)
		for _, b := range bodies {
			ms = append(ms, Message{Type: TypeMessage, Identifier: []byte(id), Body: RawJSON([]byte(b))})
		}
	}
	// An empty identifier still round-trips as a (present) empty string.
	ms = append(ms, Message{Type: TypeMessage, Identifier: []byte{}, Body: RawJSON([]byte(`1`))})
	return ms
}

// toFormat transcodes m's body to the format a codec decodes into.
func toFormat(t *testing.T, m Message, c Codec) Message {
	t.Helper()
	if m.Body.IsZero() {
		return m
	}
	if _, ok := c.(MessagePackCodec); ok && m.Body.Format() == FormatJSON {
		b, err := m.Body.AppendMessagePack(nil)
		if err != nil {
			t.Fatalf("transcoding %s: %v", m.Body.Bytes(), err)
		}
		m.Body = RawMessagePack(b)
	}
	return m
}

func TestMessageRoundTrip(t *testing.T) {
	for _, c := range []Codec{JSONCodec{}, MessagePackCodec{}} {
		var got Message
		for _, m := range roundTripMessages() {
			m = toFormat(t, m, c)
			frame, err := c.AppendMessage([]byte("junk"), &m)
			if err != nil {
				t.Fatalf("%s AppendMessage(%s): %v", c.Subprotocol(), fmtMsg(&m), err)
			}
			if !bytes.HasPrefix(frame, []byte("junk")) {
				t.Fatalf("AppendMessage did not append to dst")
			}
			frame = frame[4:]
			if err := c.DecodeMessage(frame, &got); err != nil {
				t.Fatalf("%s DecodeMessage(%q): %v", c.Subprotocol(), frame, err)
			}
			if !msgEqual(&got, &m) {
				t.Errorf("%s round trip\n got  %s\n want %s", c.Subprotocol(), fmtMsg(&got), fmtMsg(&m))
			}
			if _, ok := c.(JSONCodec); ok && !json.Valid(frame) {
				t.Errorf("JSON frame %q is not valid JSON", frame)
			}
		}
	}
}

// TestJSONAppendMessageRailsLayout checks the exact bytes: Rails' own key
// order and layout, so frames can be compared with recorded traffic.
func TestJSONAppendMessageRailsLayout(t *testing.T) {
	tests := []struct {
		m    Message
		want string
	}{
		{Message{Type: TypeWelcome}, `{"type":"welcome"}`},
		{Message{Type: TypePing, Body: RawJSON([]byte(`1700000000`))}, `{"type":"ping","message":1700000000}`},
		{Message{Type: TypeConfirm, Identifier: []byte(railsChatID)}, `{"identifier":` + railsChatIDJS + `,"type":"confirm_subscription"}`},
		{Message{Type: TypeReject, Identifier: []byte(railsChatID)}, `{"identifier":` + railsChatIDJS + `,"type":"reject_subscription"}`},
		{Message{Type: TypeDisconnect, Reason: "unauthorized", HasReconnect: true}, `{"type":"disconnect","reason":"unauthorized","reconnect":false}`},
		{Message{Type: TypeDisconnect, Reason: "server_restart", Reconnect: true, HasReconnect: true}, `{"type":"disconnect","reason":"server_restart","reconnect":true}`},
		{Message{Type: TypeDisconnect, Reason: "remote"}, `{"type":"disconnect","reason":"remote"}`},
		{Message{Identifier: []byte(railsChatID), Body: RawJSON([]byte(`{"a":1}`))}, `{"identifier":` + railsChatIDJS + `,"message":{"a":1}}`},
		// A MessagePack body is transcoded, key order kept.
		{Message{Identifier: []byte("x"), Body: RawMessagePack(newMP().Map(2).KV("z", "1").Str("a").Int(2).Bytes())}, `{"identifier":"x","message":{"z":"1","a":2}}`},
	}
	for _, tt := range tests {
		got, err := (JSONCodec{}).AppendMessage(nil, &tt.m)
		if err != nil || string(got) != tt.want {
			t.Errorf("AppendMessage(%s)\n got  %s, %v\n want %s", fmtMsg(&tt.m), got, err, tt.want)
		}
	}
}

func TestAppendMessageErrors(t *testing.T) {
	for _, c := range []Codec{JSONCodec{}, MessagePackCodec{}} {
		tests := []struct {
			name     string
			m        Message
			sentinel error
		}{
			{"unknown type", Message{Type: Type(42)}, ErrUnsupported},
			{"channel message without body", Message{Identifier: []byte("x")}, ErrInvalidField},
			{"ext body", Message{Identifier: []byte("x"), Body: RawMessagePack([]byte{0xd4, 1, 1})}, nil},
			{"invalid JSON body", Message{Type: TypePing, Body: RawJSON([]byte(`{`))}, nil},
		}
		for _, tt := range tests {
			dst := []byte("keep")
			got, err := c.AppendMessage(dst, &tt.m)
			if _, isJSON := c.(JSONCodec); tt.sentinel == nil && isJSON && tt.m.Body.Format() == FormatJSON {
				// The JSON codec copies JSON bodies verbatim: it does not
				// validate what the caller wrapped with RawJSON.
				continue
			}
			if _, isMP := c.(MessagePackCodec); tt.sentinel == nil && isMP && tt.m.Body.Format() == FormatMessagePack {
				continue // copied verbatim as well
			}
			if err == nil {
				t.Errorf("%s %s: no error, frame %q", c.Subprotocol(), tt.name, got)
				continue
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("%s %s: %v, want %v", c.Subprotocol(), tt.name, err, tt.sentinel)
			}
			// A failed append leaves dst as it was: no half frame.
			if string(got) != "keep" {
				t.Errorf("%s %s: dst = %q after the error", c.Subprotocol(), tt.name, got)
			}
		}
	}
}

func TestCommandRoundTrip(t *testing.T) {
	cmds := []Command{
		{Command: CommandSubscribe, Identifier: railsChatID},
		{Command: CommandUnsubscribe, Identifier: railsChatID},
		{Command: CommandMessage, Identifier: railsChatID, Data: `{"action":"speak","text":"hi"}`},
		{Command: CommandMessage, Identifier: "x"},
		{Command: CommandSubscribe, Identifier: "x", Data: "subscribe with data keeps it"},
		{Command: CommandSubscribe, Identifier: "\x00\x1f\"\\/<>&é😀\u2028\xff\xed\xa0\x80"},
		{Command: CommandMessage, Identifier: strings.Repeat("i", 70000), Data: strings.Repeat("d", 300)},
	}
	for _, c := range []Codec{JSONCodec{}, MessagePackCodec{}} {
		for _, want := range cmds {
			frame, err := c.AppendCommand(nil, &want)
			if err != nil {
				t.Fatalf("%s AppendCommand(%+v): %v", c.Subprotocol(), want, err)
			}
			var got Command
			if err := c.DecodeCommand(frame, &got); err != nil {
				t.Fatalf("%s DecodeCommand(%q): %v", c.Subprotocol(), frame, err)
			}
			if got != want {
				t.Errorf("%s round trip\n got  %+q\n want %+q", c.Subprotocol(), got, want)
			}
		}
	}
}

// TestJSONCommandMatchesEncodingJSON: whatever strings a command holds,
// encoding/json decodes the frame to the same strings. appendJSONString
// passes bytes that are not UTF-8 through unchanged (so that our own
// decoder gets identifiers back byte for byte); encoding/json replaces each
// such byte with U+FFFD, so for those the expectation is fixUTF8(s).
func TestJSONCommandMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ref struct {
		Command    string `json:"command"`
		Identifier string `json:"identifier"`
		Data       string `json:"data"`
	}
	for i := range 5000 {
		invalid := i%2 == 1
		// DecodeCommand requires an identifier: never generate an empty one.
		c := Command{Command: CommandMessage, Identifier: "i" + randString(r, invalid), Data: randString(r, invalid)}
		frame, err := (JSONCodec{}).AppendCommand(nil, &c)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(frame) {
			t.Fatalf("frame %q is not valid JSON", frame)
		}
		ref.Command, ref.Identifier, ref.Data = "", "", ""
		if err := json.Unmarshal(frame, &ref); err != nil {
			t.Fatalf("encoding/json rejects %q: %v", frame, err)
		}
		if ref.Identifier != fixUTF8(c.Identifier) || ref.Data != fixUTF8(c.Data) || ref.Command != c.Command {
			t.Fatalf("frame %q: encoding/json decodes %+q, want %+q", frame, ref, c)
		}
		if !invalid && (ref.Identifier != c.Identifier || ref.Data != c.Data) {
			t.Fatalf("valid UTF-8 changed: %+q vs %+q", ref, c)
		}
		// Our decoder returns the exact bytes, invalid UTF-8 included.
		var back Command
		if err := (JSONCodec{}).DecodeCommand(frame, &back); err != nil || back != c {
			t.Fatalf("DecodeCommand(%q) = %+q, %v", frame, back, err)
		}
		// And the frame encoding/json writes for the same command decodes
		// to the same strings with our decoder (valid UTF-8 only: the
		// encoder replaces invalid bytes).
		if !invalid {
			std, _ := json.Marshal(ref)
			if err := (JSONCodec{}).DecodeCommand(std, &back); err != nil || back != c {
				t.Fatalf("DecodeCommand(%s) = %+q, %v", std, back, err)
			}
		}
	}
}

// TestCrossCodecMessage decodes JSON frames, re-encodes them with the
// MessagePack codec, decodes again and compares the bodies with the
// originals.
func TestCrossCodecMessage(t *testing.T) {
	frames := []string{
		// Compact, in our canonical spelling: the transcoded JSON must be
		// byte-identical, which proves object key order survives.
		`{"identifier":"x","message":{"z":1,"a":[true,null,"x\"y\\z\n"],"m":{"b":-2,"a":1.5},"e":{},"l":[],"u":"é😀"}}`,
		`{"identifier":"x","message":{"zz":{"yy":{"xx":[{"c":3,"b":2,"a":1}]}},"9":"nine","10":"ten"}}`,
		`{"type":"ping","message":1700000000}`,
		`{"identifier":"x","message":"plain"}`,
		`{"identifier":"x","message":18446744073709551615}`,
		`{"identifier":"x","message":-9223372036854775808}`,
		`{"identifier":"x","message":[0.1,1e+21,-0.5,1e-7,1000000.5]}`,
	}
	for _, f := range frames {
		var jm, mm Message
		if err := (JSONCodec{}).DecodeMessage([]byte(f), &jm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		mp, err := (MessagePackCodec{}).AppendMessage(nil, &jm)
		if err != nil {
			t.Fatalf("%s: MessagePack AppendMessage: %v", f, err)
		}
		if err := (MessagePackCodec{}).DecodeMessage(mp, &mm); err != nil {
			t.Fatalf("%s: MessagePack DecodeMessage: %v", f, err)
		}
		if mm.Type != jm.Type || !bytes.Equal(mm.Identifier, jm.Identifier) {
			t.Errorf("%s: envelope %s vs %s", f, fmtMsg(&mm), fmtMsg(&jm))
		}
		back, err := mm.Body.JSON()
		if err != nil {
			t.Fatalf("%s: Body.JSON: %v", f, err)
		}
		if !bytes.Equal(back, jm.Body.Bytes()) {
			t.Errorf("%s: body came back as %s", f, back)
		}
		if eq, err := jsonSemEqual(back, jm.Body.Bytes()); err != nil || !eq {
			t.Errorf("%s: body %s not equal (%v)", f, back, err)
		}
		// And to JSON again through the JSON codec.
		again, err := (JSONCodec{}).AppendMessage(nil, &mm)
		if err != nil || string(again) != f {
			t.Errorf("JSON(MessagePack(%s)) = %s, %v", f, again, err)
		}
	}

	// Non-canonical spellings come back equal in value, not in bytes.
	loose := `{"identifier":"x","message": { "b" : "\u00e9\/\ud83d\ude00" , "a" : [ 1.0 , -0 , 1E2 , 2e-1 ] } }`
	var jm, mm Message
	if err := (JSONCodec{}).DecodeMessage([]byte(loose), &jm); err != nil {
		t.Fatal(err)
	}
	mp, err := (MessagePackCodec{}).AppendMessage(nil, &jm)
	if err != nil {
		t.Fatal(err)
	}
	if err := (MessagePackCodec{}).DecodeMessage(mp, &mm); err != nil {
		t.Fatal(err)
	}
	back, err := mm.Body.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"b":"é/😀","a":[1,0,100,0.2]}`; string(back) != want {
		t.Errorf("loose body came back as %s, want %s", back, want)
	}
	if eq, err := jsonSemEqual(back, jm.Body.Bytes()); err != nil || !eq {
		t.Errorf("loose body %s not equal (%v)", back, err)
	}
}

// TestCrossCodecFromMsgpack goes the other way: MessagePack frames, through
// the JSON codec, compared with the msgpack library's reading of the
// original body.
func TestCrossCodecFromMsgpack(t *testing.T) {
	body := newMP().Map(7).
		Str("s").Str("tab\there \"q\" \x01").
		Str("bin").Bin([]byte{0, 1, 2, 250, 255}).
		Int(7).Str("int key").
		Str("u").Uint(1 << 63).
		Str("f32").F32(0.1).
		Str("f64").F64(-2.5e-300).
		Str("arr").Arr(3).Nil().Bool(false).Map(0).Bytes()
	frame := newMP().Map(2).KV("identifier", railsChatID).Str("message").Raw(body...).Bytes()
	var mm, jm Message
	if err := (MessagePackCodec{}).DecodeMessage(frame, &mm); err != nil {
		t.Fatal(err)
	}
	js, err := (JSONCodec{}).AppendMessage(nil, &mm)
	if err != nil {
		t.Fatal(err)
	}
	if err := (JSONCodec{}).DecodeMessage(js, &jm); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	want := `{"s":"tab\there \"q\" \u0001","bin":"AAEC+v8=","7":"int key","u":9223372036854775808,"f32":0.1,"f64":-2.5e-300,"arr":[null,false,{}]}`
	if string(jm.Body.Bytes()) != want {
		t.Errorf("body\n got  %s\n want %s", jm.Body.Bytes(), want)
	}
	mref, err := mpRef(body)
	if err != nil {
		t.Fatal(err)
	}
	jref, err := jsonRef(jm.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := refEqual(mref, jref); err != nil {
		t.Errorf("msgpack library and JSON disagree: %v", err)
	}
}
