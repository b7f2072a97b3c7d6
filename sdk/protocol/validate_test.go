package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cableway/cableway/sdk/protocol"
)

func TestValidateCommand(t *testing.T) {
	id := `{"channel":"EchoChannel"}`
	good := []protocol.Command{
		{Command: "subscribe", Identifier: id},
		{Command: "message", Identifier: id, Data: `{"action":"echo","text":"héllo \ufffd ✓"}`},
		{Command: "unsubscribe", Identifier: `{"channel":"Ch","room":"日本"}`},
	}
	for _, c := range good {
		if err := protocol.ValidateCommand(&c); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []struct {
		c    protocol.Command
		want error
	}{
		{protocol.Command{Command: "subscribe", Identifier: "{\"channel\":\"\xff\"}"}, protocol.ErrInvalidUTF8},
		{protocol.Command{Command: "message", Identifier: id, Data: "{\"text\":\"\xc3\"}"}, protocol.ErrInvalidUTF8},
		{protocol.Command{Command: "message", Identifier: id, Data: "{\"text\":\"\xed\xa0\x80\"}"}, protocol.ErrInvalidUTF8}, // a UTF-8 encoded surrogate
		{protocol.Command{Command: "subscribe"}, protocol.ErrInvalidField},
		{protocol.Command{Command: "jump", Identifier: id}, protocol.ErrUnknownType},
	}
	for _, b := range bad {
		if err := protocol.ValidateCommand(&b.c); !errors.Is(err, b.want) {
			t.Errorf("%+q: got %v, want %v", b.c, err, b.want)
		}
	}
}

// Both decoders pass invalid UTF-8 through; ValidateCommand catches it.
func TestDecodedCommandWithInvalidUTF8(t *testing.T) {
	for _, codec := range []protocol.Codec{protocol.JSONCodec{}, protocol.MessagePackCodec{}} {
		c := protocol.Command{Command: "message", Identifier: `{"channel":"EchoChannel"}`, Data: "{\"action\":\"echo\",\"text\":\"\xfe\"}"}
		frame, err := codec.AppendCommand(nil, &c)
		if err != nil {
			t.Fatal(err)
		}
		var got protocol.Command
		if err := codec.DecodeCommand(frame, &got); err != nil {
			t.Fatalf("%T: %v", codec, err)
		}
		err = protocol.ValidateCommand(&got)
		if !errors.Is(err, protocol.ErrInvalidUTF8) {
			t.Errorf("%T: ValidateCommand = %v, want ErrInvalidUTF8", codec, err)
		}
	}
}

func BenchmarkValidateCommand(b *testing.B) {
	c := protocol.Command{
		Command:    "message",
		Identifier: `{"channel":"ChatChannel","room":"lobby"}`,
		Data:       `{"action":"speak","text":"` + strings.Repeat("héllo wörld ", 20) + `"}`,
	}
	b.SetBytes(int64(len(c.Identifier) + len(c.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := protocol.ValidateCommand(&c); err != nil {
			b.Fatal(err)
		}
	}
}
