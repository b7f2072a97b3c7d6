package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Identifiers as Rails sends them back: the subscribe command's identifier
// string, JSON-encoded once more inside the frame.
const (
	railsChatID   = `{"channel":"ChatChannel","room":"lobby"}`
	railsChatIDJS = `"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}"`
)

func TestJSONDecodeMessage(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  Message
	}{
		{
			name:  "welcome",
			frame: `{"type":"welcome"}`,
			want:  Message{Type: TypeWelcome},
		},
		{
			name:  "welcome with sid (AnyCable)",
			frame: `{"type":"welcome","sid":"x2Fvc1"}`,
			want:  Message{Type: TypeWelcome},
		},
		{
			name:  "ping",
			frame: `{"type":"ping","message":1700000000}`,
			want:  Message{Type: TypePing, Body: RawJSON([]byte(`1700000000`))},
		},
		{
			name:  "confirm_subscription",
			frame: `{"identifier":` + railsChatIDJS + `,"type":"confirm_subscription"}`,
			want:  Message{Type: TypeConfirm, Identifier: []byte(railsChatID)},
		},
		{
			name:  "reject_subscription",
			frame: `{"identifier":` + railsChatIDJS + `,"type":"reject_subscription"}`,
			want:  Message{Type: TypeReject, Identifier: []byte(railsChatID)},
		},
		{
			name:  "disconnect unauthorized",
			frame: `{"type":"disconnect","reason":"unauthorized","reconnect":false}`,
			want:  Message{Type: TypeDisconnect, Reason: ReasonUnauthorized, HasReconnect: true},
		},
		{
			name:  "disconnect server_restart",
			frame: `{"type":"disconnect","reason":"server_restart","reconnect":true}`,
			want:  Message{Type: TypeDisconnect, Reason: ReasonServerRestart, Reconnect: true, HasReconnect: true},
		},
		{
			name:  "disconnect without reconnect (Rails < 6)",
			frame: `{"type":"disconnect","reason":"remote"}`,
			want:  Message{Type: TypeDisconnect, Reason: ReasonRemote},
		},
		{
			name:  "disconnect bare",
			frame: `{"type":"disconnect"}`,
			want:  Message{Type: TypeDisconnect},
		},
		{
			name:  "disconnect null reason and reconnect",
			frame: `{"type":"disconnect","reason":null,"reconnect":null}`,
			want:  Message{Type: TypeDisconnect},
		},
		{
			name:  "channel message, nested",
			frame: `{"identifier":` + railsChatIDJS + `,"message":{"user":{"id":1,"tags":["a","b",[1,2,{"x":null}]]},"text":"hi \"there\"\n","ok":true,"n":-1.5e3}}`,
			want: Message{Type: TypeMessage, Identifier: []byte(railsChatID),
				Body: RawJSON([]byte(`{"user":{"id":1,"tags":["a","b",[1,2,{"x":null}]]},"text":"hi \"there\"\n","ok":true,"n":-1.5e3}`))},
		},
		{
			name:  "channel message, scalar bodies",
			frame: `{"identifier":"x","message":"a \\ \" \/ \b\f\n\r\t \u00e9 \ud83d\ude00"}`,
			want: Message{Type: TypeMessage, Identifier: []byte("x"),
				Body: RawJSON([]byte(`"a \\ \" \/ \b\f\n\r\t \u00e9 \ud83d\ude00"`))},
		},
		{
			name:  "channel message, null body is a body",
			frame: `{"identifier":"x","message":null}`,
			want:  Message{Type: TypeMessage, Identifier: []byte("x"), Body: RawJSON([]byte(`null`))},
		},
		{
			name:  "channel message, keys reversed",
			frame: `{"message":[1,2,3],"identifier":"x"}`,
			want:  Message{Type: TypeMessage, Identifier: []byte("x"), Body: RawJSON([]byte(`[1,2,3]`))},
		},
		{
			name:  "confirm, keys reversed",
			frame: `{"type":"confirm_subscription","identifier":"x"}`,
			want:  Message{Type: TypeConfirm, Identifier: []byte("x")},
		},
		{
			name:  "disconnect, keys in every order",
			frame: `{"reconnect":true,"reason":"remote","type":"disconnect"}`,
			want:  Message{Type: TypeDisconnect, Reason: ReasonRemote, Reconnect: true, HasReconnect: true},
		},
		{
			name:  "whitespace everywhere",
			frame: " \t\r\n{ \n\"identifier\" \t:\r\n\"x\" ,\n \"message\" : { \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] } \n} \t\r\n",
			want:  Message{Type: TypeMessage, Identifier: []byte("x"), Body: RawJSON([]byte("{ \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] }"))},
		},
		{
			name: "unknown keys of every kind are skipped",
			frame: `{"x":{"type":"ping","deep":[{"identifier":1}]},"y":[],"z":"s","n":-0.5e-3,"t":true,"f":false,"u":null,` +
				`"type":"reject_subscription","identifier":"x","w":{}}`,
			want: Message{Type: TypeReject, Identifier: []byte("x")},
		},
		{
			name:  "Rails escapes <>& in the identifier",
			frame: `{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"\u003cb\u003e \u0026 \u003e\"}","type":"confirm_subscription"}`,
			want:  Message{Type: TypeConfirm, Identifier: []byte(`{"channel":"ChatChannel","room":"<b> & >"}`)},
		},
		{
			name: "identifier made by encoding/json, escaped again by Rails",
			// NewIdentifier("C", "room", "<b>") is {"channel":"C","room":"\u003cb\u003e"}:
			// the backslashes are escaped once more inside the frame.
			frame: `{"identifier":"{\"channel\":\"C\",\"room\":\"\\u003cb\\u003e\"}","type":"confirm_subscription"}`,
			want:  Message{Type: TypeConfirm, Identifier: []byte(`{"channel":"C","room":"\u003cb\u003e"}`)},
		},
		{
			name:  "unicode escapes and surrogates in the identifier",
			frame: `{"identifier":"\u00e9\u4e2d\ud83d\ude00|\ud800|\udc00|\ud800\u0041|\uDBFF\uDFFF|\ud800\ud800\udc00|\ud800","type":"confirm_subscription"}`,
			want:  Message{Type: TypeConfirm, Identifier: []byte("é中😀|\ufffd|\ufffd|\ufffdA|\U0010ffff|\ufffd\U00010000|\ufffd")},
		},
		{
			name:  "escapes in type, key and reason",
			frame: `{"\u0074ype":"disc\u006fnnect","re\u0061son":"a\"b\\c\/d\te\u0000"}`,
			want:  Message{Type: TypeDisconnect, Reason: "a\"b\\c/d\te\x00"},
		},
		{
			name:  "raw UTF-8 and invalid UTF-8 pass through",
			frame: "{\"identifier\":\"é\xff\xfe\x7f\",\"type\":\"confirm_subscription\"}",
			want:  Message{Type: TypeConfirm, Identifier: []byte("é\xff\xfe\x7f")},
		},
		{
			name:  "identifier sent as an object is kept as its text",
			frame: `{"identifier":{"channel":"C", "id":1},"type":"confirm_subscription"}`,
			want:  Message{Type: TypeConfirm, Identifier: []byte(`{"channel":"C", "id":1}`)},
		},
		{
			name:  "duplicate keys: the last wins",
			frame: `{"type":"ping","identifier":"a","type":"confirm_subscription","identifier":"b"}`,
			want:  Message{Type: TypeConfirm, Identifier: []byte("b")},
		},
		{
			name:  "duplicate type: a known type after an unknown one wins",
			frame: `{"type":"nope","type":"welcome"}`,
			want:  Message{Type: TypeWelcome},
		},
		{
			name:  "ping with float and negative time",
			frame: `{"type":"ping","message":-1.25E+2}`,
			want:  Message{Type: TypePing, Body: RawJSON([]byte(`-1.25E+2`))},
		},
	}
	var m Message
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Decode into a fresh Message and into one reused from earlier
			// cases: the result must not depend on what m held.
			var fresh Message
			if err := (JSONCodec{}).DecodeMessage([]byte(tt.frame), &fresh); err != nil {
				t.Fatalf("DecodeMessage(%s): %v", tt.frame, err)
			}
			if !msgEqual(&fresh, &tt.want) {
				t.Fatalf("DecodeMessage(%s)\n got  %s\n want %s", tt.frame, fmtMsg(&fresh), fmtMsg(&tt.want))
			}
			if err := (JSONCodec{}).DecodeMessage([]byte(tt.frame), &m); err != nil {
				t.Fatal(err)
			}
			if !msgEqual(&m, &tt.want) {
				t.Fatalf("reused Message\n got  %s\n want %s", fmtMsg(&m), fmtMsg(&tt.want))
			}
			if !m.Body.IsZero() {
				if m.Body.Format() != FormatJSON {
					t.Errorf("Body.Format() = %v", m.Body.Format())
				}
				if !json.Valid(m.Body.Bytes()) {
					t.Errorf("Body %q is not valid JSON", m.Body.Bytes())
				}
			}
		})
	}
}

// TestJSONUnescapeMatchesEncodingJSON checks appendUnescaped against
// encoding/json on escape sequences, surrogates alone and in pairs.
func TestJSONUnescapeMatchesEncodingJSON(t *testing.T) {
	units := []string{
		`a`, `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u0000`, `\u001F`, `\u0041`, `\u00e9`, `\u4E2D`,
		`\ud83d`, `\ude00`, `\uD800`, `\uDBFF`, `\uDC00`, `\uDFFF`, `\uFFFD`, `\uFEFF`, `\u2028`,
		"é", "😀", "\xff", "\xed\xa0\x80", `<`, `\u003c`, `\u0026`,
	}
	var ours []byte
	for n := 0; n < 20000; n++ {
		// Every pair and triple of units in turn, then pseudo-random runs.
		var s strings.Builder
		s.WriteByte('"')
		k := n
		for range 3 {
			s.WriteString(units[k%len(units)])
			k /= len(units)
			if k == 0 {
				break
			}
		}
		s.WriteByte('"')
		lit := []byte(s.String())
		end, _, err := scanString(lit, 0)
		if err != nil || end != len(lit) {
			t.Fatalf("scanString(%s) = %d, %v", lit, end, err)
		}
		var want string
		if err := json.Unmarshal(lit, &want); err != nil {
			t.Fatalf("encoding/json rejects %s: %v", lit, err)
		}
		ours = appendUnescaped(ours[:0], lit)
		// encoding/json also replaces invalid UTF-8; we keep the bytes.
		if fixUTF8(string(ours)) != want {
			t.Fatalf("appendUnescaped(%s) = %q, encoding/json %q", lit, ours, want)
		}
	}
}

func TestJSONDecodeMessageErrors(t *testing.T) {
	deep := strings.Repeat("[", 100000)
	tests := []struct {
		name     string
		frame    string
		sentinel error
	}{
		{"empty", ``, ErrMalformed},
		{"whitespace only", " \n\t ", ErrMalformed},
		{"null", `null`, ErrMalformed},
		{"array", `[]`, ErrMalformed},
		{"array of a frame", `[{"type":"welcome"}]`, ErrMalformed},
		{"string", `"welcome"`, ErrMalformed},
		{"number", `42`, ErrMalformed},
		{"unterminated object", `{`, ErrMalformed},
		{"trailing garbage", `{"type":"welcome"}x`, ErrMalformed},
		{"trailing second object", `{"type":"welcome"}{}`, ErrMalformed},
		{"trailing comma after object", `{"type":"welcome"} ,`, ErrMalformed},
		{"trailing NUL", "{\"type\":\"welcome\"}\x00", ErrMalformed},
		{"trailing comma in object", `{"type":"welcome",}`, ErrMalformed},
		{"missing colon", `{"type" "welcome"}`, ErrMalformed},
		{"missing comma", `{"type":"welcome" "x":1}`, ErrMalformed},
		{"unquoted key", `{type:"welcome"}`, ErrMalformed},
		{"single quotes", `{'type':'welcome'}`, ErrMalformed},
		{"key without value", `{"type"}`, ErrMalformed},
		{"double comma", `{"type":"welcome",,"x":1}`, ErrMalformed},
		{"leading comma", `{,"type":"welcome"}`, ErrMalformed},
		{"unknown type", `{"type":"foo"}`, ErrUnknownType},
		{"type is case-sensitive", `{"type":"Welcome"}`, ErrUnknownType},
		{"empty type", `{"type":""}`, ErrUnknownType},
		{"type a number", `{"type":1}`, ErrInvalidField},
		{"type null", `{"type":null}`, ErrInvalidField},
		{"type an array", `{"type":["welcome"]}`, ErrInvalidField},
		{"type an object", `{"type":{"welcome":true}}`, ErrInvalidField},
		{"identifier a number", `{"identifier":1,"message":{}}`, ErrInvalidField},
		{"identifier null", `{"identifier":null,"message":{}}`, ErrInvalidField},
		{"identifier an array", `{"identifier":["x"],"type":"confirm_subscription"}`, ErrInvalidField},
		{"identifier true", `{"identifier":true,"type":"confirm_subscription"}`, ErrInvalidField},
		{"reconnect a string", `{"type":"disconnect","reconnect":"true"}`, ErrInvalidField},
		{"reconnect a number", `{"type":"disconnect","reconnect":1}`, ErrInvalidField},
		{"reason a number", `{"type":"disconnect","reason":1}`, ErrInvalidField},
		{"reason an object", `{"type":"disconnect","reason":{}}`, ErrInvalidField},
		{"reason false", `{"type":"disconnect","reason":false}`, ErrInvalidField},
		{"confirm without identifier", `{"type":"confirm_subscription"}`, ErrInvalidField},
		{"reject without identifier", `{"type":"reject_subscription"}`, ErrInvalidField},
		{"empty object", `{}`, ErrInvalidField},
		{"only unknown keys", `{"foo":1}`, ErrInvalidField},
		{"channel message without message", `{"identifier":"x"}`, ErrInvalidField},
		{"message without identifier", `{"message":{}}`, ErrInvalidField},
		{"deep nesting in message", `{"identifier":"x","message":` + deep, ErrMalformed},
		{"deep balanced nesting in message", `{"identifier":"x","message":` + deep + strings.Repeat("]", 100000) + `}`, ErrMalformed},
		{"deep objects in an unknown key", `{"x":` + strings.Repeat(`{"a":`, 100000) + `1` + strings.Repeat("}", 100000) + `}`, ErrMalformed},
		{"deep nesting only", deep, ErrMalformed},
		{"invalid escape \\x", `{"type":"welcome","x":"\x41"}`, ErrMalformed},
		{"invalid escape \\'", `{"type":"welcome","x":"\'"}`, ErrMalformed},
		{"invalid escape \\U", `{"type":"welcome","x":"\U0041"}`, ErrMalformed},
		{"short \\u", `{"type":"welcome","x":"\u12"}`, ErrMalformed},
		{"non-hex \\u", `{"type":"welcome","x":"\u12G4"}`, ErrMalformed},
		{"\\u at the end", `{"type":"welcome","x":"\u`, ErrMalformed},
		{"backslash at the end", `{"type":"welcome","x":"\`, ErrMalformed},
		{"escape in a key", `{"ty\pe":"welcome"}`, ErrMalformed},
		{"raw newline in a string", "{\"type\":\"welcome\",\"x\":\"a\nb\"}", ErrMalformed},
		{"raw NUL in a string", "{\"type\":\"welcome\",\"x\":\"a\x00b\"}", ErrMalformed},
		{"raw 0x1f in a string", "{\"type\":\"welcome\",\"x\":\"\x1f\"}", ErrMalformed},
		{"raw tab in the identifier", "{\"identifier\":\"a\tb\",\"type\":\"confirm_subscription\"}", ErrMalformed},
		{"raw control in a key", "{\"ty\x01pe\":\"welcome\"}", ErrMalformed},
		{"number 01", `{"type":"ping","message":01}`, ErrMalformed},
		{"number -01", `{"type":"ping","message":-01}`, ErrMalformed},
		{"number 1.", `{"type":"ping","message":1.}`, ErrMalformed},
		{"number -", `{"type":"ping","message":-}`, ErrMalformed},
		{"number 1e", `{"type":"ping","message":1e}`, ErrMalformed},
		{"number 1e+", `{"type":"ping","message":1e+}`, ErrMalformed},
		{"number 1.e5", `{"type":"ping","message":1.e5}`, ErrMalformed},
		{"number .5", `{"type":"ping","message":.5}`, ErrMalformed},
		{"number +1", `{"type":"ping","message":+1}`, ErrMalformed},
		{"number --1", `{"type":"ping","message":--1}`, ErrMalformed},
		{"number 0x10", `{"type":"ping","message":0x10}`, ErrMalformed},
		{"number NaN", `{"type":"ping","message":NaN}`, ErrMalformed},
		{"number Infinity", `{"type":"ping","message":Infinity}`, ErrMalformed},
		{"literal tru", `{"type":"ping","message":tru}`, ErrMalformed},
		{"literal True", `{"type":"ping","message":True}`, ErrMalformed},
		{"literal nul", `{"type":"ping","message":nul}`, ErrMalformed},
		{"literal nulll", `{"type":"ping","message":nulll}`, ErrMalformed},
		{"array trailing comma", `{"identifier":"x","message":[1,]}`, ErrMalformed},
		{"array leading comma", `{"identifier":"x","message":[,1]}`, ErrMalformed},
		{"array missing comma", `{"identifier":"x","message":[1 2]}`, ErrMalformed},
		{"mismatched brackets", `{"identifier":"x","message":[1}}`, ErrMalformed},
		{"object in message trailing comma", `{"identifier":"x","message":{"a":1,}}`, ErrMalformed},
		{"object in message number key", `{"identifier":"x","message":{1:1}}`, ErrMalformed},
		{"message missing value", `{"identifier":"x","message":}`, ErrMalformed},
		{"non-JSON whitespace", "{\"type\":\"welcome\"\v}", ErrMalformed},
		{"NBSP", "{\"type\":\"welcome\"\u00a0}", ErrMalformed},
		{"BOM", "\ufeff{\"type\":\"welcome\"}", ErrMalformed},
		{"comment", `{"type":"welcome"/*x*/}`, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			m.Identifier = []byte("stale")
			m.Reason = "stale"
			err := (JSONCodec{}).DecodeMessage([]byte(tt.frame), &m)
			de := wantDecodeError(t, err, SubprotocolJSON, tt.sentinel)
			for _, s := range []error{ErrMalformed, ErrUnknownType, ErrInvalidField, ErrUnsupported} {
				if s != tt.sentinel && errors.Is(err, s) {
					t.Errorf("%v also matches %v", err, s)
				}
			}
			if tt.sentinel == ErrMalformed {
				if de.Offset < 0 || de.Offset > len(tt.frame) {
					t.Errorf("Offset %d outside the frame (len %d)", de.Offset, len(tt.frame))
				}
			}
			if m.Reason == "stale" {
				t.Error("DecodeMessage left a stale Reason in m")
			}
		})
	}
}

func TestJSONUnknownTypeKeepsFrame(t *testing.T) {
	var m Message
	frame := `{"identifier":"id","type":"custom_kind","message":{"a":1},"reason":"r","reconnect":true}`
	err := (JSONCodec{}).DecodeMessage([]byte(frame), &m)
	de := wantDecodeError(t, err, SubprotocolJSON, ErrUnknownType)
	if de.Type != "custom_kind" {
		t.Errorf("Type = %q, want custom_kind", de.Type)
	}
	if !strings.Contains(err.Error(), `"custom_kind"`) {
		t.Errorf("error text %q does not name the type", err)
	}
	// The rest of the frame is decoded, so a caller may still log it.
	if string(m.Identifier) != "id" || string(m.Body.Bytes()) != `{"a":1}` || m.Reason != "r" || !m.Reconnect {
		t.Errorf("m = %s", fmtMsg(&m))
	}
	// An escaped unknown type is reported unescaped.
	err = (JSONCodec{}).DecodeMessage([]byte(`{"type":"\u00e9t\u00e9"}`), &m)
	if de := wantDecodeError(t, err, SubprotocolJSON, ErrUnknownType); de.Type != "été" {
		t.Errorf("Type = %q, want été", de.Type)
	}
	// The error's Type must not alias the frame.
	buf := []byte(`{"type":"abc"}`)
	err = (JSONCodec{}).DecodeMessage(buf, &m)
	copy(buf, bytes.Repeat([]byte("z"), len(buf)))
	if de := wantDecodeError(t, err, SubprotocolJSON, ErrUnknownType); de.Type != "abc" {
		t.Errorf("Type = %q after the frame was overwritten", de.Type)
	}
}

// validJSONFrames are complete frames whose last byte closes the frame
// object, so every proper prefix is incomplete.
var validJSONFrames = []string{
	`{"type":"welcome"}`,
	`{"type":"ping","message":1700000000}`,
	`{"identifier":` + railsChatIDJS + `,"type":"confirm_subscription"}`,
	`{"identifier":` + railsChatIDJS + `,"type":"reject_subscription"}`,
	`{"type":"disconnect","reason":"unauthorized","reconnect":false}`,
	`{"type":"disconnect","reason":"server_restart","reconnect":true}`,
	`{"type":"disconnect","reason":"remote"}`,
	`{"identifier":` + railsChatIDJS + `,"message":{"user":{"id":1,"tags":["a","b",[1.5e-3,-2,{"x":null}]]},"text":"hi \"there\" \u00e9\ud83d\ude00\n","ok":true,"no":false}}`,
	" { \"identifier\" : \"x\" , \"message\" : [ 1 , true , null , \"s\" ] }",
}

func TestJSONDecodeMessageTruncated(t *testing.T) {
	var m Message
	for _, frame := range validJSONFrames {
		if err := (JSONCodec{}).DecodeMessage([]byte(frame), &m); err != nil {
			t.Fatalf("full frame %s: %v", frame, err)
		}
		for i := 0; i < len(frame); i++ {
			// A fresh copy of exactly i bytes, so reading past it would be
			// caught by the bounds checks.
			prefix := []byte(frame[:i])
			err := (JSONCodec{}).DecodeMessage(prefix, &m)
			de := wantDecodeError(t, err, SubprotocolJSON, ErrMalformed)
			if de.Offset < 0 || de.Offset > i {
				t.Errorf("prefix %q: Offset %d outside [0,%d]", prefix, de.Offset, i)
			}
		}
	}
}

func TestJSONDecodeErrorText(t *testing.T) {
	var m Message
	err := (JSONCodec{}).DecodeMessage([]byte(`{"type":"welcome"}x`), &m)
	want := "protocol: malformed frame: data after the frame object: invalid JSON (actioncable-v1-json, offset 18)"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err, want)
	}
	err = (JSONCodec{}).DecodeMessage([]byte(`{"type":7}`), &m)
	want = `protocol: invalid field: "type" must be a string (actioncable-v1-json)`
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err, want)
	}
}

func TestJSONDepthLimit(t *testing.T) {
	// The whole frame may nest maxDepth deep: the frame object is level 1,
	// so the message may hold maxDepth-1 levels.
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	var m Message
	ok := `{"identifier":"x","message":` + nest(maxDepth-1) + `}`
	if err := (JSONCodec{}).DecodeMessage([]byte(ok), &m); err != nil {
		t.Errorf("%d levels: %v", maxDepth, err)
	}
	bad := `{"identifier":"x","message":` + nest(maxDepth) + `}`
	err := (JSONCodec{}).DecodeMessage([]byte(bad), &m)
	if de := wantDecodeError(t, err, SubprotocolJSON, ErrMalformed); !strings.Contains(de.Detail, "nesting") {
		t.Errorf("Detail = %q, want a nesting error", de.Detail)
	}
	// A complete value may nest maxDepth deep, as in the transcoder.
	if ok, err := scanComplete([]byte(nest(maxDepth))); !ok {
		t.Errorf("scanComplete(%d levels) = %v", maxDepth, err)
	}
	if ok, _ := scanComplete([]byte(nest(maxDepth + 1))); ok {
		t.Errorf("scanComplete(%d levels) accepted", maxDepth+1)
	}
}

// TestSkipValueMatchesValid compares the scanner with json.Valid on a set
// of tricky complete values.
func TestSkipValueMatchesValid(t *testing.T) {
	values := []string{
		``, ` `, `0`, `-0`, `-0.0e-0`, `1E+9`, `123456789012345678901234567890`, `1e400`,
		`01`, `-`, `1.`, `1e`, `.1`, `+1`, `0x1`, `1_000`, `- 1`, `1.5.5`,
		`""`, `"\u0000"`, `"\uD800"`, `"\uZZZZ"`, "\"\x01\"", "\"\x7f\"", "\"\xff\"", `"\"`, `"\\"`, `"a`,
		`true`, `false`, `null`, `nul`, `nulls`, `t`,
		`[]`, `[ ]`, `[1,]`, `[,]`, `[1 2]`, `[[[]]]`, `[[]`, `[]]`,
		`{}`, `{ }`, `{"a":1}`, `{"a" : 1 , "b" : [ ] }`, `{"a":}`, `{"a"}`, `{1:1}`, `{"a":1,}`, `{"a":1 "b":2}`,
		" \t\n\r[\t1\n,\r2 ] \n", "[1]\v", "\u00a0[]", `[1]]`, `{}{}`, `1 2`,
	}
	for _, v := range values {
		ours, _ := scanComplete([]byte(v))
		if want := json.Valid([]byte(v)); ours != want {
			t.Errorf("scanComplete(%q) = %v, json.Valid = %v", v, ours, want)
		}
	}
}

func TestJSONDecodeCommand(t *testing.T) {
	tests := []struct {
		frame string
		want  Command
	}{
		{
			`{"command":"subscribe","identifier":` + railsChatIDJS + `}`,
			Command{Command: CommandSubscribe, Identifier: railsChatID},
		},
		{
			`{"command":"unsubscribe","identifier":` + railsChatIDJS + `}`,
			Command{Command: CommandUnsubscribe, Identifier: railsChatID},
		},
		{
			`{"command":"message","identifier":` + railsChatIDJS + `,"data":"{\"action\":\"speak\",\"text\":\"hi \\\"x\\\"\"}"}`,
			Command{Command: CommandMessage, Identifier: railsChatID, Data: `{"action":"speak","text":"hi \"x\""}`},
		},
		{
			` { "data" : "{}" , "identifier" : "i" , "command" : "message" , "extra" : [1,{"a":null}] } `,
			Command{Command: CommandMessage, Identifier: "i", Data: "{}"},
		},
		{
			// Lenient: identifier and data as objects are kept as text.
			`{"command":"message","identifier":{"channel":"C"},"data":{"action":"x"}}`,
			Command{Command: CommandMessage, Identifier: `{"channel":"C"}`, Data: `{"action":"x"}`},
		},
		{
			`{"command":"subscribe","identifier":"\u003c\u0026\ud83d\ude00\ud800"}`,
			Command{Command: CommandSubscribe, Identifier: "<&😀\ufffd"},
		},
	}
	for _, tt := range tests {
		var c Command
		if err := (JSONCodec{}).DecodeCommand([]byte(tt.frame), &c); err != nil {
			t.Errorf("DecodeCommand(%s): %v", tt.frame, err)
			continue
		}
		if c != tt.want {
			t.Errorf("DecodeCommand(%s)\n got  %+v\n want %+v", tt.frame, c, tt.want)
		}
	}
}

func TestJSONDecodeCommandErrors(t *testing.T) {
	tests := []struct {
		frame    string
		sentinel error
		typ      string
	}{
		{``, ErrMalformed, ""},
		{`null`, ErrMalformed, ""},
		{`[]`, ErrMalformed, ""},
		{`{"command":"subscribe","identifier":"x"`, ErrMalformed, ""},
		{`{"command":"subscribe","identifier":"x"} x`, ErrMalformed, ""},
		{`{"command":"subscribe","identifier":"\q"}`, ErrMalformed, ""},
		{`{}`, ErrInvalidField, ""},
		{`{"identifier":"x"}`, ErrInvalidField, ""},
		{`{"command":"subscribe"}`, ErrInvalidField, ""},
		{`{"command":"subscribe","identifier":""}`, ErrInvalidField, ""},
		{`{"command":"subscribe","identifier":1}`, ErrInvalidField, ""},
		{`{"command":"subscribe","identifier":null}`, ErrInvalidField, ""},
		{`{"command":"message","identifier":"x","data":1}`, ErrInvalidField, ""},
		{`{"command":"message","identifier":"x","data":["a"]}`, ErrInvalidField, ""},
		{`{"command":{"x":1},"identifier":"x"}`, ErrInvalidField, ""},
		{`{"command":1,"identifier":"x"}`, ErrInvalidField, ""},
		{`{"command":"perform","identifier":"x"}`, ErrUnknownType, "perform"},
		{`{"command":"Subscribe","identifier":"x"}`, ErrUnknownType, "Subscribe"},
	}
	for _, tt := range tests {
		var c Command
		err := (JSONCodec{}).DecodeCommand([]byte(tt.frame), &c)
		if err == nil {
			t.Errorf("DecodeCommand(%s) = %+v, want %v", tt.frame, c, tt.sentinel)
			continue
		}
		de := wantDecodeError(t, err, SubprotocolJSON, tt.sentinel)
		if de.Type != tt.typ {
			t.Errorf("DecodeCommand(%s): Type = %q, want %q", tt.frame, de.Type, tt.typ)
		}
	}
}

func TestJSONDecodeCommandTruncated(t *testing.T) {
	frames := []string{
		`{"command":"subscribe","identifier":` + railsChatIDJS + `}`,
		`{"command":"message","identifier":"x","data":"{\"action\":\"speak\"}"}`,
	}
	for _, frame := range frames {
		for i := range len(frame) {
			var c Command
			err := (JSONCodec{}).DecodeCommand([]byte(frame[:i]), &c)
			wantDecodeError(t, err, SubprotocolJSON, ErrMalformed)
		}
	}
}

func TestJSONAppendCommand(t *testing.T) {
	tests := []struct {
		c    Command
		want string
	}{
		// The key order and layout of the official JavaScript client.
		{Command{Command: CommandSubscribe, Identifier: railsChatID},
			`{"command":"subscribe","identifier":` + railsChatIDJS + `}`},
		{Command{Command: CommandUnsubscribe, Identifier: railsChatID},
			`{"command":"unsubscribe","identifier":` + railsChatIDJS + `}`},
		{Command{Command: CommandMessage, Identifier: railsChatID, Data: `{"action":"speak"}`},
			`{"command":"message","identifier":` + railsChatIDJS + `,"data":"{\"action\":\"speak\"}"}`},
		// A message command always carries data, even empty.
		{Command{Command: CommandMessage, Identifier: "x"},
			`{"command":"message","identifier":"x","data":""}`},
		{Command{Command: "subscribe", Identifier: "a\x00\x1f\n\r\t\"\\/<>&é\u2028\x7f"},
			`{"command":"subscribe","identifier":"a\u0000\u001f\n\r\t\"\\/<>&é` + "\u2028\x7f" + `"}`},
	}
	for _, tt := range tests {
		got, err := (JSONCodec{}).AppendCommand([]byte("prefix"), &tt.c)
		if err != nil {
			t.Errorf("AppendCommand(%+v): %v", tt.c, err)
			continue
		}
		if string(got) != "prefix"+tt.want {
			t.Errorf("AppendCommand(%+v)\n got  %s\n want prefix%s", tt.c, got, tt.want)
		}
	}
}

func TestCodecFor(t *testing.T) {
	for _, tt := range []struct {
		name   string
		codec  Codec
		ok     bool
		binary bool
	}{
		{"", JSONCodec{}, true, false},
		{SubprotocolJSON, JSONCodec{}, true, false},
		{SubprotocolMessagePack, MessagePackCodec{}, true, true},
		{"actioncable-unsupported", nil, false, false},
		{"actioncable-v1-protobuf", nil, false, false},
		{"ACTIONCABLE-V1-JSON", nil, false, false},
	} {
		c, ok := CodecFor(tt.name)
		if ok != tt.ok || c != tt.codec {
			t.Errorf("CodecFor(%q) = %v, %v", tt.name, c, ok)
			continue
		}
		if !ok {
			continue
		}
		if c.Binary() != tt.binary {
			t.Errorf("%T.Binary() = %v", c, c.Binary())
		}
		if tt.name != "" && c.Subprotocol() != tt.name {
			t.Errorf("%T.Subprotocol() = %q", c, c.Subprotocol())
		}
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[Type]string{
		TypeMessage: "", TypeWelcome: "welcome", TypePing: "ping", TypeConfirm: "confirm_subscription",
		TypeReject: "reject_subscription", TypeDisconnect: "disconnect", Type(6): "Type(6)", Type(255): "Type(255)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", typ, got, want)
		}
		if typ != TypeMessage && typ <= TypeDisconnect {
			if back, ok := parseType([]byte(want)); !ok || back != typ {
				t.Errorf("parseType(%q) = %v, %v", want, back, ok)
			}
		}
	}
	if _, ok := parseType(nil); ok {
		t.Error("parseType(empty) accepted")
	}
}

func TestMessageReset(t *testing.T) {
	m := Message{Type: TypeDisconnect, Identifier: make([]byte, 3, 64), Body: RawJSON([]byte("1")), Reason: "r", Reconnect: true, HasReconnect: true}
	m.Reset()
	if m.Type != 0 || len(m.Identifier) != 0 || cap(m.Identifier) != 64 || !m.Body.IsZero() || m.Reason != "" || m.Reconnect || m.HasReconnect {
		t.Errorf("after Reset: %s cap %d", fmtMsg(&m), cap(m.Identifier))
	}
}
