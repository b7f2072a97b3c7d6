package cable

// canonicalHeaderKey returns key in the canonical form of an HTTP header
// name, as net/textproto.CanonicalMIMEHeaderKey does: the first letter and
// every letter after a hyphen in upper case, the other letters in lower
// case ("user-agent" → "User-Agent"). A key holding a byte that a header
// name may not hold (a space, a colon, a non-ASCII byte) is returned
// unchanged. It is here so that the WebAssembly build does not link
// net/textproto, which brings the net package and its start-up work.
func canonicalHeaderKey(key string) string {
	upper := true
	canonical := true
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !isTokenByte(c) {
			return key
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if canonical {
		return key
	}
	b := []byte(key)
	upper = true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	return string(b)
}

// isTokenByte reports whether c may appear in a header name: a tchar of
// RFC 9110, section 5.6.2.
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
