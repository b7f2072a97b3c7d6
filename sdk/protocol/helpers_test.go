package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// This file holds helpers shared by the tests: a MessagePack frame builder
// on top of vmihailenco/msgpack (so frames are built by an independent
// encoder, in a key order the test controls), Message comparison, error
// checks, and ordered reference decoders for both formats that the
// transcoding tests compare against.

// mpb builds MessagePack bytes with the msgpack library's low-level encoder.
type mpb struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newMP() *mpb {
	w := &mpb{}
	w.enc = msgpack.NewEncoder(&w.buf)
	return w
}

func (w *mpb) check(err error) *mpb {
	if err != nil {
		panic(err) // writing to a bytes.Buffer cannot fail
	}
	return w
}

func (w *mpb) Map(n int) *mpb     { return w.check(w.enc.EncodeMapLen(n)) }
func (w *mpb) Arr(n int) *mpb     { return w.check(w.enc.EncodeArrayLen(n)) }
func (w *mpb) Str(s string) *mpb  { return w.check(w.enc.EncodeString(s)) }
func (w *mpb) Bin(b []byte) *mpb  { return w.check(w.enc.EncodeBytes(b)) }
func (w *mpb) Int(n int64) *mpb   { return w.check(w.enc.EncodeInt(n)) }
func (w *mpb) Uint(n uint64) *mpb { return w.check(w.enc.EncodeUint(n)) }
func (w *mpb) F64(f float64) *mpb { return w.check(w.enc.EncodeFloat64(f)) }
func (w *mpb) F32(f float32) *mpb { return w.check(w.enc.EncodeFloat32(f)) }
func (w *mpb) Bool(b bool) *mpb   { return w.check(w.enc.EncodeBool(b)) }
func (w *mpb) Nil() *mpb          { return w.check(w.enc.EncodeNil()) }
func (w *mpb) Raw(b ...byte) *mpb { w.buf.Write(b); return w }
func (w *mpb) Value(v any) *mpb   { return w.check(w.enc.Encode(v)) }
func (w *mpb) Ext(id int8, data []byte) *mpb {
	w.check(w.enc.EncodeExtHeader(id, len(data)))
	w.buf.Write(data)
	return w
}

// KV writes a string key followed by a string value.
func (w *mpb) KV(k, v string) *mpb { return w.Str(k).Str(v) }

func (w *mpb) Bytes() []byte { return bytes.Clone(w.buf.Bytes()) }

// mpValue encodes one value with the library's default encoder.
func mpValue(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// msgEqual compares two Messages field by field. A nil and an empty
// Identifier are equal; Body must match in format and bytes.
func msgEqual(a, b *Message) bool {
	return a.Type == b.Type &&
		bytes.Equal(a.Identifier, b.Identifier) &&
		a.Body.Format() == b.Body.Format() &&
		bytes.Equal(a.Body.Bytes(), b.Body.Bytes()) &&
		a.Reason == b.Reason &&
		a.Reconnect == b.Reconnect &&
		a.HasReconnect == b.HasReconnect
}

func fmtMsg(m *Message) string {
	return fmt.Sprintf("{Type:%v Identifier:%q Body:%v/%q Reason:%q Reconnect:%v HasReconnect:%v}",
		m.Type, m.Identifier, m.Body.Format(), m.Body.Bytes(), m.Reason, m.Reconnect, m.HasReconnect)
}

// canonical returns the part of m that AppendMessage writes for m.Type:
// AppendMessage encodes each type with the keys Rails sends for it, so
// fields a frame carried for another type (an identifier on a ping, a
// reason on a confirm) do not survive a round trip. Tests compare the
// canonical form of the first decode with the second decode.
func canonical(m *Message) Message {
	c := Message{Type: m.Type}
	switch m.Type {
	case TypeMessage:
		c.Identifier, c.Body = m.Identifier, m.Body
	case TypeConfirm, TypeReject:
		c.Identifier = m.Identifier
	case TypeWelcome, TypePing:
		c.Body = m.Body
	case TypeDisconnect:
		c.Reason, c.Reconnect, c.HasReconnect = m.Reason, m.Reconnect, m.HasReconnect
	}
	return c
}

// wantDecodeError checks that err is a *DecodeError of codec wrapping
// sentinel, and returns it.
func wantDecodeError(t testing.TB, err error, codec string, sentinel error) *DecodeError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", sentinel)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v does not wrap %v", err, sentinel)
	}
	if de.Codec != codec {
		t.Errorf("DecodeError.Codec = %q, want %q", de.Codec, codec)
	}
	if err.Error() == "" {
		t.Error("empty error text")
	}
	return de
}

// fixUTF8 is what encoding/json makes of a string holding invalid UTF-8:
// every byte that does not start a valid sequence becomes U+FFFD.
func fixUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// randString returns a string built to stress JSON string encoding: ASCII,
// quotes, backslashes, every control character, '<>&', multi-byte runes,
// U+2028/U+2029, runes beyond the BMP, and, when invalid is set, bytes that
// are not UTF-8 (a stray continuation byte, 0xff, an encoded surrogate).
func randString(r *rand.Rand, invalid bool) string {
	pieces := []string{
		"a", "Z", "0", " ", "\"", "\\", "/", "<", ">", "&", "'", "\x7f",
		"é", "ß", "中", "\u2028", "\u2029", "\ufeff", "\ufffd", "😀", "\U0010ffff",
		"{", "}", "[", "]", ":", ",", `\u0041`, `\"`,
	}
	bad := []string{"\x80", "\xff", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}
	n := r.IntN(24)
	var b strings.Builder
	for range n {
		switch k := r.IntN(10); {
		case k == 0:
			b.WriteByte(byte(r.IntN(0x20))) // control character
		case k == 1 && invalid:
			b.WriteString(bad[r.IntN(len(bad))])
		default:
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
	}
	return b.String()
}

// ---- Ordered reference trees ----
//
// Both reference decoders build the same shapes: nil, bool, string, a
// number (refNum), []any for arrays and refObj (ordered members, duplicates
// kept) for objects/maps, so key order and duplicates are compared too.

type refMember struct {
	Key   string
	Value any
}

type refObj []refMember

// refNum is a number as each side holds it: the JSON text, or the
// MessagePack value (an integer kind, float32 or float64).
type refNum struct {
	text string // JSON side
	mp   any    // MessagePack side
}

// jsonRef decodes one JSON value with encoding/json's tokenizer, keeping
// member order, duplicates, and numbers as text.
func jsonRef(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := jsonRefValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the value: %v", err)
	}
	return v, nil
}

func jsonRefValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := jsonRefValue(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token()
			return arr, err
		case '{':
			obj := refObj{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := jsonRefValue(dec)
				if err != nil {
					return nil, err
				}
				obj = append(obj, refMember{k.(string), v})
			}
			_, err := dec.Token()
			return obj, err
		}
		return nil, fmt.Errorf("unexpected %v", tok)
	case json.Number:
		return refNum{text: string(tok)}, nil
	}
	return tok, nil // nil, bool, string
}

// mpRef decodes one MessagePack value with vmihailenco/msgpack, keeping map
// member order and duplicates. Keys must be strings or integers (the only
// keys the JSON transcoder accepts); bin values become their base64 text,
// as JSON() writes them.
func mpRef(b []byte) (any, error) {
	// The library's DecodeInterface allocates what an array header claims
	// before reading the elements; its Skip does not. Skip first, so only
	// structurally complete values (every count backed by input) are
	// decoded.
	skip := msgpack.NewDecoder(bytes.NewReader(b))
	if err := skip.Skip(); err != nil {
		return nil, err
	}
	if _, err := skip.PeekCode(); err != io.EOF {
		return nil, fmt.Errorf("data after the value")
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) {
		n, err := d.DecodeMapLen()
		if err != nil || n < 0 {
			return nil, err
		}
		obj := make(refObj, 0, min(n, 64))
		for range n {
			k, err := d.DecodeInterface()
			if err != nil {
				return nil, err
			}
			var key string
			switch k := k.(type) {
			case string:
				key = k
			case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
				key = fmt.Sprint(k)
			default:
				return nil, fmt.Errorf("map key of type %T", k)
			}
			v, err := d.DecodeInterface()
			if err != nil {
				return nil, err
			}
			obj = append(obj, refMember{key, v})
		}
		return obj, nil
	})
	v, err := dec.DecodeInterface()
	if err != nil {
		return nil, err
	}
	if _, err := dec.PeekCode(); err != io.EOF {
		return nil, fmt.Errorf("data after the value")
	}
	return mpNormalize(v), nil
}

func mpNormalize(v any) any {
	switch v := v.(type) {
	case nil, bool, string:
		return v
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case []any:
		for i := range v {
			v[i] = mpNormalize(v[i])
		}
		return v
	case refObj:
		for i := range v {
			v[i].Value = mpNormalize(v[i].Value)
		}
		return v
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64:
		return refNum{mp: v}
	}
	return fmt.Sprintf("unexpected %T", v)
}

// refEqual compares a MessagePack-side tree (from mpRef) with a JSON-side
// tree (from jsonRef). Strings compare after fixUTF8 (encoding/json turns
// invalid UTF-8 into U+FFFD, msgpack keeps the bytes). A number matches
// when the JSON text denotes exactly the MessagePack value: an integer
// equals the integer the text spells (so "-0" matches 0), a float64 equals
// the float64 nearest to the text, a float32 the float32 nearest to it.
func refEqual(mp, js any) error {
	switch m := mp.(type) {
	case nil:
		if js != nil {
			return fmt.Errorf("null vs %#v", js)
		}
	case bool:
		if j, ok := js.(bool); !ok || j != m {
			return fmt.Errorf("%v vs %#v", m, js)
		}
	case string:
		if j, ok := js.(string); !ok || fixUTF8(m) != j {
			return fmt.Errorf("%q vs %#v", m, js)
		}
	case []any:
		j, ok := js.([]any)
		if !ok || len(j) != len(m) {
			return fmt.Errorf("array of %d vs %#v", len(m), js)
		}
		for i := range m {
			if err := refEqual(m[i], j[i]); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	case refObj:
		j, ok := js.(refObj)
		if !ok || len(j) != len(m) {
			return fmt.Errorf("map of %d vs %#v", len(m), js)
		}
		for i := range m {
			if fixUTF8(m[i].Key) != j[i].Key {
				return fmt.Errorf("key %d: %q vs %q", i, m[i].Key, j[i].Key)
			}
			if err := refEqual(m[i].Value, j[i].Value); err != nil {
				return fmt.Errorf("%q: %w", j[i].Key, err)
			}
		}
	case refNum:
		j, ok := js.(refNum)
		if !ok {
			return fmt.Errorf("number %v vs %#v", m.mp, js)
		}
		if !numMatches(m.mp, j.text) {
			return fmt.Errorf("number %T(%v) vs %s", m.mp, m.mp, j.text)
		}
	default:
		return fmt.Errorf("unexpected %T", mp)
	}
	return nil
}

func numMatches(v any, text string) bool {
	switch v := v.(type) {
	case int8, int16, int32, int64:
		n, err := strconv.ParseInt(text, 10, 64)
		return err == nil && fmt.Sprint(n) == fmt.Sprint(v)
	case uint8, uint16, uint32, uint64:
		n, err := strconv.ParseUint(text, 10, 64)
		if err != nil { // "-0" spells the integer 0 too
			i, err2 := strconv.ParseInt(text, 10, 64)
			return err2 == nil && i == 0 && fmt.Sprint(v) == "0"
		}
		return fmt.Sprint(n) == fmt.Sprint(v)
	case float64:
		f, err := strconv.ParseFloat(text, 64)
		return err == nil && f == v
	case float32:
		f, err := strconv.ParseFloat(text, 32)
		return err == nil && float32(f) == v
	}
	return false
}

// jsonSemEqual reports whether two JSON texts hold the same value as
// encoding/json sees it (numbers as float64, objects as maps).
func jsonSemEqual(a, b []byte) (bool, error) {
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false, fmt.Errorf("first: %w", err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		return false, fmt.Errorf("second: %w", err)
	}
	return deepEqualJSON(va, vb), nil
}

func deepEqualJSON(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !deepEqualJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !deepEqualJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	default:
		return a == b // float64 compares -0 == 0, like JSON numbers
	}
}

// jsonDepth returns the deepest nesting of arrays and objects in valid JSON
// text (0 for a scalar).
func jsonDepth(b []byte) int {
	depth, deepest, inStr := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inStr:
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// scanComplete runs the package's JSON scanner on b as one complete value
// with optional surrounding whitespace, like json.Valid.
func scanComplete(b []byte) (bool, *jsonErr) {
	end, err := skipValue(b, skipWS(b, 0), 0)
	if err != nil {
		return false, err
	}
	return skipWS(b, end) == len(b), nil
}
