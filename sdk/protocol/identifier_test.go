package protocol

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestNewIdentifier(t *testing.T) {
	tests := []struct {
		channel string
		params  []any
		want    string
	}{
		{"ChatChannel", nil, `{"channel":"ChatChannel"}`},
		{"ChatChannel", []any{"room", "lobby"}, `{"channel":"ChatChannel","room":"lobby"}`},
		// Params keep the caller's order: no sorting.
		{"C", []any{"b", 1, "a", "x"}, `{"channel":"C","b":1,"a":"x"}`},
		{"C", []any{"z", true, "y", nil, "x", 1.5, "w", []int{1, 2}, "v", map[string]int{"b": 1, "a": 2}},
			`{"channel":"C","z":true,"y":null,"x":1.5,"w":[1,2],"v":{"a":2,"b":1}}`},
		// A json.RawMessage keeps a nested value's key order.
		{"C", []any{"filter", json.RawMessage(`{"z":1,"a":2}`)}, `{"channel":"C","filter":{"z":1,"a":2}}`},
		{"C", []any{"user_id", int64(math.MaxInt64), "u", uint64(math.MaxUint64)},
			`{"channel":"C","user_id":9223372036854775807,"u":18446744073709551615}`},
		{"C", []any{"s", struct {
			A int    `json:"a"`
			B string `json:"b,omitempty"`
		}{A: 1}}, `{"channel":"C","s":{"a":1}}`},
		// Escaping: the channel and keys get the minimal JSON escapes; values
		// go through encoding/json, which also escapes <, > and & (as Rails
		// does) and U+2028/U+2029.
		{"Chat\"Channel\\", []any{"k\n", "v\"\t"}, `{"channel":"Chat\"Channel\\","k\n":"v\"\t"}`},
		{"C<>&", []any{"<k>", "<v>&"}, `{"channel":"C<>&","<k>":"\u003cv\u003e\u0026"}`},
		{"C\x00\x1f", []any{"k\x01", "\x00\u2028"}, `{"channel":"C\u0000\u001f","k\u0001":"\u0000\u2028"}`},
		{"é😀", []any{"ключ", "值😀"}, `{"channel":"é😀","ключ":"值😀"}`},
		{"", []any{"", ""}, `{"channel":"","":""}`},
	}
	for _, tt := range tests {
		got, err := NewIdentifier(tt.channel, tt.params...)
		if err != nil {
			t.Errorf("NewIdentifier(%q, %v): %v", tt.channel, tt.params, err)
			continue
		}
		if got != tt.want {
			t.Errorf("NewIdentifier(%q, %v)\n got  %s\n want %s", tt.channel, tt.params, got, tt.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("%s is not valid JSON", got)
		}
		if MustIdentifier(tt.channel, tt.params...) != got {
			t.Errorf("MustIdentifier differs from NewIdentifier")
		}
	}
}

func TestNewIdentifierErrors(t *testing.T) {
	tests := []struct {
		name   string
		params []any
		want   string
	}{
		{"odd params", []any{"room"}, "key, value pairs"},
		{"odd params, three", []any{"a", 1, "b"}, "key, value pairs"},
		{"int key", []any{1, "x"}, "key is int"},
		{"nil key", []any{nil, "x"}, "key is <nil>"},
		{"second key not a string", []any{"a", 1, []byte("b"), 2}, "param 1"},
		{"channel reserved", []any{"channel", "Other"}, "reserved"},
		{"channel reserved later", []any{"a", 1, "channel", "Other"}, "reserved"},
		{"unmarshalable value", []any{"f", func() {}}, "param \"f\""},
		{"NaN", []any{"n", math.NaN()}, "param \"n\""},
		{"channel value", []any{"c", make(chan int)}, "param \"c\""},
	}
	for _, tt := range tests {
		id, err := NewIdentifier("C", tt.params...)
		if err == nil {
			t.Errorf("%s: NewIdentifier = %s, want an error", tt.name, id)
			continue
		}
		if id != "" {
			t.Errorf("%s: identifier %q returned with the error", tt.name, id)
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "protocol: NewIdentifier: ") {
			t.Errorf("%s: error %q, want it to mention %q", tt.name, err, tt.want)
		}
	}
	// The encoding/json error is wrapped.
	_, err := NewIdentifier("C", "n", math.Inf(1))
	var uve *json.UnsupportedValueError
	if !errors.As(err, &uve) {
		t.Errorf("error %v does not wrap *json.UnsupportedValueError", err)
	}
	_, err = NewIdentifier("C", "f", func() {})
	var ute *json.UnsupportedTypeError
	if !errors.As(err, &ute) {
		t.Errorf("error %v does not wrap *json.UnsupportedTypeError", err)
	}
}

func TestMustIdentifierPanics(t *testing.T) {
	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok || !strings.Contains(err.Error(), "key, value pairs") {
			t.Errorf("recovered %v, want the NewIdentifier error", r)
		}
	}()
	MustIdentifier("C", "odd")
	t.Error("MustIdentifier did not panic")
}

// TestNewIdentifierDecodesBack: for random channel names, keys and values,
// encoding/json reads the identifier back as the same channel first and
// the same params in order. The channel and keys keep bytes that are not
// UTF-8 as they are (appendJSONString passes them through); values go
// through json.Marshal, which replaces them with U+FFFD; encoding/json's
// decoder replaces the raw ones the same way, so every string compares
// equal to fixUTF8 of the original.
func TestNewIdentifierDecodesBack(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 3000 {
		invalid := i%3 == 0
		channel := randString(r, invalid)
		var params []any
		var keys, vals []string
		for range r.IntN(4) {
			k := randString(r, invalid)
			if k == "channel" {
				continue
			}
			v := randString(r, invalid)
			params = append(params, k, v)
			keys, vals = append(keys, k), append(vals, v)
		}
		id, err := NewIdentifier(channel, params...)
		if err != nil {
			t.Fatalf("NewIdentifier(%q, %q): %v", channel, params, err)
		}
		ref, err := jsonRef([]byte(id))
		if err != nil {
			t.Fatalf("encoding/json rejects %q: %v", id, err)
		}
		obj, ok := ref.(refObj)
		if !ok || len(obj) != 1+len(keys) {
			t.Fatalf("%q decodes to %#v", id, ref)
		}
		if obj[0].Key != "channel" || obj[0].Value != fixUTF8(channel) {
			t.Fatalf("%q: first member %q: %#v, want channel %q", id, obj[0].Key, obj[0].Value, channel)
		}
		for j := range keys {
			if obj[j+1].Key != fixUTF8(keys[j]) || obj[j+1].Value != fixUTF8(vals[j]) {
				t.Fatalf("%q: member %d is %q: %#v, want %q: %q", id, j+1, obj[j+1].Key, obj[j+1].Value, keys[j], vals[j])
			}
		}
		// Subscribing with it and reading the confirmation back gives the
		// identical bytes through both codecs.
		for _, c := range []Codec{JSONCodec{}, MessagePackCodec{}} {
			frame, err := c.AppendMessage(nil, &Message{Type: TypeConfirm, Identifier: []byte(id)})
			if err != nil {
				t.Fatal(err)
			}
			var m Message
			if err := c.DecodeMessage(frame, &m); err != nil || string(m.Identifier) != id {
				t.Fatalf("%s: identifier %q came back as %q, %v", c.Subprotocol(), id, m.Identifier, err)
			}
		}
	}
}
