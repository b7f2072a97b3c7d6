package protocol

import (
	"bytes"
	"testing"
)

// refScanString is a byte-at-a-time reference for scanString: the end of
// the string starting at b[0] == '"', whether it holds escapes, and ok.
func refScanString(b []byte) (end int, escaped, ok bool) {
	hex := func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c < 0x20:
			return 0, false, false
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+6 > len(b) || !hex(b[i+2]) || !hex(b[i+3]) || !hex(b[i+4]) || !hex(b[i+5]) {
					return 0, false, false
				}
				i += 5
			default:
				return 0, false, false
			}
		}
	}
	return 0, false, false
}

// TestScanStringEveryByteEveryPosition puts each byte value at each
// position of strings of many lengths (so it lands in every lane of a
// word-at-a-time scan, and in the byte-wise tail), with plain bytes of
// several kinds around it, and compares scanString with the reference.
func TestScanStringEveryByteEveryPosition(t *testing.T) {
	fillers := []byte{'a', 0x7f, 0xff, ' ', '!'}
	for _, fill := range fillers {
		for n := 0; n <= 26; n++ {
			for p := 0; p < n; p++ {
				for c := 0; c < 256; c++ {
					b := make([]byte, 0, n+2)
					b = append(b, '"')
					b = append(b, bytes.Repeat([]byte{fill}, n)...)
					b[1+p] = byte(c)
					b = append(b, '"')
					checkScanString(t, b)
					// And without the closing quote: must not run off.
					checkScanString(t, b[:len(b)-1])
				}
			}
		}
	}
	// Escapes straddling word boundaries.
	for n := 0; n <= 20; n++ {
		for _, esc := range []string{`\"`, `\\`, `\u0041`, `\uD83D\uDE00`, `\x`, `\u12`, `\`} {
			b := append([]byte{'"'}, bytes.Repeat([]byte{'a'}, n)...)
			b = append(b, esc...)
			checkScanString(t, b)
			checkScanString(t, append(b, '"'))
			checkScanString(t, append(append(b, "bbbbbbbbbbb"...), '"'))
		}
	}
}

func checkScanString(t *testing.T, b []byte) {
	t.Helper()
	end, esc, err := scanString(b, 0)
	wantEnd, wantEsc, ok := refScanString(b)
	if ok != (err == nil) || end != wantEnd || (ok && esc != wantEsc) {
		t.Fatalf("scanString(%q) = %d, %v, %v; want %d, %v, ok %v", b, end, esc, err, wantEnd, wantEsc, ok)
	}
	if err != nil && (err.off < 0 || err.off > len(b)) {
		t.Fatalf("scanString(%q): error offset %d", b, err.off)
	}
	// The same string embedded after other bytes.
	pre := append([]byte(`{"k":`), b...)
	end2, _, err2 := scanString(pre, 5)
	if (err2 == nil) != ok || (ok && end2 != wantEnd+5) {
		t.Fatalf("scanString at offset 5 of %q = %d, %v", pre, end2, err2)
	}
}
