package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The decode tests hold Payload.Decode to encoding/json: for JSON payloads
// the fast decoder must give what json.Unmarshal gives (the same value, an
// error exactly when it errs), and a MessagePack payload must decode as
// json.Unmarshal decodes its JSON form. Values are compared only when no
// error is returned: which fields are set on error is unspecified.

type decInner struct {
	ID   int `json:"id"`
	Name string
}

type decText string

func (t *decText) UnmarshalText(b []byte) error {
	if string(b) == "bad" {
		return errors.New("bad text")
	}
	*t = decText("<" + string(b) + ">")
	return nil
}

type decJSONer struct{ Raw string }

func (u *decJSONer) UnmarshalJSON(b []byte) error {
	if string(b) == `"fail"` {
		return errors.New("fail")
	}
	u.Raw = string(b)
	return nil
}

// decRich has one field of each shape the direct MessagePack path handles,
// plus fields it hands to the JSON decoder.
type decRich struct {
	Kind     string    `json:"kind"`
	Text     string    `json:"text,omitempty"`
	SentAt   int64     `json:"sent_at"`
	Score    float64   `json:"score"`
	Small    float32   `json:"small"`
	Tiny     int8      `json:"tiny"`
	Byte     uint8     `json:"byte"`
	U        uint64    `json:"u"`
	Ok       bool      `json:"ok"`
	Tags     []string  `json:"tags"`
	Pair     [2]int    `json:"pair"`
	User     *decInner `json:"user"`
	Users    map[string]*decInner
	Meta     map[string]any     `json:"meta"`
	Counts   map[string]int     `json:"counts"`
	Any      any                `json:"any"`
	List     []any              `json:"list"`
	PP       **int              `json:"pp"`
	Num      json.Number        `json:"num"`
	RawMsg   json.RawMessage    `json:"raw"`
	Bytes    []byte             `json:"bytes"`
	When     time.Time          `json:"when"`
	Text2    decText            `json:"text2"`
	Custom   decJSONer          `json:"custom"`
	CustomP  *decJSONer         `json:"customp"`
	IntKeys  map[int]string     `json:"intkeys"`
	TextKeys map[decText]int    `json:"textkeys"`
	Err      error              `json:"err"`
	Skipped  string             `json:"-"`
	Dash     string             `json:"-,"`
	NoTag    bool               //
	Kelvin   int                `json:"K"`
	LongS    int                `json:"ſ"`
	A        int                // loses to the tagged B
	B        int                `json:"A"`
	Bad      string             `json:"bad name"`
	Odd      string             `json:"ümlaut"`
	Nested   struct{ X, Y int } `json:"nested"`
	private  int
}

type decEmbedded struct {
	E1 int
	E2 string `json:"e2"`
}

// decEmbedding is left to the JSON decoder as a whole (embedded fields,
// ",string").
type decEmbedding struct {
	decEmbedded
	*decInner
	Q int64 `json:"q,string"`
	R bool  `json:",string"`
}

// decTargets returns fresh values to decode into, one per shape.
func decTargets() []any {
	return []any{
		new(any), new(benchTick), new(benchLine), new(decRich), new(decEmbedding),
		new(map[string]any), new([]any), new(map[string]int), new([]float32), new(string),
		new(int), new(uint16), new(*float64), new([3]bool), new(map[string]decRich),
	}
}

// decodeAgrees checks that the payload p decodes into every target as
// json.Unmarshal decodes js (nil when the payload has no JSON form: then
// Decode must fail).
func decodeAgrees(t *testing.T, p Payload, js []byte) {
	t.Helper()
	decodeAgreesInto(t, p, js, decTargets())
}

func decodeAgreesInto(t *testing.T, p Payload, js []byte, targets []any) {
	t.Helper()
	for _, target := range targets {
		got := reflect.New(reflect.TypeOf(target).Elem()).Interface()
		gerr := p.Decode(got)
		if js == nil {
			if gerr == nil {
				t.Fatalf("%v payload % x with no JSON form decoded into %T: %+v", p.Format(), p.Bytes(), target, got)
			}
			continue
		}
		werr := json.Unmarshal(js, target)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%v payload %s into %T: Decode error %v, encoding/json error %v", p.Format(), p, target, gerr, werr)
		}
		if gerr == nil && !reflect.DeepEqual(got, target) {
			t.Fatalf("%v payload %s into %T:\n Decode       %s\n encoding/json %s", p.Format(), p, target, show(got), show(target))
		}
	}
}

func show(v any) string { return fmt.Sprintf("%+v", reflect.ValueOf(v).Elem()) }

// TestDecodeCodecsAgree: one struct decodes the same from JSON and from
// MessagePack written by an independent encoder, and as encoding/json
// decodes the JSON.
func TestDecodeCodecsAgree(t *testing.T) {
	// The README's chat line (issue 9: over MessagePack, lower-case keys
	// left struct{ User, Text string } empty with no error).
	var line struct{ User, Text string }
	mp := newMP().Map(2).KV("user", "alice").KV("text", "hi").Bytes()
	if err := RawMessagePack(mp).Decode(&line); err != nil || line.User != "alice" || line.Text != "hi" {
		t.Fatalf("MessagePack {user, text} into struct{ User, Text string }: %+v, %v", line, err)
	}

	cases := []struct {
		name string
		js   string
		mp   []byte
	}{
		{"tick", `{"seq":1,"ts":1764910000123456789,"pad":"xx"}`,
			newMP().Map(3).Str("seq").Int(1).Str("ts").Int(1764910000123456789).KV("pad", "xx").Bytes()},
		{"case-insensitive names, last key wins", `{"SEQ":1,"Seq":2,"user":"a","USER":"b","Text":"t"}`,
			newMP().Map(5).Str("SEQ").Int(1).Str("Seq").Int(2).KV("user", "a").KV("USER", "b").KV("Text", "t").Bytes()},
		{"Unicode folding", `{"\u212a":1,"S":2,"Ümlaut":"u","a":3,"c":4}`,
			newMP().Map(5).Str("\u212a").Int(1).Str("S").Int(2).KV("Ümlaut", "u").Str("a").Int(3).Str("c").Int(4).Bytes()},
		{"rich", `{"kind":"k","text":"t","sent_at":-7,"score":1.25,"small":0.1,"tiny":-8,"byte":255,"u":18446744073709551615,` +
			`"ok":true,"tags":["a","b"],"pair":[1,2,3],"user":{"ID":4,"name":"n"},"users":{"x":{"id":1},"y":null},` +
			`"meta":{"a":[1,"b",null,{}]},"counts":{"a":1},"any":1e300,"list":[true,0.5],"pp":5,"num":12.5,"raw":{"r":[1]},` +
			`"bytes":"AAEC","when":"2026-01-02T03:04:05Z","text2":"t2","custom":{"c":1},"customp":[1],"intkeys":{"1":"a","-2":"b"},` +
			`"textkeys":{"k":1},"err":null,"-":"dash","notag":true,"bad name":"x","Bad":"y","nested":{"x":1,"Y":2},"private":1}`,
			newMP().Map(34).KV("kind", "k").KV("text", "t").Str("sent_at").Int(-7).Str("score").F64(1.25).Str("small").F64(0.1).
				Str("tiny").Int(-8).Str("byte").Uint(255).Str("u").Uint(math.MaxUint64).Str("ok").Bool(true).
				Str("tags").Arr(2).Str("a").Str("b").Str("pair").Arr(3).Int(1).Int(2).Int(3).
				Str("user").Map(2).Str("ID").Int(4).KV("name", "n").
				Str("users").Map(2).Str("x").Map(1).Str("id").Int(1).Str("y").Nil().
				Str("meta").Map(1).Str("a").Arr(4).Int(1).Str("b").Nil().Map(0).Str("counts").Map(1).Str("a").Int(1).
				Str("any").F64(1e300).Str("list").Arr(2).Bool(true).F64(0.5).Str("pp").Int(5).Str("num").F64(12.5).
				Str("raw").Map(1).Str("r").Arr(1).Int(1).Str("bytes").Bin([]byte{0, 1, 2}).
				KV("when", "2026-01-02T03:04:05Z").KV("text2", "t2").Str("custom").Map(1).Str("c").Int(1).Str("customp").Arr(1).Int(1).
				Str("intkeys").Map(2).Int(1).Str("a").Int(-2).Str("b").Str("textkeys").Map(1).Str("k").Int(1).Str("err").Nil().
				KV("-", "dash").Str("notag").Bool(true).KV("bad name", "x").KV("Bad", "y").
				Str("nested").Map(2).Str("x").Int(1).Str("Y").Int(2).Str("private").Int(1).Bytes()},
		{"embedded and ,string", `{"e1":1,"E2":"x","id":2,"name":"n","q":"12","R":"true"}`,
			newMP().Map(6).Str("e1").Int(1).KV("E2", "x").Str("id").Int(2).KV("name", "n").KV("q", "12").KV("R", "true").Bytes()},
		{"integral floats read into integers", `{"seq":1000000,"ts":-3,"sent_at":100}`,
			newMP().Map(3).Str("seq").F64(1e6).Str("ts").F64(-3).Str("sent_at").F32(100).Bytes()},
		{"type mismatch", `{"seq":"1"}`, newMP().Map(1).KV("seq", "1").Bytes()},
		{"fraction into integer", `{"seq":1.5}`, newMP().Map(1).Str("seq").F64(1.5).Bytes()},
		{"overflow", `{"tiny":200,"byte":-1}`, newMP().Map(2).Str("tiny").Int(200).Str("byte").Int(-1).Bytes()},
		{"UnmarshalJSON error", `{"custom":"fail"}`, newMP().Map(1).KV("custom", "fail").Bytes()},
		{"UnmarshalText error", `{"text2":"bad"}`, newMP().Map(1).KV("text2", "bad").Bytes()},
		{"invalid UTF-8 becomes U+FFFD", "{\"kind\":\"a\xff\xfeb\",\"k\xff\":1}",
			newMP().Map(2).KV("kind", "a\xff\xfeb").Str("k\xff").Int(1).Bytes()},
		{"null everywhere", `{"user":null,"tags":null,"meta":null,"kind":null,"pp":null,"any":null,"seq":null}`,
			newMP().Map(7).Str("user").Nil().Str("tags").Nil().Str("meta").Nil().Str("kind").Nil().Str("pp").Nil().
				Str("any").Nil().Str("seq").Nil().Bytes()},
		{"array", `[1,"a",null,[],{"x":1}]`, newMP().Arr(5).Int(1).Str("a").Nil().Arr(0).Map(1).Str("x").Int(1).Bytes()},
		{"big integers", `[9007199254740993,-9007199254740993,18446744073709551615,3]`,
			newMP().Arr(4).Int(9007199254740993).Int(-9007199254740993).Uint(math.MaxUint64).F32(3).Bytes()},
		{"scalars", `null`, newMP().Nil().Bytes()},
		{"string", `"s"`, newMP().Str("s").Bytes()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			decodeAgrees(t, RawJSON([]byte(c.js)), []byte(c.js))
			decodeAgrees(t, RawMessagePack(c.mp), []byte(c.js))
		})
	}

	// Values with no JSON form are refused like Payload.JSON refuses them.
	for _, b := range [][]byte{
		newMP().Map(2).KV("seq", "1").Str("x").Ext(1, []byte{1}).Bytes(),
		newMP().Map(1).Str("pad").F64(math.NaN()).Bytes(),
		newMP().Map(1).Bin([]byte("seq")).Int(1).Bytes(),
		append(newMP().Map(1).Str("seq").Int(1).Bytes(), 0xc0),
		[]byte(strings.Repeat("\x91", maxDepth+1) + "\x01"),
	} {
		p := RawMessagePack(b)
		if _, err := p.JSON(); err == nil {
			t.Fatalf("% x has a JSON form", b)
		}
		decodeAgrees(t, p, nil)
	}

	// Errors are encoding/json's types.
	for _, p := range []Payload{RawJSON([]byte(`{"seq":"1"}`)), RawMessagePack(newMP().Map(1).KV("seq", "1").Bytes())} {
		var tick benchTick
		var te *json.UnmarshalTypeError
		if err := p.Decode(&tick); !errors.As(err, &te) || te.Field != "seq" && te.Field != "Seq" {
			t.Errorf("%v type mismatch: %v (%T), want a *json.UnmarshalTypeError for seq", p.Format(), err, err)
		}
	}
	nested := `{"kind":"k","user":{"id":"x"},"tiny":"y"}`
	var want *json.UnmarshalTypeError
	if !errors.As(json.Unmarshal([]byte(nested), new(decRich)), &want) {
		t.Fatal("encoding/json accepts", nested)
	}
	for _, p := range []Payload{RawJSON([]byte(nested)), RawMessagePack(newMP().Map(3).KV("kind", "k").Str("user").Map(1).KV("id", "x").KV("tiny", "y").Bytes())} {
		var te *json.UnmarshalTypeError
		if err := p.Decode(new(decRich)); !errors.As(err, &te) || te.Field != want.Field || te.Struct != want.Struct {
			t.Errorf("%v nested type mismatch: %v, want %v", p.Format(), err, want)
		}
	}
	var se *json.SyntaxError
	if err := RawJSON([]byte(`{"seq":1`)).Decode(new(benchTick)); !errors.As(err, &se) {
		t.Errorf("truncated JSON: %v (%T), want a *json.SyntaxError", err, err)
	}

	// Not a pointer.
	for _, p := range []Payload{RawJSON([]byte(`{}`)), RawMessagePack([]byte{0x80})} {
		var tick benchTick
		if err := p.Decode(tick); err == nil {
			t.Errorf("%v Decode into a non-pointer succeeded", p.Format())
		}
		if err := p.Decode((*benchTick)(nil)); err == nil {
			t.Errorf("%v Decode into a nil pointer succeeded", p.Format())
		}
	}
}

// TestDecodeFloatsAsEncodingJSON: MessagePack floats are written in JSON as
// encoding/json.Marshal writes them, so both codecs read them alike.
func TestDecodeFloatsAsEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 1e6, 1e20, 1e21, 123456789, 1e-6, 1e-7, 0.1, 1.5e-9, math.MaxFloat64, 5e-324, -2.5e25} {
		js, _ := json.Marshal(f)
		got, err := RawMessagePack(newMP().F64(f).Bytes()).JSON()
		if err != nil || string(got) != string(js) {
			t.Errorf("float64 %v: %s, %v; encoding/json writes %s", f, got, err, js)
		}
		js, _ = json.Marshal(float32(f))
		got, err = RawMessagePack(newMP().F32(float32(f)).Bytes()).JSON()
		if !math.IsInf(float64(float32(f)), 0) && (err != nil || string(got) != string(js)) {
			t.Errorf("float32 %v: %s, %v; encoding/json writes %s", float32(f), got, err, js)
		}
	}
}

func decodeSeeds(f *testing.F) {
	f.Add([]byte(benchTickJSON))
	f.Add([]byte(benchLineJSON))
	f.Add([]byte(`{"kind":"k","user":{"id":1,"NAME":"x"},"tags":["a"],"pair":[1],"pp":1,"any":{"a":[1.5,null]},` +
		`"bytes":"AAEC","when":"2026-01-02T03:04:05Z","text2":"t","custom":[1],"intkeys":{"1":"a"},"textkeys":{"k":1},` +
		`"e1":1,"q":"12","R":"true","\u212a":1,"ſ":2,"A":3,"c":4,"num":1e3,"raw":[1 , 2],"users":{"u":{"id":2}}}`))
	f.Add([]byte(`[1,-0,1e400,18446744073709551616,"\ud800",null,true]`))
	f.Add([]byte(`[48,4697307462783467568,0.1]`)) // rounds differently into float32 through float64
	f.Add([]byte("{\"kind\":\"\xff\",\"seq\":\"1\",\"ts\":1.5,\"tiny\":300}"))
}

// FuzzDecodeJSON: the fast JSON decoder against encoding/json.
func FuzzDecodeJSON(f *testing.F) {
	decodeSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeAgrees(t, RawJSON(data), data)
	})
}

// FuzzDecodeMessagePack: any MessagePack payload decodes as encoding/json
// decodes its JSON form, and fails when it has none.
func FuzzDecodeMessagePack(f *testing.F) {
	f.Add(newMP().Map(3).Str("seq").Int(1).Str("ts").Uint(math.MaxUint64).KV("pad", "x").Bytes())
	f.Add(newMP().Map(2).KV("user", "a").KV("TEXT", "b").Bytes())
	f.Add(newMP().Arr(4).F32(0.1).F64(1e21).Int(math.MinInt64).Bin([]byte{1}).Bytes())
	f.Add(newMP().Map(2).Int(-1).Str("a").Str("pp").Map(1).Str("x").Ext(1, []byte{2}).Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		p := RawMessagePack(data)
		js, err := p.JSON()
		if err != nil {
			js = nil
		}
		decodeAgrees(t, p, js)
	})
}

// FuzzDecodeCodecs: a value written as JSON by encoding/json and as
// MessagePack by an independent encoder, with the keys in the case the
// fuzzer picks, decodes the same from both, as encoding/json decodes it.
func FuzzDecodeCodecs(f *testing.F) {
	f.Add(int64(1), int64(1764910000123456789), "alice", "hi", 1.5, uint16(0), []byte(nil))
	f.Add(int64(-1), int64(0), "ä\xff", "", 1e6, uint16(0xffff), []byte(`{"x":[1,"a"]}`))
	f.Add(int64(math.MaxInt64), int64(math.MinInt64), "K", "\u212a", -0.0, uint16(0x5555), []byte(`"s"`))
	f.Fuzz(func(t *testing.T, seq, ts int64, user, text string, fl float64, casing uint16, extra []byte) {
		if math.IsNaN(fl) || math.IsInf(fl, 0) {
			return
		}
		type kv struct {
			key string
			js  []byte
			mp  []byte
		}
		recase := func(k string, bits uint16) string {
			switch bits & 3 {
			case 1:
				return strings.ToUpper(k)
			case 2:
				return strings.ToUpper(k[:1]) + k[1:]
			}
			return k
		}
		mj := func(v any) []byte { b, _ := json.Marshal(v); return b }
		members := []kv{
			{"seq", mj(seq), newMP().Int(seq).Bytes()},
			{"ts", mj(ts), newMP().Int(ts).Bytes()},
			{"user", mj(user), newMP().Str(user).Bytes()},
			{"text", mj(text), newMP().Str(text).Bytes()},
			{"score", mj(fl), newMP().F64(fl).Bytes()},
			{"sent_at", mj(fl), newMP().F64(fl).Bytes()},
			{"tags", mj([]string{user, text}), newMP().Arr(2).Str(user).Str(text).Bytes()},
			{"user", mj(map[string]any{"id": seq, "name": text}), newMP().Map(2).Str("id").Int(seq).Str("name").Str(text).Bytes()},
		}
		// Any JSON value, as the JSON text of its MessagePack form (so
		// that 1.0 is written 1 in both).
		if xm, err := jsonToMsgpack(nil, extra); err == nil {
			if xj, err := msgpackToJSON(nil, xm); err == nil {
				members = append(members, kv{"any", xj, xm}, kv{"meta", xj, xm})
			}
		}
		js := []byte{'{'}
		mp := newMP().Map(len(members))
		for i, m := range members {
			k := recase(m.key, casing>>(2*(i%8)))
			if i > 0 {
				js = append(js, ',')
			}
			js = append(append(append(js, mj(k)...), ':'), m.js...)
			mp.Str(k).Raw(m.mp...)
		}
		js = append(js, '}')
		// The targets these keys reach (FuzzDecodeJSON covers the rest).
		for _, p := range []Payload{RawJSON(js), RawMessagePack(mp.Bytes())} {
			decodeAgreesInto(t, p, js, []any{new(any), new(benchTick), new(benchLine), new(decRich), new(map[string]decRich)})
		}
	})
}
