package bridgewire

import "strconv"

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
