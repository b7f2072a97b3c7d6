package compat

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets of the compat API's parsers of foreign bytes. Run one with, e.g.:
//
//	go test -run='^$' -fuzz='^FuzzPostBody$' -fuzztime=3m -parallel=1 ./server/compat/

var (
	eventsIDChars = regexp.MustCompile(`^[A-Za-z0-9_-]{22,128}$`)
	hexLike       = regexp.MustCompile(`^[0-9A-Fa-f-]*$`)
	hexDigit      = regexp.MustCompile(`[0-9A-Fa-f]`)
	decimalDigits = regexp.MustCompile(`^[0-9]+$`)
)

// FuzzEventsID checks checkEventsID against COMPAT.md's rule written as
// regular expressions.
func FuzzEventsID(f *testing.F) {
	for _, s := range []string{
		"AAAAAAAAAAAAAAAAAAAAAA", "aaaaaaaaaaaaaaaaaaaaa", strings.Repeat("a", 128), strings.Repeat("a", 129),
		"0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcde", "123e4567-e89b-12d3-a456-426614174000",
		"------------------------------------", "abcdefghijklmnopqrstuvwxyz_-", "abc/def/ghi/jkl/mno/pqr", "abcdefghij klmnopqrstuvw",
		"abcdefghijklmnopqrstuvw\x00", "abcdefghijklmnopqrstuvwé", "abcdefghijklmnopqrst%2F", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := checkEventsID(id)
		want := eventsIDChars.MatchString(id) && (!hexLike.MatchString(id) || len(hexDigit.FindAllString(id, -1)) >= hexMin)
		if (err == nil) != want {
			t.Fatalf("checkEventsID(%q) = %v, want accepted %v", id, err, want)
		}
		if err != nil && (err.Error() == "" || !utf8.ValidString(err.Error())) {
			t.Fatalf("checkEventsID(%q): unreadable error %q", id, err)
		}
	})
}

// FuzzPollParams: timeout, poll-queue and the msg_id cursor (after,
// Last-Event-ID) against COMPAT.md.
func FuzzPollParams(f *testing.F) {
	for _, s := range []string{
		"", "0", "1", "25", "0.5", ".5", "60", "61", "1e10", "1e400", "-1", "-0", "NaN", "Inf", "+Inf", "-Inf",
		"infinity", "0x10", "0x1p-2", "1_000", "+5", " 5", "5 ", "1024", "1025", "9223372036854775807",
		"9223372036854775808", "18446744073709551615", "18446744073709551616", "007",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		// timeout: seconds, a number ≥ 0, capped at 60; "" the default.
		// +Inf is the cap here (TestPollTimeout; the bridge's own
		// long-poll refuses it).
		d, err := pollTimeout(v)
		n, perr := strconv.ParseFloat(v, 64)
		switch {
		case v == "":
			if err != nil || d != DefaultPollTimeout {
				t.Fatalf("pollTimeout(\"\") = %v %v", d, err)
			}
		case perr != nil || n < 0 || math.IsNaN(n):
			if err == nil {
				t.Fatalf("pollTimeout(%q) = %v, want an error", v, d)
			}
		default:
			want := time.Duration(math.Min(n, 60) * float64(time.Second))
			if err != nil || d != want || d < 0 || d > MaxPollTimeout {
				t.Fatalf("pollTimeout(%q) = %v %v, want %v", v, d, err, want)
			}
		}
		if err != nil && !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("pollTimeout(%q): error %q does not name the parameter", v, err)
		}

		// poll-queue: an integer ≥ 1, capped at 1024; "" keeps the default.
		q, qerr := pollQueue(v)
		iv, ierr := strconv.Atoi(v)
		switch {
		case v == "":
			if qerr != nil || q != 0 {
				t.Fatalf("pollQueue(\"\") = %d %v", q, qerr)
			}
		case ierr != nil || iv < 1:
			if qerr == nil {
				t.Fatalf("pollQueue(%q) = %d, want an error", v, q)
			}
		default:
			if qerr != nil || q != min(iv, MaxPollQueue) || q < 1 {
				t.Fatalf("pollQueue(%q) = %d %v", v, q, qerr)
			}
		}

		// msg_id: decimal digits only.
		c, set, ok := parseCursor(v)
		switch {
		case v == "":
			if set || !ok {
				t.Fatalf("parseCursor(\"\") = %d %v %v", c, set, ok)
			}
		case !decimalDigits.MatchString(v):
			if ok || set {
				t.Fatalf("parseCursor(%q) = %d %v %v, want malformed", v, c, set, ok)
			}
		default:
			u, uerr := strconv.ParseUint(v, 10, 64)
			if ok != (uerr == nil) || set != ok || (ok && c != u) {
				t.Fatalf("parseCursor(%q) = %d %v %v", v, c, set, ok)
			}
		}
	})
}

// countFFFD counts the U+FFFD a JSON text spells: as the character or as
// the escape \ufffd.
func countFFFD(b []byte) int {
	n := 0
	for i := 0; i < len(b); {
		if b[i] == '\\' && i+1 < len(b) {
			if b[i+1] == 'u' && i+6 <= len(b) && strings.EqualFold(string(b[i+2:i+6]), "fffd") {
				n++
				i += 6
				continue
			}
			i += 2
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 3 {
			n++
		}
		i += size
	}
	return n
}

// decodedFFFD counts the U+FFFD in the strings (keys included) of a
// decoded JSON value.
func decodedFFFD(v any) int {
	switch v := v.(type) {
	case string:
		return strings.Count(v, "\uFFFD")
	case []any:
		n := 0
		for _, e := range v {
			n += decodedFFFD(e)
		}
		return n
	case map[string]any:
		n := 0
		for k, e := range v {
			n += strings.Count(k, "\uFFFD") + decodedFFFD(e)
		}
		return n
	}
	return 0
}

// checkTextRef: valid UTF-8 JSON text passes checkText exactly when
// encoding/json decodes it without making up a U+FFFD (which it does for an
// escaped lone surrogate). Duplicate keys can hide a string from the
// decoded value, so only texts without them are compared.
func checkTextRef(t *testing.T, text []byte) {
	t.Helper()
	err := checkText(text)
	if !utf8.Valid(text) {
		if !errors.Is(err, ErrInvalidText) {
			t.Fatalf("checkText(%q) = %v, want ErrInvalidText", text, err)
		}
		return
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	var v any
	if dec.Decode(&v) != nil || dec.More() || hasDuplicateKeys(text) {
		return
	}
	madeUp := decodedFFFD(v) > countFFFD(text)
	if madeUp != (err != nil) {
		t.Fatalf("checkText(%q) = %v; encoding/json makes up a U+FFFD: %v", text, err, madeUp)
	}
	if err != nil && !errors.Is(err, ErrInvalidText) {
		t.Fatalf("checkText(%q) = %v, want ErrInvalidText", text, err)
	}
}

// hasDuplicateKeys reports whether a JSON text has an object with a key
// twice (or does not tokenise).
func hasDuplicateKeys(text []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(text))
	type frame struct {
		keys  map[string]bool
		isObj bool
		want  bool // the next string token of an object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return err.Error() != "EOF"
		}
		top := len(stack) - 1
		isKey := top >= 0 && stack[top].isObj && stack[top].want
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				if top >= 0 && stack[top].isObj {
					stack[top].want = true
				}
				stack = append(stack, frame{keys: map[string]bool{}, isObj: true, want: true})
			case '[':
				if top >= 0 && stack[top].isObj {
					stack[top].want = true
				}
				stack = append(stack, frame{})
			default:
				stack = stack[:top]
			}
			continue
		case string:
			if isKey {
				if stack[top].keys[tok] {
					return true
				}
				stack[top].keys[tok] = true
				stack[top].want = false
				continue
			}
		}
		if top >= 0 && stack[top].isObj {
			stack[top].want = true
		}
	}
}

// FuzzPostBody reads a POST body as the handler does and checks every
// request's identifier and send data: accepted ⇒ valid text Rails can
// take, a JSON object with a string "channel", compact, and the same
// through the other form (an object's text as a JSON string); refused ⇒ a
// reason.
func FuzzPostBody(f *testing.F) {
	for _, s := range []string{
		`[{"identifier":{"channel":"ChatChannel","room":"lobby"},"subscribe":true}]`,
		`[{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","subscribe":true}]`,
		`[{"identifier":{ "channel" : "ChatChannel" },"send":{"action":"speak", "text":"hi"}}]`,
		`[{"identifier":{"channel":"C"},"unsubscribe":true}]`,
		`[{"identifier":{"channel":"C","x":"\ud800"},"subscribe":true}]`,
		`[{"identifier":"{\"channel\":\"C\",\"x\":\"\\ud800\"}","subscribe":true}]`,
		`[{"identifier":"{\"channel\":\"C\",\"x\":\"\ud83d\ude00\"}","subscribe":true}]`,
		`[{"identifier":{"channel":"C"},"send":{"text":"\udc00\ud800"}}]`,
		`[{"identifier":{"channel":"C"},"send":{"text":"\\ud800"}}]`,
		`[{"identifier":{"channel":"C"},"send":"not an object"}]`,
		"[{\"identifier\":{\"channel\":\"C\\xff\"},\"subscribe\":true}]",
		`[{"identifier":{"channel":""},"subscribe":true}]`,
		`[{"identifier":{"channel":1},"subscribe":true}]`,
		`[{"identifier":"","subscribe":true}]`,
		`[{"identifier":null,"subscribe":true}]`,
		`[{"identifier":["channel"],"subscribe":true}]`,
		`[{"identifier":"[\"channel\"]","subscribe":true}]`,
		`[{"identifier":"\"{\\\"channel\\\":\\\"C\\\"}\"","subscribe":true}]`,
		`[{"identifier":{"channel":"C","channel":"D"},"subscribe":true}]`,
		`[{"identifier":{"channel":"\u0000"},"subscribe":true}]`,
		`[{"identifier":{"channel":"\ufffd"},"subscribe":true}]`,
		`null`, `{}`, `[]`, `[1]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var reqs []request
		if json.Unmarshal(body, &reqs) != nil {
			return
		}
		for _, req := range reqs {
			checkIdentifier(t, req.Identifier)
			if len(req.Send) > 0 {
				checkSend(t, req.Send)
			}
			checkTextRef(t, bytes.TrimSpace(req.Identifier))
		}
	})
}

func checkIdentifier(t *testing.T, raw json.RawMessage) {
	t.Helper()
	id, err := identifierOf(raw)
	if err != nil {
		if err.Error() == "" {
			t.Fatalf("identifierOf(%q): an error without a reason", raw)
		}
		return
	}
	if err := checkText([]byte(id)); err != nil || !utf8.ValidString(id) {
		t.Fatalf("identifierOf(%q) = %q, which is not valid text: %v", raw, id, err)
	}
	var fields map[string]json.RawMessage
	var channel string
	if json.Unmarshal([]byte(id), &fields) != nil || json.Unmarshal(fields["channel"], &channel) != nil || channel == "" {
		t.Fatalf("identifierOf(%q) = %q: not an object with a string channel", raw, id)
	}
	if t0 := bytes.TrimSpace(raw); t0[0] == '{' {
		var buf bytes.Buffer
		json.Compact(&buf, t0)
		if id != buf.String() {
			t.Fatalf("identifierOf(%q) = %q, want the compact object %q", raw, id, buf.String())
		}
	}
	// The same identifier as a JSON string: the same text for Rails.
	asString, _ := json.Marshal(id)
	if again, err := identifierOf(asString); err != nil || again != id {
		t.Fatalf("identifierOf(%q) = %q, but as the string %s: %q %v", raw, id, asString, again, err)
	}
	if chanIDOf(id) != chanIDOf(string([]byte(id))) || len(chanIDOf(id)) != 16 {
		t.Fatalf("chanIDOf(%q) = %q", id, chanIDOf(id))
	}
}

func checkSend(t *testing.T, raw json.RawMessage) {
	t.Helper()
	data, err := compactObject(raw)
	if err != nil {
		if err.Error() == "" {
			t.Fatalf("compactObject(%q): an error without a reason", raw)
		}
		return
	}
	if !json.Valid([]byte(data)) || data[0] != '{' || checkText([]byte(data)) != nil {
		t.Fatalf("compactObject(%q) = %q: not a valid object", raw, data)
	}
	var buf bytes.Buffer
	json.Compact(&buf, []byte(data))
	if buf.String() != data {
		t.Fatalf("compactObject(%q) = %q: not compact", raw, data)
	}
	checkTextRef(t, raw)
}

// FuzzCheckText compares checkText with encoding/json directly.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{
		`"a"`, `"\ud83d\ude00"`, `"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`, `"\\ud800"`,
		`"\\\ud800"`, `"\ufffd"`, `"\uFFFD\ud800"`, `{"\ud800":1}`, `["\ud800x"]`, `"\u00"`, "\"\xed\xa0\x80\"", `"\ud800\"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) { checkTextRef(t, text) })
}
