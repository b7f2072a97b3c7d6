package protocol

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestMsgpackDecodeMessage(t *testing.T) {
	chatBody := newMP().Map(3).
		KV("user", "alice").
		Str("tags").Arr(3).Str("a").Int(-1).Map(1).Str("x").Nil().
		Str("ok").Bool(true).Bytes()
	tests := []struct {
		name  string
		frame []byte
		want  Message
	}{
		{
			name:  "welcome",
			frame: newMP().Map(1).KV("type", "welcome").Bytes(),
			want:  Message{Type: TypeWelcome},
		},
		{
			name:  "ping",
			frame: newMP().Map(2).KV("type", "ping").Str("message").Int(1700000000).Bytes(),
			want:  Message{Type: TypePing, Body: RawMessagePack(mpValue(1700000000))},
		},
		{
			name:  "confirm_subscription",
			frame: newMP().Map(2).KV("identifier", railsChatID).KV("type", "confirm_subscription").Bytes(),
			want:  Message{Type: TypeConfirm, Identifier: []byte(railsChatID)},
		},
		{
			name:  "reject_subscription",
			frame: newMP().Map(2).KV("identifier", railsChatID).KV("type", "reject_subscription").Bytes(),
			want:  Message{Type: TypeReject, Identifier: []byte(railsChatID)},
		},
		{
			name:  "disconnect unauthorized",
			frame: newMP().Map(3).KV("type", "disconnect").KV("reason", "unauthorized").Str("reconnect").Bool(false).Bytes(),
			want:  Message{Type: TypeDisconnect, Reason: ReasonUnauthorized, HasReconnect: true},
		},
		{
			name:  "disconnect server_restart",
			frame: newMP().Map(3).KV("type", "disconnect").KV("reason", "server_restart").Str("reconnect").Bool(true).Bytes(),
			want:  Message{Type: TypeDisconnect, Reason: ReasonServerRestart, Reconnect: true, HasReconnect: true},
		},
		{
			name:  "disconnect without reconnect",
			frame: newMP().Map(2).KV("type", "disconnect").KV("reason", "remote").Bytes(),
			want:  Message{Type: TypeDisconnect, Reason: ReasonRemote},
		},
		{
			name:  "disconnect nil reason and reconnect",
			frame: newMP().Map(3).KV("type", "disconnect").Str("reason").Nil().Str("reconnect").Nil().Bytes(),
			want:  Message{Type: TypeDisconnect},
		},
		{
			name:  "channel message",
			frame: newMP().Map(2).KV("identifier", railsChatID).Str("message").Raw(chatBody...).Bytes(),
			want:  Message{Type: TypeMessage, Identifier: []byte(railsChatID), Body: RawMessagePack(chatBody)},
		},
		{
			name:  "channel message, keys reversed",
			frame: newMP().Map(2).Str("message").Raw(chatBody...).KV("identifier", "x").Bytes(),
			want:  Message{Type: TypeMessage, Identifier: []byte("x"), Body: RawMessagePack(chatBody)},
		},
		{
			name:  "channel message, nil body is a body",
			frame: newMP().Map(2).KV("identifier", "x").Str("message").Nil().Bytes(),
			want:  Message{Type: TypeMessage, Identifier: []byte("x"), Body: RawMessagePack([]byte{0xc0})},
		},
		{
			name:  "channel message, ext and bin bodies are kept raw",
			frame: newMP().Map(2).KV("identifier", "x").Str("message").Ext(7, []byte{1, 2, 3}).Bytes(),
			want:  Message{Type: TypeMessage, Identifier: []byte("x"), Body: RawMessagePack(newMP().Ext(7, []byte{1, 2, 3}).Bytes())},
		},
		{
			name:  "disconnect, keys in every order",
			frame: newMP().Map(3).Str("reconnect").Bool(true).KV("reason", "remote").KV("type", "disconnect").Bytes(),
			want:  Message{Type: TypeDisconnect, Reason: ReasonRemote, Reconnect: true, HasReconnect: true},
		},
		{
			name: "unknown keys with values of every kind are skipped",
			frame: newMP().Map(12).
				Str("a").Map(2).KV("type", "ping").Str("deep").Arr(1).Map(1).Str("identifier").Int(1).
				Str("b").Arr(0).
				Str("c").Bin([]byte{0, 1, 2}).
				Str("d").Ext(-1, []byte{0, 0, 0, 1}).
				Str("e").F64(1.5).
				Str("f").F32(-2.5).
				Str("g").Uint(math.MaxUint64).
				Str("h").Int(math.MinInt64).
				Str("i").Raw(0xd4, 1, 2).                                                    // fixext1
				Str("j").Raw(0xd8, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15). // fixext16
				KV("type", "reject_subscription").
				KV("identifier", "x").Bytes(),
			want: Message{Type: TypeReject, Identifier: []byte("x")},
		},
		{
			name: "non-string keys are skipped",
			frame: newMP().Map(7).
				Int(1).Str("type").
				Nil().Str("welcome").
				Bool(true).Int(3).
				Arr(1).Str("type").Str("ping").
				Map(1).KV("type", "ping").Str("ping").
				F64(2).Nil().
				KV("type", "welcome").Bytes(),
			want: Message{Type: TypeWelcome},
		},
		{
			name:  "bin keys and values count as strings",
			frame: newMP().Map(2).Bin([]byte("identifier")).Bin([]byte("id\xff")).Bin([]byte("type")).Bin([]byte("confirm_subscription")).Bytes(),
			want:  Message{Type: TypeConfirm, Identifier: []byte("id\xff")},
		},
		{
			name:  "map16 header, str8/str16/str32 strings",
			frame: append([]byte{0xde, 0, 2, 0xd9, 4}, "type\xda\x00\x14confirm_subscription\xdb\x00\x00\x00\x0aidentifier\xa1x"...),
			want:  Message{Type: TypeConfirm, Identifier: []byte("x")},
		},
		{
			name:  "map32 header",
			frame: append([]byte{0xdf, 0, 0, 0, 1}, newMP().KV("type", "welcome").Bytes()...),
			want:  Message{Type: TypeWelcome},
		},
		{
			name:  "long identifier (str16)",
			frame: newMP().Map(2).KV("identifier", strings.Repeat("é", 300)).KV("type", "confirm_subscription").Bytes(),
			want:  Message{Type: TypeConfirm, Identifier: []byte(strings.Repeat("é", 300))},
		},
		{
			name:  "duplicate type: the last wins",
			frame: newMP().Map(2).KV("type", "nope").KV("type", "welcome").Bytes(),
			want:  Message{Type: TypeWelcome},
		},
	}
	var m Message
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fresh Message
			if err := (MessagePackCodec{}).DecodeMessage(tt.frame, &fresh); err != nil {
				t.Fatalf("DecodeMessage(% x): %v", tt.frame, err)
			}
			if !msgEqual(&fresh, &tt.want) {
				t.Fatalf("got  %s\nwant %s", fmtMsg(&fresh), fmtMsg(&tt.want))
			}
			if err := (MessagePackCodec{}).DecodeMessage(tt.frame, &m); err != nil {
				t.Fatal(err)
			}
			if !msgEqual(&m, &tt.want) {
				t.Fatalf("reused Message\n got  %s\n want %s", fmtMsg(&m), fmtMsg(&tt.want))
			}
		})
	}
}

func TestMsgpackDecodeMessageErrors(t *testing.T) {
	deepTrunc := append(newMP().Map(2).KV("identifier", "x").Str("message").Bytes(), bytes.Repeat([]byte{0x91}, 100000)...)
	tests := []struct {
		name     string
		frame    []byte
		sentinel error
	}{
		{"empty", nil, ErrMalformed},
		{"nil", []byte{0xc0}, ErrMalformed},
		{"empty array", []byte{0x90}, ErrMalformed},
		{"array of a frame", newMP().Arr(1).Map(1).KV("type", "welcome").Bytes(), ErrMalformed},
		{"string", newMP().Str("welcome").Bytes(), ErrMalformed},
		{"int", []byte{0x01}, ErrMalformed},
		{"reserved code 0xc1", []byte{0xc1}, ErrMalformed},
		{"0xc1 as a value", newMP().Map(1).Str("type").Raw(0xc1).Bytes(), ErrMalformed},
		{"0xc1 as a key", newMP().Map(1).Raw(0xc1).Str("welcome").Bytes(), ErrMalformed},
		{"JSON text", []byte(`{"type":"welcome"}`), ErrMalformed},
		{"trailing byte", append(newMP().Map(1).KV("type", "welcome").Bytes(), 0xc0), ErrMalformed},
		{"two frames", append(newMP().Map(1).KV("type", "welcome").Bytes(), newMP().Map(1).KV("type", "welcome").Bytes()...), ErrMalformed},
		{"map header claims 2^32-1 entries", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa4, 't', 'y', 'p', 'e'}, ErrMalformed},
		{"map16 header claims 65535 entries", []byte{0xde, 0xff, 0xff, 0xa1, 'a', 0x01}, ErrMalformed},
		{"array in message claims 2^32-1", newMP().Map(2).KV("identifier", "x").Str("message").Raw(0xdd, 0xff, 0xff, 0xff, 0xff, 0x01).Bytes(), ErrMalformed},
		{"map in message claims 2^32-1", newMP().Map(2).KV("identifier", "x").Str("message").Raw(0xdf, 0xff, 0xff, 0xff, 0xff, 0x01).Bytes(), ErrMalformed},
		{"str32 claims 4 GiB", newMP().Map(1).Str("type").Raw(0xdb, 0xff, 0xff, 0xff, 0xff, 'w').Bytes(), ErrMalformed},
		{"bin32 claims 4 GiB", newMP().Map(1).Str("x").Raw(0xc6, 0xff, 0xff, 0xff, 0xff).Bytes(), ErrMalformed},
		{"ext32 claims 4 GiB", newMP().Map(1).Str("x").Raw(0xc9, 0xff, 0xff, 0xff, 0xff, 0x01).Bytes(), ErrMalformed},
		{"key str32 claims 4 GiB", []byte{0x81, 0xdb, 0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		{"ext8 missing type byte", newMP().Map(1).Str("x").Raw(0xc7, 0x00).Bytes(), ErrMalformed},
		{"fixext16 short", newMP().Map(1).Str("x").Raw(0xd8, 0x01, 0, 0).Bytes(), ErrMalformed},
		{"float64 short", newMP().Map(1).Str("x").Raw(0xcb, 0, 0, 0).Bytes(), ErrMalformed},
		{"deep truncated nesting", deepTrunc, ErrMalformed},
		{"unknown type", newMP().Map(1).KV("type", "foo").Bytes(), ErrUnknownType},
		{"empty type", newMP().Map(1).KV("type", "").Bytes(), ErrUnknownType},
		{"type an int", newMP().Map(1).Str("type").Int(1).Bytes(), ErrInvalidField},
		{"type nil", newMP().Map(1).Str("type").Nil().Bytes(), ErrInvalidField},
		{"type a map", newMP().Map(1).Str("type").Map(0).Bytes(), ErrInvalidField},
		{"identifier an int", newMP().Map(2).Str("identifier").Int(1).Str("message").Map(0).Bytes(), ErrInvalidField},
		{"identifier a map", newMP().Map(2).Str("identifier").Map(1).KV("channel", "C").KV("type", "confirm_subscription").Bytes(), ErrInvalidField},
		{"identifier nil", newMP().Map(2).Str("identifier").Nil().KV("type", "confirm_subscription").Bytes(), ErrInvalidField},
		{"reconnect a string", newMP().Map(2).KV("type", "disconnect").KV("reconnect", "true").Bytes(), ErrInvalidField},
		{"reconnect an int", newMP().Map(2).KV("type", "disconnect").Str("reconnect").Int(1).Bytes(), ErrInvalidField},
		{"reason an int", newMP().Map(2).KV("type", "disconnect").Str("reason").Int(1).Bytes(), ErrInvalidField},
		{"reason false", newMP().Map(2).KV("type", "disconnect").Str("reason").Bool(false).Bytes(), ErrInvalidField},
		{"confirm without identifier", newMP().Map(1).KV("type", "confirm_subscription").Bytes(), ErrInvalidField},
		{"reject without identifier", newMP().Map(1).KV("type", "reject_subscription").Bytes(), ErrInvalidField},
		{"empty map", []byte{0x80}, ErrInvalidField},
		{"only non-string keys", newMP().Map(1).Int(1).Str("type").Bytes(), ErrInvalidField},
		{"channel message without message", newMP().Map(1).KV("identifier", "x").Bytes(), ErrInvalidField},
		{"message without identifier", newMP().Map(1).Str("message").Map(0).Bytes(), ErrInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := (MessagePackCodec{}).DecodeMessage(tt.frame, &m)
			de := wantDecodeError(t, err, SubprotocolMessagePack, tt.sentinel)
			for _, s := range []error{ErrMalformed, ErrUnknownType, ErrInvalidField, ErrUnsupported} {
				if s != tt.sentinel && errors.Is(err, s) {
					t.Errorf("%v also matches %v", err, s)
				}
			}
			if tt.sentinel == ErrMalformed && (de.Offset < 0 || de.Offset > len(tt.frame)) {
				t.Errorf("Offset %d outside the frame (len %d)", de.Offset, len(tt.frame))
			}
		})
	}
}

func TestMsgpackUnknownType(t *testing.T) {
	frame := newMP().Map(3).KV("type", "custom_kind").KV("identifier", "id").Str("message").Int(5).Bytes()
	var m Message
	err := (MessagePackCodec{}).DecodeMessage(frame, &m)
	de := wantDecodeError(t, err, SubprotocolMessagePack, ErrUnknownType)
	if de.Type != "custom_kind" {
		t.Errorf("Type = %q", de.Type)
	}
	if string(m.Identifier) != "id" || !bytes.Equal(m.Body.Bytes(), []byte{5}) {
		t.Errorf("m = %s", fmtMsg(&m))
	}
	// The error's Type must not alias the frame.
	for i := range frame {
		frame[i] = 0
	}
	if de.Type != "custom_kind" {
		t.Errorf("Type = %q after the frame was overwritten", de.Type)
	}
}

// TestMsgpackHostileHeaders checks that lengths far beyond the input fail
// at once, without allocating in proportion to the claimed size.
func TestMsgpackHostileHeaders(t *testing.T) {
	frames := [][]byte{
		{0xdf, 0xff, 0xff, 0xff, 0xff},
		{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a'},
		{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa4, 't', 'y', 'p', 'e', 0xa7, 'w', 'e', 'l', 'c', 'o', 'm', 'e'},
		newMP().Map(2).KV("identifier", "x").Str("message").Raw(0xdd, 0xff, 0xff, 0xff, 0xff, 0xdd, 0xff, 0xff, 0xff, 0xff).Bytes(),
		newMP().Map(2).KV("identifier", "x").Str("message").Raw(0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02).Bytes(),
		newMP().Map(1).Str("identifier").Raw(0xdb, 0xff, 0xff, 0xff, 0xff).Bytes(),
	}
	var m Message
	for _, frame := range frames {
		start := time.Now()
		allocs := testing.AllocsPerRun(100, func() {
			if err := (MessagePackCodec{}).DecodeMessage(frame, &m); !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeMessage(% x) = %v, want ErrMalformed", frame, err)
			}
		})
		// The error itself costs a few allocations (the DecodeError and
		// its detail text), nothing proportional to the header.
		if allocs > 4 {
			t.Errorf("DecodeMessage(% x): %v allocs per run", frame, allocs)
		}
		// A generous bound that only a scan of the claimed length breaks.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("DecodeMessage(% x): 100 runs took %v", frame, d)
		}
	}
	// The transcoder meets the same headers inside a payload.
	for _, v := range [][]byte{
		{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01},
		{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		{0xc6, 0xff, 0xff, 0xff, 0xff, 'a'},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := RawMessagePack(v).AppendJSON(make([]byte, 0, 64)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("JSON(% x) = %v, want ErrMalformed", v, err)
			}
		})
		if allocs > 6 {
			t.Errorf("JSON(% x): %v allocs per run", v, allocs)
		}
	}
}

// TestMsgpackDeepNesting: skipping is iterative, so a deeply nested
// message decodes without using stack; transcoding it to JSON stops at the
// depth limit with an error.
func TestMsgpackDeepNesting(t *testing.T) {
	const n = 100000
	body := append(bytes.Repeat([]byte{0x91}, n), 0x01) // [[[...[1]...]]]
	frame := append(newMP().Map(2).KV("identifier", "x").Str("message").Bytes(), body...)
	var m Message
	if err := (MessagePackCodec{}).DecodeMessage(frame, &m); err != nil {
		t.Fatalf("DecodeMessage: %v", err)
	}
	if !bytes.Equal(m.Body.Bytes(), body) {
		t.Fatalf("Body is %d bytes, want %d", len(m.Body.Bytes()), len(body))
	}
	_, err := m.Body.JSON()
	if de := wantDecodeError(t, err, SubprotocolMessagePack, ErrMalformed); !strings.Contains(de.Detail, "nesting") {
		t.Errorf("Detail = %q", de.Detail)
	}
	if _, err := (JSONCodec{}).AppendMessage(nil, &m); err == nil {
		t.Error("JSONCodec.AppendMessage of a too deep body succeeded")
	}
	// Nested maps too.
	body = nil
	for range n {
		body = append(body, 0x81, 0xa1, 'a')
	}
	body = append(body, 0xc0)
	if _, err := RawMessagePack(body).JSON(); !errors.Is(err, ErrMalformed) {
		t.Errorf("deep maps: %v", err)
	}
}

// validMsgpackFrames are complete frames for the truncation test.
func validMsgpackFrames() [][]byte {
	return [][]byte{
		newMP().Map(1).KV("type", "welcome").Bytes(),
		newMP().Map(2).KV("type", "ping").Str("message").Int(1700000000).Bytes(),
		newMP().Map(2).KV("identifier", railsChatID).KV("type", "confirm_subscription").Bytes(),
		newMP().Map(2).KV("identifier", railsChatID).KV("type", "reject_subscription").Bytes(),
		newMP().Map(3).KV("type", "disconnect").KV("reason", "unauthorized").Str("reconnect").Bool(false).Bytes(),
		newMP().Map(3).KV("type", "disconnect").KV("reason", "server_restart").Str("reconnect").Bool(true).Bytes(),
		newMP().Map(4).KV("identifier", railsChatID).Str("message").
			Map(6).KV("text", strings.Repeat("long text ", 30)).Str("n").Int(-70000).Str("f").F64(0.25).
			Str("bin").Bin([]byte{1, 2, 3}).Str("arr").Arr(2).Uint(math.MaxUint64).F32(1.5).Str("m").Map(1).Int(1).Nil().
			Str("x").Ext(3, []byte{1, 2, 3, 4, 5}).Str("y").Raw(0xd6, 0x01, 0, 0, 0, 0).Bytes(),
		append([]byte{0xdf, 0, 0, 0, 1}, newMP().KV("type", "welcome").Bytes()...),
	}
}

func TestMsgpackDecodeMessageTruncated(t *testing.T) {
	var m Message
	for _, frame := range validMsgpackFrames() {
		if err := (MessagePackCodec{}).DecodeMessage(frame, &m); err != nil {
			t.Fatalf("full frame % x: %v", frame, err)
		}
		for i := range len(frame) {
			prefix := bytes.Clone(frame[:i])
			err := (MessagePackCodec{}).DecodeMessage(prefix, &m)
			de := wantDecodeError(t, err, SubprotocolMessagePack, ErrMalformed)
			if de.Offset < 0 || de.Offset > i {
				t.Errorf("prefix of %d bytes: Offset %d", i, de.Offset)
			}
		}
	}
}

func TestMsgpackDecodeCommand(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		want  Command
	}{
		{
			"subscribe",
			newMP().Map(2).KV("command", "subscribe").KV("identifier", railsChatID).Bytes(),
			Command{Command: CommandSubscribe, Identifier: railsChatID},
		},
		{
			"unsubscribe",
			newMP().Map(2).KV("command", "unsubscribe").KV("identifier", railsChatID).Bytes(),
			Command{Command: CommandUnsubscribe, Identifier: railsChatID},
		},
		{
			"message with data as a string",
			newMP().Map(3).KV("command", "message").KV("identifier", railsChatID).KV("data", `{"action":"speak"}`).Bytes(),
			Command{Command: CommandMessage, Identifier: railsChatID, Data: `{"action":"speak"}`},
		},
		{
			"message with data as a map, transcoded in order",
			newMP().Map(3).KV("data", "").KV("command", "message").KV("identifier", "i").Bytes(),
			Command{Command: CommandMessage, Identifier: "i"},
		},
		{
			"data and identifier as maps",
			newMP().Map(4).Str("data").Map(3).KV("z", "1").KV("action", "go").Str("n").Int(-3).
				Str("command").Str("message").Str("identifier").Map(1).KV("channel", "C").Int(9).Nil().Bytes(),
			Command{Command: CommandMessage, Identifier: `{"channel":"C"}`, Data: `{"z":"1","action":"go","n":-3}`},
		},
		{
			"map16 data",
			newMP().Map(3).KV("command", "message").KV("identifier", "i").Str("data").Raw(0xde, 0, 1).KV("a", "b").Bytes(),
			Command{Command: CommandMessage, Identifier: "i", Data: `{"a":"b"}`},
		},
		{
			"bin strings",
			newMP().Map(2).Bin([]byte("command")).Bin([]byte("subscribe")).Bin([]byte("identifier")).Bin([]byte("\xff")).Bytes(),
			Command{Command: CommandSubscribe, Identifier: "\xff"},
		},
	}
	for _, tt := range tests {
		var c Command
		if err := (MessagePackCodec{}).DecodeCommand(tt.frame, &c); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if c != tt.want {
			t.Errorf("%s:\n got  %+v\n want %+v", tt.name, c, tt.want)
		}
	}
}

func TestMsgpackDecodeCommandErrors(t *testing.T) {
	tests := []struct {
		name     string
		frame    []byte
		sentinel error
	}{
		{"empty", nil, ErrMalformed},
		{"array", []byte{0x90}, ErrMalformed},
		{"trailing", append(newMP().Map(2).KV("command", "subscribe").KV("identifier", "x").Bytes(), 0), ErrMalformed},
		{"truncated", newMP().Map(2).KV("command", "subscribe").Str("identifier").Bytes(), ErrMalformed},
		{"no command", newMP().Map(1).KV("identifier", "x").Bytes(), ErrInvalidField},
		{"no identifier", newMP().Map(1).KV("command", "subscribe").Bytes(), ErrInvalidField},
		{"command a map", newMP().Map(2).Str("command").Map(0).KV("identifier", "x").Bytes(), ErrInvalidField},
		{"command an int", newMP().Map(2).Str("command").Int(1).KV("identifier", "x").Bytes(), ErrInvalidField},
		{"identifier an int", newMP().Map(2).KV("command", "subscribe").Str("identifier").Int(1).Bytes(), ErrInvalidField},
		{"identifier an array", newMP().Map(2).KV("command", "subscribe").Str("identifier").Arr(0).Bytes(), ErrInvalidField},
		{"data an array", newMP().Map(3).KV("command", "message").KV("identifier", "x").Str("data").Arr(0).Bytes(), ErrInvalidField},
		{"data a map holding an ext", newMP().Map(3).KV("command", "message").KV("identifier", "x").Str("data").Map(1).Str("a").Ext(1, []byte{1}).Bytes(), ErrUnsupported},
		{"data a map with a nil key", newMP().Map(3).KV("command", "message").KV("identifier", "x").Str("data").Map(1).Nil().Int(1).Bytes(), ErrUnsupported},
		{"unknown command", newMP().Map(2).KV("command", "perform").KV("identifier", "x").Bytes(), ErrUnknownType},
	}
	for _, tt := range tests {
		var c Command
		err := (MessagePackCodec{}).DecodeCommand(tt.frame, &c)
		if err == nil {
			t.Errorf("%s: got %+v, want %v", tt.name, c, tt.sentinel)
			continue
		}
		de := wantDecodeError(t, err, SubprotocolMessagePack, tt.sentinel)
		if tt.sentinel == ErrUnknownType && de.Type != "perform" {
			t.Errorf("%s: Type = %q", tt.name, de.Type)
		}
	}
}

func TestMsgpackDecodeCommandTruncated(t *testing.T) {
	frame := newMP().Map(3).KV("command", "message").KV("identifier", railsChatID).Str("data").Map(1).KV("action", "speak").Bytes()
	for i := range len(frame) {
		var c Command
		err := (MessagePackCodec{}).DecodeCommand(bytes.Clone(frame[:i]), &c)
		wantDecodeError(t, err, SubprotocolMessagePack, ErrMalformed)
	}
}

// TestMsgpackAppendBytes compares the codec's output with frames the
// msgpack library encodes with the same key order.
func TestMsgpackAppendBytes(t *testing.T) {
	body := newMP().Map(1).KV("a", "b").Bytes()
	long := strings.Repeat("x", 70000) // str32
	tests := []struct {
		name string
		m    Message
		want []byte
	}{
		{"welcome", Message{Type: TypeWelcome}, newMP().Map(1).KV("type", "welcome").Bytes()},
		{"ping", Message{Type: TypePing, Body: RawMessagePack(mpValue(1700000000))},
			newMP().Map(2).KV("type", "ping").Str("message").Int(1700000000).Bytes()},
		{"confirm", Message{Type: TypeConfirm, Identifier: []byte(railsChatID)},
			newMP().Map(2).KV("identifier", railsChatID).KV("type", "confirm_subscription").Bytes()},
		{"reject", Message{Type: TypeReject, Identifier: []byte(long)},
			newMP().Map(2).KV("identifier", long).KV("type", "reject_subscription").Bytes()},
		{"disconnect", Message{Type: TypeDisconnect, Reason: "unauthorized", HasReconnect: true},
			newMP().Map(3).KV("type", "disconnect").KV("reason", "unauthorized").Str("reconnect").Bool(false).Bytes()},
		{"disconnect bare", Message{Type: TypeDisconnect}, newMP().Map(1).KV("type", "disconnect").Bytes()},
		{"disconnect reconnect only", Message{Type: TypeDisconnect, Reconnect: true, HasReconnect: true},
			newMP().Map(2).KV("type", "disconnect").Str("reconnect").Bool(true).Bytes()},
		{"message", Message{Identifier: []byte("x"), Body: RawMessagePack(body)},
			newMP().Map(2).KV("identifier", "x").Str("message").Raw(body...).Bytes()},
		{"message, JSON body transcoded", Message{Identifier: []byte("x"), Body: RawJSON([]byte(`{"a":"b"}`))},
			newMP().Map(2).KV("identifier", "x").Str("message").Raw(body...).Bytes()},
	}
	for _, tt := range tests {
		got, err := (MessagePackCodec{}).AppendMessage([]byte{0xee}, &tt.m)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !bytes.Equal(got, append([]byte{0xee}, tt.want...)) {
			t.Errorf("%s:\n got  % x\n want ee % x", tt.name, got, tt.want)
		}
	}

	cmds := []struct {
		c    Command
		want []byte
	}{
		{Command{Command: "subscribe", Identifier: railsChatID},
			newMP().Map(2).KV("command", "subscribe").KV("identifier", railsChatID).Bytes()},
		{Command{Command: "message", Identifier: "x"},
			newMP().Map(3).KV("command", "message").KV("identifier", "x").KV("data", "").Bytes()},
		{Command{Command: "message", Identifier: "x", Data: `{"action":"a"}`},
			newMP().Map(3).KV("command", "message").KV("identifier", "x").KV("data", `{"action":"a"}`).Bytes()},
	}
	for _, tt := range cmds {
		got, err := (MessagePackCodec{}).AppendCommand(nil, &tt.c)
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("AppendCommand(%+v) = % x, %v\nwant % x", tt.c, got, err, tt.want)
		}
	}
}

// TestMsgpackHeaderSizes checks the length boundaries of the header
// writers against the msgpack library.
func TestMsgpackHeaderSizes(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000} {
		if got, want := appendMpMapHeader(nil, n), newMP().Map(n).Bytes(); !bytes.Equal(got, want) {
			t.Errorf("map header %d: % x, want % x", n, got, want)
		}
		if got, want := appendMpArrayHeader(nil, n), newMP().Arr(n).Bytes(); !bytes.Equal(got, want) {
			t.Errorf("array header %d: % x, want % x", n, got, want)
		}
		s := strings.Repeat("s", n)
		if got, want := appendMpString(nil, s), newMP().Str(s).Bytes(); !bytes.Equal(got, want) {
			t.Errorf("string of %d: % x..., want % x...", n, got[:min(6, len(got))], want[:min(6, len(want))])
		}
		// And our scanner reads back what the library wrote.
		for _, v := range [][]byte{newMP().Str(s).Bytes(), newMP().Bin([]byte(s)).Bytes()} {
			str, end, ok, err := mpString(v, 0)
			if err != nil || !ok || end != len(v) || string(str) != s {
				t.Errorf("mpString(%d bytes): ok %v end %d err %v", n, ok, end, err)
			}
		}
	}
	// Integers: the codec writes signed forms; the library reads them.
	for _, n := range []int64{0, 1, 127, 128, 255, 256, -1, -32, -33, -128, -129, 32767, 32768, -32768, -32769,
		math.MaxInt32, math.MaxInt32 + 1, math.MinInt32, math.MinInt32 - 1, math.MaxInt64, math.MinInt64} {
		b := appendMpInt(nil, n)
		var got int64
		if err := RawMessagePack(b).Decode(&got); err != nil || got != n {
			t.Errorf("appendMpInt(%d) = % x decodes to %d, %v", n, b, got, err)
		}
		if end, err := mpSkip(b, 0); err != nil || end != len(b) {
			t.Errorf("mpSkip(appendMpInt(%d)) = %d, %v", n, end, err)
		}
	}
}
