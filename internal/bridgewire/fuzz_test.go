package bridgewire

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cableway/cableway/sdk/protocol"
)

// Fuzz targets of the wire's parsers of foreign bytes. Run one with, e.g.:
//
//	go test -run='^$' -fuzz='^FuzzParseSend$' -fuzztime=3m -parallel=1 ./internal/bridgewire/

const sub = `{"command":"subscribe","identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}"}`

// sendSeeds are valid /send bodies and the known bad shapes.
var sendSeeds = []string{
	`[]`,
	` [ ] `,
	`[{"cseq":1,"frame":` + sub + `}]`,
	`[{"cseq":1,"frame":` + strconv.Quote(sub) + `}]`, // a frame as a JSON string
	`[{"cseq":1,"frame":` + sub + `},{"cseq":2,"frame":{"command":"message","identifier":"{\"channel\":\"ChatChannel\"}","data":"{\"action\":\"speak\",\"text\":\"hi\"}"}}]`,
	`[{"cseq":3,"frame":{"command":"unsubscribe","identifier":{"channel":"ChatChannel"}}}]`, // identifier as an object
	`[{"cseq":1,"frame":{"command":"message","identifier":"x","data":{"action":"a"}}}]`,
	`[{"cseq":18446744073709551615,"frame":` + sub + `}]`,
	`null`,
	`{"cseq":1,"frame":` + sub + `}`,
	``,
	`[`,
	`[{"cseq":0,"frame":` + sub + `}]`,
	`[{"cseq":-1,"frame":` + sub + `}]`,
	`[{"cseq":1.5,"frame":` + sub + `}]`,
	`[{"cseq":18446744073709551616,"frame":` + sub + `}]`,
	`[{"cseq":1}]`,
	`[{"cseq":1,"frame":null}]`,
	`[{"cseq":1,"frame":"not json"}]`,
	`[{"cseq":1,"frame":{"command":"shout","identifier":"x"}}]`,
	`[{"cseq":1,"frame":{"command":"subscribe"}}]`,
	`[{"cseq":1,"frame":{"command":"subscribe","identifier":""}}]`,
	`[{"cseq":1,"frame":{"command":"subscribe","identifier":"x"} trailing}]`,
	`[{"cseq":1,"frame":{"command":"subscribe","identifier":"x","command":"message","data":"{}"}}]`, // duplicate key
	`[{"CSEQ":1,"Frame":` + sub + `}]`,                                                              // encoding/json's case-insensitive keys
	"[{\"cseq\":1,\"frame\":{\"command\":\"subscribe\",\"identifier\":\"\xff\"}}]",
	`[{"cseq":1,"frame":{"command":"subscribe","identifier":"\ud800"}}]`,
	`[{"cseq":1,"frame":"{\"command\":\"subscribe\",\"identifier\":\"\\ud800\"}"}]`,
	`[{"cseq":1,"frame":{"command":"subscribe","identifier":"\u0000"}}]`,
	`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
	"\xef\xbb\xbf[]", // a byte order mark
}

func FuzzParseSend(f *testing.F) {
	for _, s := range sendSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		batch, cmds, err := ParseSend(body)
		if err != nil {
			checkSendRefusal(t, body, err)
			return
		}
		checkSendAccepted(t, body, batch, cmds)
	})
}

// checkSendRefusal: a refusal is a *SendError with one of the documented
// reasons and a detail; invalid UTF-8 in the body is always named as such.
func checkSendRefusal(t *testing.T, body []byte, err error) {
	t.Helper()
	var se *SendError
	if !errors.As(err, &se) {
		t.Fatalf("ParseSend(%q): %T %v, want a *SendError", body, err, err)
	}
	switch se.Reason {
	case SendBadBody, SendBadCommand, SendInvalidUTF8:
	default:
		t.Fatalf("ParseSend(%q): reason %q", body, se.Reason)
	}
	if se.Detail == "" || !utf8.ValidString(se.Detail) {
		t.Fatalf("ParseSend(%q): detail %q, want a readable one", body, se.Detail)
	}
	if !utf8.Valid(body) && (se.Reason != SendInvalidUTF8 || se.Entry != -1) {
		t.Fatalf("ParseSend(%q) of invalid UTF-8: %v (entry %d), want invalid_utf8 of the body", body, se, se.Entry)
	}
	if se.Entry >= 0 {
		if se.Reason == SendBadBody || !strings.HasPrefix(se.Detail, "entry "+strconv.Itoa(se.Entry)+": ") {
			t.Fatalf("ParseSend(%q): %v for entry %d", body, se, se.Entry)
		}
		// The body is a well-formed array: encoding/json agrees, and
		// has the entry.
		var ref []json.RawMessage
		if json.Unmarshal(body, &ref) != nil || se.Entry >= len(ref) {
			t.Fatalf("ParseSend(%q): entry %d refused, but the body is no array of that many", body, se.Entry)
		}
	}
	if se.Reason == SendBadBody {
		var ref []Command
		if json.Unmarshal(body, &ref) == nil && ref != nil {
			t.Fatalf("ParseSend(%q): bad_body, but encoding/json reads %d entries", body, len(ref))
		}
	}
}

// checkSendAccepted: an accepted batch is an array read the same way by
// encoding/json, every command is valid by the validator and equal to the
// reference decoding of its frame, and the batch survives a round trip
// through the encoder in both frame forms.
func checkSendAccepted(t *testing.T, body []byte, batch []Command, cmds []protocol.Command) {
	t.Helper()
	if !utf8.Valid(body) {
		t.Fatalf("ParseSend accepted invalid UTF-8: %q", body)
	}
	var ref []Command
	if err := json.Unmarshal(body, &ref); err != nil || ref == nil || len(ref) != len(batch) || len(cmds) != len(batch) {
		t.Fatalf("ParseSend(%q): %d entries, %d commands; encoding/json: %d (%v)", body, len(batch), len(cmds), len(ref), err)
	}
	for i := range batch {
		c := &cmds[i]
		if batch[i].CSeq == 0 || batch[i].CSeq != ref[i].CSeq {
			t.Fatalf("ParseSend(%q): entry %d cseq %d (encoding/json: %d)", body, i, batch[i].CSeq, ref[i].CSeq)
		}
		if err := protocol.ValidateCommand(c); err != nil {
			t.Fatalf("ParseSend(%q): entry %d accepted but invalid: %v", body, i, err)
		}
		// Nothing Go decodes as a made-up U+FFFD (an escaped lone
		// surrogate, which Rails refuses), at any level.
		for _, text := range []string{string(batch[i].Frame), c.Identifier, c.Data} {
			if madeUpFFFD(text) {
				t.Fatalf("ParseSend(%q): entry %d accepted with a lone surrogate in %q", body, i, text)
			}
		}
		want := referenceCommand(t, batch[i].Frame)
		if want != *c {
			t.Fatalf("ParseSend(%q): entry %d = %+q, the reference decoding %+q", body, i, *c, want)
		}
	}
	for _, asString := range []bool{false, true} {
		again := encodeSend(t, batch, cmds, asString)
		b2, c2, err := ParseSend(again)
		if err != nil {
			t.Fatalf("ParseSend(%q) (re-encoded from %q): %v", again, body, err)
		}
		for i := range batch {
			if b2[i].CSeq != batch[i].CSeq || c2[i] != cmds[i] {
				t.Fatalf("round trip of %q through %q: entry %d %+q, want %+q", body, again, i, c2[i], cmds[i])
			}
		}
	}
}

// referenceCommand decodes a frame with encoding/json, as the PROTOCOL.md
// text says: an object, or a string holding one; "command" a string,
// "identifier" and "data" strings or objects (the object's exact bytes).
func referenceCommand(t *testing.T, frame json.RawMessage) protocol.Command {
	t.Helper()
	var s string
	if json.Unmarshal(frame, &s) == nil {
		frame = json.RawMessage(s)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(frame, &fields); err != nil {
		t.Fatalf("accepted frame %q: encoding/json: %v", frame, err)
	}
	str := func(k string) string {
		v := fields[k]
		if len(v) > 0 && v[0] == '{' {
			return string(v)
		}
		var s string
		if v != nil {
			if err := json.Unmarshal(v, &s); err != nil {
				t.Fatalf("accepted frame %q: %s: %v", frame, k, err)
			}
		}
		return s
	}
	return protocol.Command{Command: str("command"), Identifier: str("identifier"), Data: str("data")}
}

// encodeSend writes a batch as a client would, each frame as an object or
// as a JSON string.
func encodeSend(t *testing.T, batch []Command, cmds []protocol.Command, asString bool) []byte {
	t.Helper()
	out := []byte{'['}
	for i := range batch {
		frame, err := (protocol.JSONCodec{}).AppendCommand(nil, &cmds[i])
		if err != nil {
			t.Fatal(err)
		}
		if asString {
			frame, _ = json.Marshal(string(frame))
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"cseq":`...)
		out = strconv.AppendUint(out, batch[i].CSeq, 10)
		out = append(out, `,"frame":`...)
		out = append(out, frame...)
		out = append(out, '}')
	}
	return append(out, ']')
}

// TestParseSendSeeds runs the seeds through the invariants with their
// expected answers, so that the fuzz target's checks are seen to bite.
func TestParseSendSeeds(t *testing.T) {
	for _, tc := range []struct {
		body, reason string
		n            int
	}{
		{`[]`, "", 0},
		{`[{"cseq":1,"frame":` + sub + `}]`, "", 1},
		{`[{"cseq":1,"frame":` + strconv.Quote(sub) + `}]`, "", 1},
		{`null`, SendBadBody, 0}, // found by FuzzParseSend's invariant: encoding/json reads null as []
		{` null `, SendBadBody, 0},
		{`{}`, SendBadBody, 0},
		{`[{"cseq":0,"frame":` + sub + `}]`, SendBadCommand, 0},
		{`[{"cseq":1}]`, SendBadCommand, 0},
		{"[{\"cseq\":1,\"frame\":{\"command\":\"subscribe\",\"identifier\":\"\xff\"}}]", SendInvalidUTF8, 0},
	} {
		batch, _, err := ParseSend([]byte(tc.body))
		var se *SendError
		switch {
		case tc.reason == "" && (err != nil || len(batch) != tc.n):
			t.Errorf("ParseSend(%q) = %d entries, %v; want %d", tc.body, len(batch), err, tc.n)
		case tc.reason != "" && (!errors.As(err, &se) || se.Reason != tc.reason):
			t.Errorf("ParseSend(%q) = %v, want %s", tc.body, err, tc.reason)
		}
		if err != nil {
			checkSendRefusal(t, []byte(tc.body), err)
		} else {
			_, cmds, _ := ParseSend([]byte(tc.body))
			checkSendAccepted(t, []byte(tc.body), batch, cmds)
		}
	}
}

// madeUpFFFD reports whether encoding/json, decoding the JSON text s (or,
// if s is a JSON string, the JSON text it holds too), produces a U+FFFD
// that s does not spell — what it does for an escaped lone surrogate.
func madeUpFFFD(s string) bool {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return false
	}
	if inner, ok := v.(string); ok && madeUpFFFD(inner) {
		return true
	}
	return countDecodedFFFD(v) > countSpelledFFFD(s)
}

func countDecodedFFFD(v any) int {
	n := 0
	switch v := v.(type) {
	case string:
		n = strings.Count(v, "\uFFFD")
	case []any:
		for _, e := range v {
			n += countDecodedFFFD(e)
		}
	case map[string]any:
		for k, e := range v {
			n += strings.Count(k, "\uFFFD") + countDecodedFFFD(e)
		}
	}
	return n
}

// countSpelledFFFD counts U+FFFD written as itself or as \ufffd.
func countSpelledFFFD(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] == '\\' && i+1 < len(s) {
			if s[i+1] == 'u' && i+6 <= len(s) && strings.EqualFold(s[i+2:i+6], "fffd") {
				n++
				i += 6
			} else {
				i += 2
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 3 {
			n++
		}
		i += size
	}
	return n
}

// TestParseSendRefusesLoneSurrogates: an escaped lone surrogate, at the
// frame's level or inside its identifier or data text, was passed on —
// as U+FFFD, or as an escape Rails' JSON parser refuses (found with
// FuzzParseSend's reference check; testdata/fuzz/FuzzParseSend/lone-*).
func TestParseSendRefusesLoneSurrogates(t *testing.T) {
	for _, body := range []string{
		`[{"cseq":1,"frame":{"command":"subscribe","identifier":"\ud800"}}]`,
		`[{"cseq":1,"frame":{"command":"subscribe","identifier":"{\"channel\":\"\\udc00\"}"}}]`,
		`[{"cseq":1,"frame":"{\"command\":\"subscribe\",\"identifier\":\"\\ud800\"}"}]`,
		`[{"cseq":1,"frame":{"command":"message","identifier":"x","data":{"action":"a","t":"\ud800x"}}}]`,
	} {
		_, _, err := ParseSend([]byte(body))
		var se *SendError
		if !errors.As(err, &se) || se.Reason != SendInvalidUTF8 || se.Entry != 0 {
			t.Errorf("ParseSend(%s) = %v, want invalid_utf8 of entry 0", body, err)
		}
	}
	ok := `[{"cseq":1,"frame":{"command":"subscribe","identifier":"{\"channel\":\"\\ud83d\\ude00 \ud83d\ude00 \\\\ud800\"}"}}]`
	if _, _, err := ParseSend([]byte(ok)); err != nil {
		t.Errorf("ParseSend(%s): %v, want accepted (pairs, and an escaped backslash)", ok, err)
	}
}
