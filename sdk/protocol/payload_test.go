package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

type chatUser struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type chatEvent struct {
	Kind    string         `json:"kind"`
	Text    string         `json:"text,omitempty"`
	At      int64          `json:"sent_at"`
	Score   float64        `json:"score"`
	Tags    []string       `json:"tags"`
	User    chatUser       `json:"user"`
	Meta    map[string]any `json:"meta"`
	Ptr     *int           `json:"ptr"`
	Skipped string         `json:"-"`
	NoTag   bool
}

func TestPayloadDecode(t *testing.T) {
	seven := 7
	want := chatEvent{
		Kind: "message", Text: "hi \"you\"\n", At: 1700000000, Score: -1.25, Tags: []string{"a", "b"},
		User: chatUser{ID: 42, Name: "alice"}, Meta: map[string]any{"k": "v"}, Ptr: &seven, NoTag: true,
	}
	js := []byte(`{"kind":"message","text":"hi \"you\"\n","sent_at":1700000000,"score":-1.25,"tags":["a","b"],` +
		`"user":{"id":42,"name":"alice"},"meta":{"k":"v"},"ptr":7,"Skipped":"no","-":"no","NoTag":true,"unknown":[1]}`)
	// The same map, written by the msgpack library in a different key
	// order, with the struct's json tag names as keys.
	mp := newMP().Map(12).
		Str("unknown").Arr(1).Int(1).
		Str("user").Map(2).KV("name", "alice").Str("id").Int(42).
		KV("text", "hi \"you\"\n").
		KV("kind", "message").
		Str("sent_at").Int(1700000000).
		Str("score").F64(-1.25).
		Str("tags").Arr(2).Str("a").Str("b").
		Str("meta").Map(1).KV("k", "v").
		Str("ptr").Int(7).
		KV("Skipped", "no").
		KV("-", "no").
		Str("NoTag").Bool(true).Bytes()

	for _, p := range []Payload{RawJSON(js), RawMessagePack(mp)} {
		var got chatEvent
		if err := p.Decode(&got); err != nil {
			t.Fatalf("%v Decode: %v", p.Format(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v Decode:\n got  %+v\n want %+v", p.Format(), got, want)
		}
	}

	// Both paths honour the tags when the value arrived through the other
	// format too: transcode each way, decode again.
	viaMP, err := RawJSON(js).AppendMessagePack(nil)
	if err != nil {
		t.Fatal(err)
	}
	viaJSON, err := RawMessagePack(mp).JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Payload{RawMessagePack(viaMP), RawJSON(viaJSON)} {
		var got chatEvent
		if err := p.Decode(&got); err != nil {
			t.Fatalf("transcoded %v Decode: %v", p.Format(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("transcoded %v Decode:\n got  %+v\n want %+v", p.Format(), got, want)
		}
	}

	// Decoding a payload straight from a frame.
	var m Message
	frame := newMP().Map(2).KV("identifier", "x").Str("message").Raw(mp...).Bytes()
	if err := (MessagePackCodec{}).DecodeMessage(frame, &m); err != nil {
		t.Fatal(err)
	}
	var got chatEvent
	if err := m.Body.Decode(&got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("frame body Decode: %+v, %v", got, err)
	}

	// Errors.
	if err := (Payload{}).Decode(&got); !errors.Is(err, ErrInvalidField) {
		t.Errorf("zero Payload Decode: %v", err)
	}
	if err := RawJSON([]byte(`{"kind":1}`)).Decode(&got); err == nil {
		t.Error("JSON type mismatch accepted")
	}
	if err := RawMessagePack(newMP().Map(1).Str("kind").Int(1).Bytes()).Decode(&got); err == nil {
		t.Error("MessagePack type mismatch accepted")
	}
	if err := RawMessagePack([]byte{0x81, 0xa4}).Decode(&got); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated MessagePack: %v", err)
	}
	if err := RawMessagePack([]byte{0xc0, 0xc0}).Decode(&got); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing data: %v", err)
	}
}

// TestPayloadDecodeHostileLengths: an array or map header claiming far
// more elements than the payload holds must fail without allocating for
// them. (Before Decode checked the structure, the first of these asked the
// msgpack library for a 32 GiB slice and crashed the process.)
func TestPayloadDecodeHostileLengths(t *testing.T) {
	hostile := [][]byte{
		{0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01},
		{0xdd, 0xff, 0x00, 0x7f, 't', 'y', 'p', 'y'}, // found by FuzzPayloadTranscode
		{0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01},
		{0x81, 0xa1, 'a', 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01},
		{0x91, 0x91, 0xdc, 0xff, 0xff, 0x01},
		{0xdb, 0x7f, 0xff, 0xff, 0xff, 'x'},
		{0xc6, 0x7f, 0xff, 0xff, 0xff, 'x'},
	}
	for _, b := range hostile {
		var a any
		var s []string
		var st struct {
			A []any `json:"a"`
		}
		var m map[string]any
		for _, v := range []any{&a, &s, &st, &m} {
			allocs := testing.AllocsPerRun(10, func() {
				if err := RawMessagePack(b).Decode(v); !errors.Is(err, ErrMalformed) {
					t.Fatalf("Decode(% x) into %T = %v, want ErrMalformed", b, v, err)
				}
			})
			if allocs > 6 {
				t.Errorf("Decode(% x) into %T: %v allocs", b, v, allocs)
			}
		}
	}
}

func TestPayloadBasics(t *testing.T) {
	var zero Payload
	if !zero.IsZero() || zero.Format() != 0 || zero.Bytes() != nil || zero.String() != "<none>" {
		t.Errorf("zero Payload: %v %v %q %q", zero.IsZero(), zero.Format(), zero.Bytes(), zero.String())
	}
	if c := zero.Clone(); !c.IsZero() || c.Format() != 0 {
		t.Errorf("zero Clone: %+v", c)
	}
	if _, err := zero.JSON(); !errors.Is(err, ErrInvalidField) {
		t.Errorf("zero JSON: %v", err)
	}
	if _, err := zero.AppendMessagePack(nil); !errors.Is(err, ErrInvalidField) {
		t.Errorf("zero AppendMessagePack: %v", err)
	}
	// An empty, non-nil span is zero too.
	if !RawJSON([]byte{}).IsZero() {
		t.Error("RawJSON(empty) is not zero")
	}

	buf := []byte(`{"a":1}`)
	p := RawJSON(buf)
	c := p.Clone()
	buf[2] = 'X'
	if string(c.Bytes()) != `{"a":1}` || c.Format() != FormatJSON {
		t.Errorf("Clone shares memory: %q", c.Bytes())
	}
	if string(p.Bytes()) != `{"X":1}` {
		t.Errorf("RawJSON copied its input")
	}

	for f, want := range map[Format]string{FormatJSON: "json", FormatMessagePack: "msgpack", 0: "Format(0)", 9: "Format(9)"} {
		if f.String() != want {
			t.Errorf("Format(%d).String() = %q", f, f.String())
		}
	}

	mp, err := MarshalJSONPayload(map[string]any{"b": []int{1}, "a": "<"})
	if err != nil || mp.Format() != FormatJSON || string(mp.Bytes()) != `{"a":"\u003c","b":[1]}` {
		t.Errorf("MarshalJSONPayload = %q, %v", mp.Bytes(), err)
	}
	if _, err := MarshalJSONPayload(math.NaN()); err == nil {
		t.Error("MarshalJSONPayload(NaN) succeeded")
	}

	for _, tt := range []struct {
		p    Payload
		want string
	}{
		{RawJSON([]byte(`{"a":1}`)), `{"a":1}`},
		{RawMessagePack(newMP().Map(1).Str("a").Int(1).Bytes()), `{"a":1}`},
		{RawMessagePack([]byte{0xd4, 1, 1}), "<msgpack payload, 3 bytes: protocol: unsupported value: value has no JSON form (actioncable-v1-msgpack, offset 0)>"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}

	// Same-format appends copy verbatim.
	if got, err := RawJSON([]byte(`[1]`)).AppendJSON([]byte("x")); err != nil || string(got) != "x[1]" {
		t.Errorf("AppendJSON = %q, %v", got, err)
	}
	if got, err := RawMessagePack([]byte{0x91, 1}).AppendMessagePack([]byte{0xee}); err != nil || !bytes.Equal(got, []byte{0xee, 0x91, 1}) {
		t.Errorf("AppendMessagePack = % x, %v", got, err)
	}
}

func f32bits(f float32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0xca}, math.Float32bits(f))
}
func f64bits(f float64) []byte {
	return binary.BigEndian.AppendUint64([]byte{0xcb}, math.Float64bits(f))
}

// TestMsgpackToJSON: MessagePack values of every kind and their JSON text.
func TestMsgpackToJSON(t *testing.T) {
	tests := []struct {
		name string
		mp   []byte
		want string
	}{
		{"fixint 0", []byte{0x00}, `0`},
		{"fixint 127", []byte{0x7f}, `127`},
		{"negative fixint -1", []byte{0xff}, `-1`},
		{"negative fixint -32", []byte{0xe0}, `-32`},
		{"int8 -33", newMP().Int(-33).Bytes(), `-33`},
		{"int8 -128", []byte{0xd0, 0x80}, `-128`},
		{"int8 positive", []byte{0xd0, 0x05}, `5`},
		{"int16", newMP().Int(-30000).Bytes(), `-30000`},
		{"int32", newMP().Int(-2000000000).Bytes(), `-2000000000`},
		{"int64 min", newMP().Int(math.MinInt64).Bytes(), `-9223372036854775808`},
		{"int64 max as int64", []byte{0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, `9223372036854775807`},
		{"uint8", newMP().Uint(200).Bytes(), `200`},
		{"uint16", newMP().Uint(60000).Bytes(), `60000`},
		{"uint32", newMP().Uint(4000000000).Bytes(), `4000000000`},
		{"uint64 > int64 max", newMP().Uint(math.MaxInt64 + 1).Bytes(), `9223372036854775808`},
		{"uint64 max", newMP().Uint(math.MaxUint64).Bytes(), `18446744073709551615`},
		{"float32", newMP().F32(1.5).Bytes(), `1.5`},
		{"float32 0.1 shortest", newMP().F32(0.1).Bytes(), `0.1`},
		{"float64 0.1", newMP().F64(0.1).Bytes(), `0.1`},
		{"float64 -0", f64bits(math.Copysign(0, -1)), `-0`},
		{"float64 large", newMP().F64(1e21).Bytes(), `1e+21`},
		{"float64 small", newMP().F64(1e-7).Bytes(), `1e-7`},
		{"float64 1e6, as encoding/json writes it", newMP().F64(1e6).Bytes(), `1000000`},
		{"float64 below 1e21", newMP().F64(123456789e12).Bytes(), `123456789000000000000`},
		{"float32 large", newMP().F32(3e25).Bytes(), `3e+25`},
		{"float32 small", newMP().F32(1e-7).Bytes(), `1e-7`},
		{"float64 integral", newMP().F64(3).Bytes(), `3`},
		{"float64 max", newMP().F64(math.MaxFloat64).Bytes(), `1.7976931348623157e+308`},
		{"float64 denormal", newMP().F64(5e-324).Bytes(), `5e-324`},
		{"true", []byte{0xc3}, `true`},
		{"false", []byte{0xc2}, `false`},
		{"nil", []byte{0xc0}, `null`},
		{"empty string", []byte{0xa0}, `""`},
		{"string escapes", newMP().Str("a\"b\\c\n\t\r\x01\x1f/<>&é😀\u2028\x7f").Bytes(), `"a\"b\\c\n\t\r\u0001\u001f/<>&é😀` + "\u2028\x7f" + `"`},
		{"string invalid UTF-8 passes", newMP().Str("\xff").Bytes(), "\"\xff\""},
		{"str8", []byte{0xd9, 0x01, 'x'}, `"x"`},
		{"str16", []byte{0xda, 0x00, 0x01, 'x'}, `"x"`},
		{"str32", []byte{0xdb, 0x00, 0x00, 0x00, 0x01, 'x'}, `"x"`},
		{"bin to base64", newMP().Bin([]byte{0, 1, 2, 255}).Bytes(), `"AAEC/w=="`},
		{"empty bin", newMP().Bin([]byte{}).Bytes(), `""`},
		{"bin16", []byte{0xc5, 0x00, 0x03, 'a', 'b', 'c'}, `"YWJj"`},
		{"bin32", []byte{0xc6, 0x00, 0x00, 0x00, 0x01, 'a'}, `"YQ=="`},
		{"empty array", []byte{0x90}, `[]`},
		{"empty map", []byte{0x80}, `{}`},
		{"array16", []byte{0xdc, 0x00, 0x02, 0x01, 0x02}, `[1,2]`},
		{"array32", []byte{0xdd, 0x00, 0x00, 0x00, 0x01, 0xc0}, `[null]`},
		{"map16", []byte{0xde, 0x00, 0x01, 0xa1, 'k', 0x01}, `{"k":1}`},
		{"map32", []byte{0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 'k', 0x01}, `{"k":1}`},
		{"nested, order kept", newMP().Map(3).Str("z").Arr(2).Int(1).Map(1).KV("y", "x").Str("a").Map(0).Str("m").Arr(0).Bytes(),
			`{"z":[1,{"y":"x"}],"a":{},"m":[]}`},
		{"duplicate keys kept", newMP().Map(2).Str("a").Int(1).Str("a").Int(2).Bytes(), `{"a":1,"a":2}`},
		{"integer keys become strings", newMP().Map(5).Int(1).Str("a").Int(-5).Str("b").Uint(math.MaxUint64).Str("c").Int(math.MinInt64).Str("d").Raw(0xcc, 200).Str("e").Bytes(),
			`{"1":"a","-5":"b","18446744073709551615":"c","-9223372036854775808":"d","200":"e"}`},
		{"escaped string key", newMP().Map(1).Str("a\"\n").Int(1).Bytes(), `{"a\"\n":1}`},
	}
	for _, tt := range tests {
		got, err := RawMessagePack(tt.mp).AppendJSON([]byte("pre"))
		if err != nil {
			t.Errorf("%s: JSON(% x): %v", tt.name, tt.mp, err)
			continue
		}
		if string(got) != "pre"+tt.want {
			t.Errorf("%s: JSON(% x)\n got  %s\n want pre%s", tt.name, tt.mp, got, tt.want)
		}
		if !json.Valid(got[3:]) {
			t.Errorf("%s: %q is not valid JSON", tt.name, got[3:])
		}
		// The library reads the original as the same value.
		if mref, err := mpRef(tt.mp); err == nil {
			jref, err := jsonRef(got[3:])
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			} else if err := refEqual(mref, jref); err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
		} else {
			t.Errorf("%s: msgpack library: %v", tt.name, err)
		}
	}
}

func TestMsgpackToJSONErrors(t *testing.T) {
	tests := []struct {
		name     string
		mp       []byte
		sentinel error
	}{
		{"empty", nil, ErrMalformed},
		{"0xc1", []byte{0xc1}, ErrMalformed},
		{"trailing byte", []byte{0x01, 0x02}, ErrMalformed},
		{"truncated string", []byte{0xa3, 'a'}, ErrMalformed},
		{"truncated array", []byte{0x92, 0x01}, ErrMalformed},
		{"truncated map value", []byte{0x81, 0xa1, 'a'}, ErrMalformed},
		{"truncated float", []byte{0xcb, 0, 0}, ErrMalformed},
		{"truncated uint64", []byte{0xcf, 0, 0}, ErrMalformed},
		{"truncated str8 header", []byte{0xd9}, ErrMalformed},
		{"truncated key", []byte{0x81, 0xa5, 'k'}, ErrMalformed},
		{"fixext1", []byte{0xd4, 0x01, 0x02}, ErrUnsupported},
		{"fixext16", append([]byte{0xd8, 0x01}, make([]byte, 16)...), ErrUnsupported},
		{"ext8", newMP().Ext(5, []byte{1, 2, 3}).Bytes(), ErrUnsupported},
		{"ext16", append([]byte{0xc8, 0x01, 0x00, 0x05}, make([]byte, 256)...), ErrUnsupported},
		{"timestamp ext", mpValue(struct{}{})[:0:0], ErrMalformed}, // placeholder replaced below
		{"ext in a map", newMP().Map(1).Str("t").Ext(-1, []byte{0, 0, 0, 1}).Bytes(), ErrUnsupported},
		{"ext as a key", newMP().Map(1).Ext(1, []byte{1}).Int(1).Bytes(), ErrUnsupported},
		{"NaN float64", f64bits(math.NaN()), ErrUnsupported},
		{"NaN float32", f32bits(float32(math.NaN())), ErrUnsupported},
		{"+Inf", f64bits(math.Inf(1)), ErrUnsupported},
		{"-Inf float32", f32bits(float32(math.Inf(-1))), ErrUnsupported},
		{"NaN nested", newMP().Arr(1).Map(1).Str("x").F64(math.NaN()).Bytes(), ErrUnsupported},
		{"nil key", newMP().Map(1).Nil().Int(1).Bytes(), ErrUnsupported},
		{"bool key", newMP().Map(1).Bool(true).Int(1).Bytes(), ErrUnsupported},
		{"float key", newMP().Map(1).F64(1.5).Int(1).Bytes(), ErrUnsupported},
		{"float32 key", newMP().Map(1).F32(-2).Int(1).Bytes(), ErrUnsupported},
		{"array key", newMP().Map(1).Arr(0).Int(1).Bytes(), ErrUnsupported},
		{"map key", newMP().Map(1).Map(0).Int(1).Bytes(), ErrUnsupported},
		{"bin key", newMP().Map(1).Bin([]byte("k")).Int(1).Bytes(), ErrUnsupported},
		// Malformed wins over unsupported, whichever comes first.
		{"ext then truncated", []byte{0x92, 0xd4, 0x01, 0x02, 0xa3, 'x'}, ErrMalformed},
		{"NaN then trailing byte", append(f64bits(math.NaN()), 0x00), ErrMalformed},
		{"float key then truncated", []byte{0x82, 0xca, 0, 0, 0, 0, 0x01, 0xa1}, ErrMalformed},
	}
	// A timestamp, as the msgpack library writes time.Time.
	tests[14].mp = newMP().Ext(-1, []byte{0, 0, 0, 1}).Bytes()
	tests[14].sentinel = ErrUnsupported
	for _, tt := range tests {
		dst := []byte("keep")
		got, err := RawMessagePack(tt.mp).AppendJSON(dst)
		if err == nil {
			t.Errorf("%s: JSON(% x) = %s, want an error", tt.name, tt.mp, got)
			continue
		}
		wantDecodeError(t, err, SubprotocolMessagePack, tt.sentinel)
		if string(got) != "keep" {
			t.Errorf("%s: dst = %q after the error", tt.name, got)
		}
		if s := RawMessagePack(tt.mp).String(); !strings.HasPrefix(s, "<msgpack payload") && len(tt.mp) > 0 {
			t.Errorf("%s: String() = %q", tt.name, s)
		}
	}
}

// TestJSONToMsgpack: JSON values and the MessagePack bytes they become.
func TestJSONToMsgpack(t *testing.T) {
	tests := []struct {
		js   string
		want []byte
	}{
		{`0`, []byte{0x00}},
		{`-0`, []byte{0x00}},
		{`127`, []byte{0x7f}},
		{`128`, []byte{0xd1, 0x00, 0x80}}, // integers are written in signed forms
		{`200`, []byte{0xd1, 0x00, 0xc8}},
		{`-1`, []byte{0xff}},
		{`-32`, []byte{0xe0}},
		{`-33`, []byte{0xd0, 0xdf}},
		{`-129`, []byte{0xd1, 0xff, 0x7f}},
		{`70000`, []byte{0xd2, 0x00, 0x01, 0x11, 0x70}},
		{`9223372036854775807`, []byte{0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{`-9223372036854775808`, []byte{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}},
		{`9223372036854775808`, []byte{0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0}},
		{`18446744073709551615`, []byte{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{`18446744073709551616`, f64bits(18446744073709551616)},
		{`-9223372036854775809`, f64bits(-9223372036854775809)},
		{`1.5`, f64bits(1.5)},
		{`1.0`, f64bits(1)},
		{`-0.0`, f64bits(math.Copysign(0, -1))},
		{`1e2`, f64bits(100)},
		{`1E-2`, f64bits(0.01)},
		{`1e-400`, f64bits(0)}, // underflow rounds to zero, as strconv does
		{`true`, []byte{0xc3}},
		{`false`, []byte{0xc2}},
		{`null`, []byte{0xc0}},
		{`""`, []byte{0xa0}},
		{`"x"`, []byte{0xa1, 'x'}},
		{`"a\"b\\c\/d\n\u00e9\ud83d\ude00\ud800"`, newMP().Str("a\"b\\c/d\né😀\ufffd").Bytes()},
		{`"` + strings.Repeat("y", 40) + `"`, newMP().Str(strings.Repeat("y", 40)).Bytes()},
		{`[]`, []byte{0x90}},
		{`{}`, []byte{0x80}},
		{` [ 1 , [ ] , { } ] `, []byte{0x93, 0x01, 0x90, 0x80}},
		{`{"b":1,"a":[true,null]}`, newMP().Map(2).Str("b").Int(1).Str("a").Arr(2).Bool(true).Nil().Bytes()},
		{`{"k\u00e9y":1,"k":2,"k":3}`, newMP().Map(3).Str("kéy").Int(1).Str("k").Int(2).Str("k").Int(3).Bytes()},
		{`[` + strings.Repeat(`1,`, 20) + `1]`, append(newMP().Arr(21).Bytes(), bytes.Repeat([]byte{1}, 21)...)},
	}
	for _, tt := range tests {
		got, err := RawJSON([]byte(tt.js)).AppendMessagePack([]byte{0xee})
		if err != nil {
			t.Errorf("MessagePack(%s): %v", tt.js, err)
			continue
		}
		if !bytes.Equal(got, append([]byte{0xee}, tt.want...)) {
			t.Errorf("MessagePack(%s)\n got  % x\n want ee % x", tt.js, got, tt.want)
		}
	}
	// A large object and array take 16- and 32-bit headers.
	for _, n := range []int{15, 16, 65535, 65536} {
		var obj, arr strings.Builder
		obj.WriteByte('{')
		arr.WriteByte('[')
		for i := range n {
			if i > 0 {
				obj.WriteByte(',')
				arr.WriteByte(',')
			}
			fmt.Fprintf(&obj, `"%d":%d`, i, i%100)
			arr.WriteString("0")
		}
		obj.WriteByte('}')
		arr.WriteByte(']')
		for _, js := range []string{obj.String(), arr.String()} {
			mp, err := RawJSON([]byte(js)).AppendMessagePack(nil)
			if err != nil {
				t.Fatalf("%d members: %v", n, err)
			}
			back, err := RawMessagePack(mp).JSON()
			if err != nil || string(back) != js {
				t.Errorf("%d members: back %d bytes, %v", n, len(back), err)
			}
			mref, err := mpRef(mp)
			if err != nil {
				t.Fatalf("%d members: msgpack library: %v", n, err)
			}
			jref, _ := jsonRef([]byte(js))
			if err := refEqual(mref, jref); err != nil {
				t.Errorf("%d members: %v", n, err)
			}
		}
	}
}

func TestJSONToMsgpackErrors(t *testing.T) {
	tests := []struct {
		js       string
		sentinel error
	}{
		{``, ErrMalformed},
		{` `, ErrMalformed},
		{`{`, ErrMalformed},
		{`[1,]`, ErrMalformed},
		{`[1] x`, ErrMalformed},
		{`01`, ErrMalformed},
		{`1.`, ErrMalformed},
		{`-`, ErrMalformed},
		{`1e`, ErrMalformed},
		{`NaN`, ErrMalformed},
		{`"\x"`, ErrMalformed},
		{"\"\x01\"", ErrMalformed},
		{`{"a":}`, ErrMalformed},
		{`{"a":1 "b":2}`, ErrMalformed},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), ErrMalformed},
		{strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1), ErrMalformed},
		{strings.Repeat("[", 100000), ErrMalformed},
		// Valid JSON whose number no float64 holds: MessagePack could only
		// carry ±Inf, which JSON cannot, so it is refused.
		{`1e400`, ErrUnsupported},
		{`-1e400`, ErrUnsupported},
		{`{"a":[1e309]}`, ErrUnsupported},
		// Malformed wins over unsupported, whichever comes first.
		{`1e700A`, ErrMalformed},
		{`{"a":1e400} x`, ErrMalformed},
		{`[1e400,]`, ErrMalformed},
	}
	for _, tt := range tests {
		got, err := RawJSON([]byte(tt.js)).AppendMessagePack([]byte("keep"))
		if err == nil {
			t.Errorf("MessagePack(%.40s) = % x, want an error", tt.js, got)
			continue
		}
		wantDecodeError(t, err, SubprotocolJSON, tt.sentinel)
		if string(got) != "keep" {
			t.Errorf("MessagePack(%.40s): dst = %q after the error", tt.js, got)
		}
	}
	// Exactly maxDepth levels is fine, in both directions.
	deep := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	mp, err := RawJSON([]byte(deep)).AppendMessagePack(nil)
	if err != nil {
		t.Fatalf("%d levels: %v", maxDepth, err)
	}
	if back, err := RawMessagePack(mp).JSON(); err != nil || string(back) != deep {
		t.Errorf("%d levels back: %v", maxDepth, err)
	}
	tooDeep := append(bytes.Repeat([]byte{0x91}, maxDepth), 0x90)
	if _, err := RawMessagePack(tooDeep).JSON(); !errors.Is(err, ErrMalformed) {
		t.Errorf("%d levels of MessagePack: %v", maxDepth+1, err)
	}
}

// randJSON writes a random JSON value: every kind, odd number spellings,
// strings from randString (valid UTF-8, so encoding/json agrees on them),
// random whitespace.
func randJSON(r *rand.Rand, b *strings.Builder, depth int) {
	ws := func() {
		if r.IntN(4) == 0 {
			b.WriteString([]string{" ", "\n", "\t", "\r", "  "}[r.IntN(5)])
		}
	}
	ws()
	k := r.IntN(10)
	if depth > 6 {
		k = r.IntN(6)
	}
	switch k {
	case 0:
		b.WriteString([]string{"true", "false", "null"}[r.IntN(3)])
	case 1, 2:
		nums := []string{"0", "-0", "1", "-1", "127", "128", "-32", "-33", "255", "256", "-129", "65535", "65536",
			"2147483647", "2147483648", "-2147483649", "9223372036854775807", "9223372036854775808",
			"-9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616",
			"1.5", "-0.0", "0.1", "1e2", "1E+2", "1e-2", "123456789.123456789", "5e-324", "1.7976931348623157e308",
			"1e-400", "0.30000000000000004", "100000000000000000000000"}
		if r.IntN(3) == 0 {
			b.WriteString(strconv.FormatInt(r.Int64()>>r.IntN(64)*int64(1-2*r.IntN(2)), 10))
		} else {
			b.WriteString(nums[r.IntN(len(nums))])
		}
	case 3, 4, 5:
		s, _ := json.Marshal(randString(r, false))
		b.Write(s)
	case 6, 7:
		b.WriteByte('[')
		n := r.IntN(5)
		for i := range n {
			if i > 0 {
				ws()
				b.WriteByte(',')
			}
			randJSON(r, b, depth+1)
		}
		ws()
		b.WriteByte(']')
	default:
		b.WriteByte('{')
		n := r.IntN(5)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			ws()
			key, _ := json.Marshal(randString(r, false))
			b.Write(key)
			ws()
			b.WriteByte(':')
			randJSON(r, b, depth+1)
		}
		ws()
		b.WriteByte('}')
	}
	ws()
}

// TestTranscodeCrossCheck: random JSON, transcoded by jsonToMsgpack, read
// by the msgpack library, must hold what encoding/json reads from the JSON
// (member order and duplicates included); and it must come back as JSON
// with the same value.
func TestTranscodeCrossCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		var b strings.Builder
		randJSON(r, &b, 0)
		js := []byte(b.String())
		if !json.Valid(js) {
			t.Fatalf("generator wrote invalid JSON: %s", js)
		}
		mp, err := jsonToMsgpack(nil, js)
		if err != nil {
			t.Fatalf("jsonToMsgpack(%s): %v", js, err)
		}
		mref, err := mpRef(mp)
		if err != nil {
			t.Fatalf("msgpack library rejects jsonToMsgpack(%s) = % x: %v", js, mp, err)
		}
		jref, err := jsonRef(js)
		if err != nil {
			t.Fatalf("encoding/json rejects %s: %v", js, err)
		}
		if err := refEqual(mref, jref); err != nil {
			t.Fatalf("jsonToMsgpack(%s): %v", js, err)
		}
		back, err := msgpackToJSON(nil, mp)
		if err != nil {
			t.Fatalf("msgpackToJSON(jsonToMsgpack(%s)): %v", js, err)
		}
		if eq, err := jsonSemEqual(js, back); err != nil || !eq {
			t.Fatalf("JSON %s came back as %s (%v)", js, back, err)
		}
		// Our JSON output is canonical, so transcoding it again is stable,
		// byte for byte, with one exception: a float -0 is written "-0",
		// which reads back as the integer 0 (the same JSON number).
		mp2, err := jsonToMsgpack(nil, back)
		if err != nil {
			t.Fatal(err)
		}
		back2, err := msgpackToJSON(nil, mp2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, back2) && !bytes.Contains(back, []byte("-0")) {
			t.Fatalf("second trip: %s vs %s", back, back2)
		}
		if eq, err := jsonSemEqual(back, back2); err != nil || !eq {
			t.Fatalf("second trip: %s vs %s (%v)", back, back2, err)
		}
	}
}

// TestMsgpackToJSONCrossCheck: random values encoded by the msgpack
// library, transcoded to JSON, compared with the library's own reading.
func TestMsgpackToJSONCrossCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var gen func(w *mpb, depth int)
	gen = func(w *mpb, depth int) {
		k := r.IntN(14)
		if depth > 5 {
			k = r.IntN(10)
		}
		switch k {
		case 0:
			w.Nil()
		case 1:
			w.Bool(r.IntN(2) == 0)
		case 2:
			w.Int(r.Int64() >> r.IntN(64) * int64(1-2*r.IntN(2)))
		case 3:
			w.Uint(r.Uint64() >> r.IntN(64))
		case 4:
			w.F64(math.Float64frombits(r.Uint64()&^(0x7ff<<52) | uint64(r.IntN(0x7ff))<<52)) // never NaN/Inf
		case 5:
			w.F32(float32(r.NormFloat64() * 1e6))
		case 6, 7:
			w.Str(randString(r, r.IntN(4) == 0))
		case 8, 9:
			b := make([]byte, r.IntN(20))
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			w.Bin(b)
		case 10, 11:
			n := r.IntN(5)
			w.Arr(n)
			for range n {
				gen(w, depth+1)
			}
		default:
			n := r.IntN(5)
			w.Map(n)
			for range n {
				if r.IntN(5) == 0 {
					w.Int(r.Int64() >> r.IntN(64))
				} else {
					w.Str(randString(r, r.IntN(4) == 0))
				}
				gen(w, depth+1)
			}
		}
	}
	for range 3000 {
		w := newMP()
		gen(w, 0)
		mp := w.Bytes()
		js, err := msgpackToJSON(nil, mp)
		if err != nil {
			t.Fatalf("msgpackToJSON(% x): %v", mp, err)
		}
		if !json.Valid(js) {
			t.Fatalf("msgpackToJSON(% x) = %q is not valid JSON", mp, js)
		}
		mref, err := mpRef(mp)
		if err != nil {
			t.Fatal(err)
		}
		jref, err := jsonRef(js)
		if err != nil {
			t.Fatal(err)
		}
		if err := refEqual(mref, jref); err != nil {
			t.Fatalf("msgpackToJSON(% x) = %s: %v", mp, js, err)
		}
	}
}
