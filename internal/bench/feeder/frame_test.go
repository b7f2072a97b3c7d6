package feeder

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// masked encodes one client frame.
func masked(fin bool, op byte, p []byte) []byte {
	h := op
	if fin {
		h |= 0x80
	}
	var b []byte
	switch n := len(p); {
	case n < 126:
		b = []byte{h, 0x80 | byte(n)}
	case n < 1<<16:
		b = []byte{h, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		b = []byte{h, 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	mask := []byte{1, 2, 3, 4}
	b = append(b, mask...)
	for i, c := range p {
		b = append(b, c^mask[i%4])
	}
	return b
}

func TestReadFrame(t *testing.T) {
	long := bytes.Repeat([]byte("y"), 70000)
	var in []byte
	in = append(in, masked(false, opText, []byte(`{"command":`))...)
	in = append(in, masked(true, opPing, []byte("p"))...) // a control frame between fragments
	in = append(in, masked(true, 0, []byte(`"subscribe"}`))...)
	in = append(in, masked(true, opBinary, long)...)
	fr := &frameReader{br: bufio.NewReader(bytes.NewReader(in))}
	for _, want := range []struct {
		op byte
		p  string
	}{{opPing, "p"}, {opText, `{"command":"subscribe"}`}, {opBinary, string(long)}} {
		op, p, err := fr.next()
		if err != nil || op != want.op || string(p) != want.p {
			t.Fatalf("got op %d %.40q %v, want op %d %.40q", op, p, err, want.op, want.p)
		}
	}
}

func TestReadFrameRefuses(t *testing.T) {
	for name, in := range map[string][]byte{
		"unmasked":           {0x81, 0x01, 'x'},
		"over the limit":     masked(true, opText, bytes.Repeat([]byte("z"), maxClientFrame+1)),
		"new message inside": append(masked(false, opText, []byte("a")), masked(true, opText, []byte("b"))...),
		"cut short":          masked(true, opText, []byte("abcdef"))[:8],
		"stray continuation": masked(true, 0, []byte("a")),
	} {
		fr := &frameReader{br: bufio.NewReader(bytes.NewReader(in))}
		if _, _, err := fr.next(); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "feeder") && name != "cut short" {
			t.Errorf("%s: %v does not say it is the feeder's", name, err)
		}
	}
}
