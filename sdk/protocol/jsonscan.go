package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small JSON scanner: enough to find the spans of an
// object's values and to unescape strings, without building any values.

// maxDepth bounds nesting in scanned and transcoded values, so hostile input
// cannot exhaust the stack.
const maxDepth = 512

var (
	errJSONSyntax = errors.New("invalid JSON")
	errJSONDepth  = errors.New("nesting deeper than 512")
)

type jsonErr struct {
	off int
	err error
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans the JSON string starting at b[i] == '"'. It returns the
// index just past the closing quote and whether the string holds escapes.
func scanString(b []byte, i int) (end int, escaped bool, err *jsonErr) {
	i++ // opening quote
	for i < len(b) {
		// Skip eight plain bytes at a time (none a quote, a backslash or a
		// control character), then straight to the first special one.
		for len(b)-i >= 8 {
			if m := specialMask(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false, &jsonErr{i, errJSONSyntax}
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return 0, false, &jsonErr{i, errJSONSyntax}
				}
				i += 6
			default:
				return 0, false, &jsonErr{i, errJSONSyntax}
			}
		case c < 0x20:
			return 0, false, &jsonErr{i, errJSONSyntax}
		default:
			i++
		}
	}
	return 0, false, &jsonErr{i, errJSONSyntax}
}

// specialMask has the high bit set in each byte of w that is '"', '\\'
// or below 0x20, and possibly in bytes above such a byte (borrows
// propagate upward), so its lowest set bit marks the first special byte
// exactly. These are the bit tricks of "Bit Twiddling Hacks": a byte is
// zero after XOR with the sought value; a byte is below n when
// subtracting n borrows.
func specialMask(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(x uint64) uint64 { return (x - ones) &^ x & highs }
	return hasZero(w^(ones*'"')) | hasZero(w^(ones*'\\')) | ((w - ones*0x20) &^ w & highs)
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c <= '9':
			r |= rune(c - '0')
		case c >= 'a':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// appendUnescaped appends the contents of the already-scanned JSON string
// s (quotes included) to dst, resolving escapes. Lone surrogates become
// U+FFFD, as in encoding/json.
func appendUnescaped(dst, s []byte) []byte {
	s = s[1 : len(s)-1]
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			// Copy the run up to the next escape in one go.
			j := len(s)
			if k := bytes.IndexByte(s[i+1:], '\\'); k >= 0 {
				j = i + 1 + k
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(s[i+2:i+6])); d != utf8.RuneError {
						r2 = d
						i += 6
					}
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

// skipValue scans the JSON value starting at b[i] (no leading whitespace)
// and returns the index just past it.
func skipValue(b []byte, i, depth int) (int, *jsonErr) {
	if i >= len(b) {
		return 0, &jsonErr{i, errJSONSyntax}
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return 0, &jsonErr{i, errJSONDepth}
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == closer {
			return i + 1, nil
		}
		for {
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return 0, &jsonErr{i, errJSONSyntax}
				}
				end, _, err := scanString(b, i)
				if err != nil {
					return 0, err
				}
				i = skipWS(b, end)
				if i >= len(b) || b[i] != ':' {
					return 0, &jsonErr{i, errJSONSyntax}
				}
				i = skipWS(b, i+1)
			}
			end, err := skipValue(b, i, depth+1)
			if err != nil {
				return 0, err
			}
			i = skipWS(b, end)
			if i >= len(b) {
				return 0, &jsonErr{i, errJSONSyntax}
			}
			if b[i] == closer {
				return i + 1, nil
			}
			if b[i] != ',' {
				return 0, &jsonErr{i, errJSONSyntax}
			}
			i = skipWS(b, i+1)
		}
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	case c == '-' || '0' <= c && c <= '9':
		return skipNumber(b, i)
	}
	return 0, &jsonErr{i, errJSONSyntax}
}

func skipLiteral(b []byte, i int, lit string) (int, *jsonErr) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, &jsonErr{i, errJSONSyntax}
	}
	return i + len(lit), nil
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// skipNumber scans a number following the JSON grammar.
func skipNumber(b []byte, i int) (int, *jsonErr) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return 0, &jsonErr{start, errJSONSyntax}
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return 0, &jsonErr{i, errJSONSyntax}
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return 0, &jsonErr{i, errJSONSyntax}
		}
		i = j
	}
	return i, nil
}

// objectMembers calls fn for each member of the JSON object at b[i] with the
// raw key (quotes included) and the value's span. It returns the index just
// past the object. fn returning an error stops the scan.
func objectMembers(b []byte, i int, fn func(key []byte, keyEscaped bool, vstart, vend int) *jsonErr) (int, *jsonErr) {
	if i >= len(b) || b[i] != '{' {
		return 0, &jsonErr{i, errJSONSyntax}
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, &jsonErr{i, errJSONSyntax}
		}
		kend, kesc, err := scanString(b, i)
		if err != nil {
			return 0, err
		}
		key := b[i:kend]
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return 0, &jsonErr{i, errJSONSyntax}
		}
		vstart := skipWS(b, i+1)
		vend, err := skipValue(b, vstart, 1)
		if err != nil {
			return 0, err
		}
		if err := fn(key, kesc, vstart, vend); err != nil {
			return 0, err
		}
		i = skipWS(b, vend)
		if i >= len(b) {
			return 0, &jsonErr{i, errJSONSyntax}
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, &jsonErr{i, errJSONSyntax}
		}
		i = skipWS(b, i+1)
	}
}

// appendJSONString appends s as a quoted JSON string. Bytes that are not
// valid UTF-8 are passed through unchanged so identifiers survive byte for
// byte; control characters and the quote and backslash are escaped.
func appendJSONString[S string | []byte](dst []byte, s S) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
