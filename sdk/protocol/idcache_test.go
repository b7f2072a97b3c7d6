package protocol

import "testing"

// The decoded identifier is cached by its encoded form: frames without an
// identifier, other identifiers and the other codec in between must not
// leak a stale or emptied value.
func TestIdentifierCacheAcrossFrames(t *testing.T) {
	var m Message
	js := JSONCodec{}
	mp := MessagePackCodec{}
	id := `{"channel":"C","room":"<a>"}`
	jsonFrame := `{"identifier":"{\"channel\":\"C\",\"room\":\"\u003ca\u003e\"}","message":1}`
	mpFrame, err := mp.AppendMessage(nil, &Message{Type: TypeMessage, Identifier: []byte(`{"channel":"D"}`), Body: RawJSON([]byte("2"))})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		codec Codec
		frame string
		want  string
	}{
		{js, jsonFrame, id},
		{js, `{"type":"welcome"}`, ""},
		{js, jsonFrame, id},
		{mp, string(mpFrame), `{"channel":"D"}`},
		{js, jsonFrame, id},
		{js, `{"identifier":"x","message":1}`, "x"},
		{js, jsonFrame, id},
	}
	for i, s := range steps {
		if err := s.codec.DecodeMessage([]byte(s.frame), &m); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if string(m.Identifier) != s.want {
			t.Fatalf("step %d: Identifier %q, want %q", i, m.Identifier, s.want)
		}
	}
}
