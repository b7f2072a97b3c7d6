package bridgewire

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// LoneSurrogate reports whether the JSON text b holds a \u escape of half
// a UTF-16 surrogate pair without its other half. Decoders disagree on
// those: Go's turns one into U+FFFD, Ruby's (Rails) refuses the text, so
// the command Rails would get is not the one the client sent. A malformed
// \u escape is not one (a JSON decoder refuses the text anyway).
func LoneSurrogate(b []byte) bool {
	pendingHigh := false
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			if pendingHigh {
				return true
			}
			continue
		}
		i++
		if b[i] != 'u' || i+4 >= len(b) {
			if pendingHigh {
				return true
			}
			continue
		}
		n, err := strconv.ParseUint(string(b[i+1:i+5]), 16, 16)
		if err != nil {
			return pendingHigh
		}
		i += 4
		switch {
		case 0xD800 <= n && n <= 0xDBFF:
			if pendingHigh {
				return true
			}
			pendingHigh = true
		case 0xDC00 <= n && n <= 0xDFFF:
			if !pendingHigh {
				return true
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return true
			}
		}
	}
	return pendingHigh
}

// ValidText returns b, or a copy of it with each run of bytes that is not
// UTF-8 replaced by U+FFFD, as a browser decodes an event stream. What a
// bridge hands clients goes out as text (a WebSocket text frame, an event
// stream, a JSON answer), where invalid UTF-8 makes a browser fail the
// WebSocket (RFC 6455 §8.1); a frame that stays unacknowledged would fail
// every re-attach at its cursor. Rails never sends such bytes; a broken or
// malicious upstream must not wedge a session with them.
func ValidText(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return bytes.ToValidUTF8(b, []byte("\uFFFD"))
}
