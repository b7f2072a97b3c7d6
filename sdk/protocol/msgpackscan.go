package protocol

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
)

// This file holds a MessagePack scanner for envelopes (find spans, skip
// values) and the transcoders between MessagePack and JSON values. Values
// themselves are decoded by mpdecode.go (see Payload.Decode).

var errMsgpackTruncated = errors.New("truncated MessagePack value")

type mpErr struct {
	off int
	err error
}

// mpHeader reads the header of the value at b[i]. kind is one of 's'
// (str), 'b' (bin), 'a' (array), 'm' (map), 'x' (ext), or 'v' for a scalar
// whose whole encoding is `size` bytes. For s/b/x, size is the payload
// length and hdr the header length; for a/m, size is the element count.
func mpHeader(b []byte, i int) (kind byte, hdr, size int, err *mpErr) {
	if i >= len(b) {
		return 0, 0, 0, &mpErr{i, errMsgpackTruncated}
	}
	c := b[i]
	need := func(n int) bool { return len(b)-i >= n }
	be := func(n int) (int, bool) {
		if !need(1 + n) {
			return 0, false
		}
		switch n {
		case 1:
			return int(b[i+1]), true
		case 2:
			return int(binary.BigEndian.Uint16(b[i+1:])), true
		default:
			return int(binary.BigEndian.Uint32(b[i+1:])), true
		}
	}
	lenHeader := func(k byte, n int) (byte, int, int, *mpErr) {
		l, ok := be(n)
		if !ok {
			return 0, 0, 0, &mpErr{i, errMsgpackTruncated}
		}
		return k, 1 + n, l, nil
	}
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return 'v', 1, 1, nil
	case c&0xf0 == 0x80:
		return 'm', 1, int(c & 0x0f), nil
	case c&0xf0 == 0x90:
		return 'a', 1, int(c & 0x0f), nil
	case c&0xe0 == 0xa0:
		return 's', 1, int(c & 0x1f), nil
	}
	switch c {
	case 0xc4:
		return lenHeader('b', 1)
	case 0xc5:
		return lenHeader('b', 2)
	case 0xc6:
		return lenHeader('b', 4)
	case 0xc7: // ext8: len, type
		k, h, l, e := lenHeader('x', 1)
		return k, h + 1, l, e
	case 0xc8:
		k, h, l, e := lenHeader('x', 2)
		return k, h + 1, l, e
	case 0xc9:
		k, h, l, e := lenHeader('x', 4)
		return k, h + 1, l, e
	case 0xca:
		return 'v', 5, 5, nil
	case 0xcb:
		return 'v', 9, 9, nil
	case 0xcc, 0xd0:
		return 'v', 2, 2, nil
	case 0xcd, 0xd1:
		return 'v', 3, 3, nil
	case 0xce, 0xd2:
		return 'v', 5, 5, nil
	case 0xcf, 0xd3:
		return 'v', 9, 9, nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16, plus the type byte
		return 'x', 2, 1 << (c - 0xd4), nil
	case 0xd9:
		return lenHeader('s', 1)
	case 0xda:
		return lenHeader('s', 2)
	case 0xdb:
		return lenHeader('s', 4)
	case 0xdc:
		return lenHeader('a', 2)
	case 0xdd:
		return lenHeader('a', 4)
	case 0xde:
		return lenHeader('m', 2)
	case 0xdf:
		return lenHeader('m', 4)
	}
	return 0, 0, 0, &mpErr{i, errors.New("invalid MessagePack code 0xc1")}
}

// mpSkip returns the index just past the value at b[i]. It is iterative, so
// nesting depth costs no stack.
func mpSkip(b []byte, i int) (int, *mpErr) {
	for pending := 1; pending > 0; pending-- {
		kind, hdr, size, err := mpHeader(b, i)
		if err != nil {
			return 0, err
		}
		switch kind {
		case 'v':
			if len(b)-i < size {
				return 0, &mpErr{i, errMsgpackTruncated}
			}
			i += size
		case 's', 'b', 'x':
			if len(b)-i-hdr < size {
				return 0, &mpErr{i, errMsgpackTruncated}
			}
			i += hdr + size
		case 'a', 'm':
			if kind == 'm' {
				size *= 2
			}
			i += hdr
			// Every element needs at least one byte: a count larger than
			// what is left cannot be satisfied.
			if size > len(b)-i {
				return 0, &mpErr{i, errMsgpackTruncated}
			}
			pending += size
		}
	}
	return i, nil
}

// mpString returns the bytes of the str (or bin) value at b[i] and the
// index past it; ok is false when the value is not a string.
func mpString(b []byte, i int) (s []byte, end int, ok bool, err *mpErr) {
	kind, hdr, size, err := mpHeader(b, i)
	if err != nil {
		return nil, 0, false, err
	}
	if kind != 's' && kind != 'b' {
		end, err := mpSkip(b, i)
		return nil, end, false, err
	}
	if len(b)-i-hdr < size {
		return nil, 0, false, &mpErr{i, errMsgpackTruncated}
	}
	return b[i+hdr : i+hdr+size], i + hdr + size, true, nil
}

func appendMpMapHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(dst, 0xde, byte(n>>8), byte(n))
	}
	return append(dst, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendMpArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(dst, 0xdc, byte(n>>8), byte(n))
	}
	return append(dst, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendMpString[S string | []byte](dst []byte, s S) []byte {
	n := len(s)
	switch {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, 0xda, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, s...)
}

func appendMpInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= 0x7f, v < 0 && v >= -32:
		return append(dst, byte(v))
	case v >= math.MinInt8 && v <= math.MaxInt8:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16 && v <= math.MaxInt16:
		return append(dst, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		return append(dst, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

// msgpackToJSON appends the single MessagePack value in b as JSON text. On
// error it returns dst as it was: no partial value is left appended.
func msgpackToJSON(dst, b []byte) ([]byte, error) {
	out, end, err := mpToJSON(dst, b, 0, 0)
	if err != nil && err.err == errUnsupportedJSON {
		// Malformed input is reported as such even when a value JSON
		// cannot hold comes before the flaw.
		if e, serr := mpSkip(b, 0); serr != nil {
			err = serr
		} else if e != len(b) {
			return dst, &DecodeError{Codec: SubprotocolMessagePack, Offset: e, Detail: "data after the value", Err: ErrMalformed}
		}
	}
	if err != nil {
		return dst, &DecodeError{Codec: SubprotocolMessagePack, Offset: err.off, Detail: err.err.Error(), Err: transcodeSentinel(err.err)}
	}
	if end != len(b) {
		return dst, &DecodeError{Codec: SubprotocolMessagePack, Offset: end, Detail: "data after the value", Err: ErrMalformed}
	}
	return out, nil
}

var errUnsupportedJSON = errors.New("value has no JSON form")

// transcodeSentinel maps a scanner error to the sentinel a transcoding
// error wraps: ErrUnsupported for well-formed values the other format
// cannot hold, ErrMalformed for the rest.
func transcodeSentinel(err error) error {
	if err == errUnsupportedJSON {
		return ErrUnsupported
	}
	return ErrMalformed
}

// isMpInt reports whether c is the first byte of a MessagePack integer.
func isMpInt(c byte) bool {
	return c <= 0x7f || c >= 0xe0 || 0xcc <= c && c <= 0xd3
}

func mpToJSON(dst, b []byte, i, depth int) ([]byte, int, *mpErr) {
	kind, hdr, size, err := mpHeader(b, i)
	if err != nil {
		return dst, 0, err
	}
	// The same bound as skipValue: containers may nest maxDepth deep.
	if (kind == 'a' || kind == 'm') && depth >= maxDepth {
		return dst, 0, &mpErr{i, errJSONDepth}
	}
	if kind == 's' || kind == 'b' || kind == 'x' {
		if len(b)-i-hdr < size {
			return dst, 0, &mpErr{i, errMsgpackTruncated}
		}
	} else if kind == 'v' && len(b)-i < size {
		return dst, 0, &mpErr{i, errMsgpackTruncated}
	}
	switch kind {
	case 's':
		return appendJSONString(dst, b[i+hdr:i+hdr+size]), i + hdr + size, nil
	case 'b':
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b[i+hdr:i+hdr+size])
		return append(dst, '"'), i + hdr + size, nil
	case 'x':
		return dst, 0, &mpErr{i, errUnsupportedJSON}
	case 'a', 'm':
		i += hdr
		open, close := byte('['), byte(']')
		if kind == 'm' {
			open, close = '{', '}'
		}
		dst = append(dst, open)
		for n := 0; n < size; n++ {
			if n > 0 {
				dst = append(dst, ',')
			}
			if kind == 'm' {
				// JSON keys are strings: take strings as they are, write
				// integers in decimal, refuse the rest.
				k, _, _, kerr := mpHeader(b, i)
				if kerr != nil {
					return dst, 0, kerr
				}
				switch k {
				case 's':
					dst, i, err = mpToJSON(dst, b, i, depth+1)
				case 'v':
					if !isMpInt(b[i]) {
						return dst, 0, &mpErr{i, errUnsupportedJSON}
					}
					mark := len(dst)
					dst, i, err = mpToJSON(dst, b, i, depth+1)
					if err == nil {
						num := string(dst[mark:])
						dst = appendJSONString(dst[:mark], num)
					}
				default:
					return dst, 0, &mpErr{i, errUnsupportedJSON}
				}
				if err != nil {
					return dst, 0, err
				}
				dst = append(dst, ':')
			}
			dst, i, err = mpToJSON(dst, b, i, depth+1)
			if err != nil {
				return dst, 0, err
			}
		}
		return append(dst, close), i, nil
	}
	// Scalars.
	c := b[i]
	switch {
	case c <= 0x7f:
		return strconv.AppendInt(dst, int64(c), 10), i + 1, nil
	case c >= 0xe0:
		return strconv.AppendInt(dst, int64(int8(c)), 10), i + 1, nil
	}
	p := b[i+1 : i+size]
	switch c {
	case 0xc0:
		dst = append(dst, "null"...)
	case 0xc2:
		dst = append(dst, "false"...)
	case 0xc3:
		dst = append(dst, "true"...)
	case 0xca, 0xcb:
		var f float64
		bits := 32
		if c == 0xca {
			f = float64(math.Float32frombits(binary.BigEndian.Uint32(p)))
		} else {
			f, bits = math.Float64frombits(binary.BigEndian.Uint64(p)), 64
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst, 0, &mpErr{i, errUnsupportedJSON}
		}
		dst = appendJSONFloat(dst, f, bits)
	case 0xcc:
		dst = strconv.AppendUint(dst, uint64(p[0]), 10)
	case 0xcd:
		dst = strconv.AppendUint(dst, uint64(binary.BigEndian.Uint16(p)), 10)
	case 0xce:
		dst = strconv.AppendUint(dst, uint64(binary.BigEndian.Uint32(p)), 10)
	case 0xcf:
		dst = strconv.AppendUint(dst, binary.BigEndian.Uint64(p), 10)
	case 0xd0:
		dst = strconv.AppendInt(dst, int64(int8(p[0])), 10)
	case 0xd1:
		dst = strconv.AppendInt(dst, int64(int16(binary.BigEndian.Uint16(p))), 10)
	case 0xd2:
		dst = strconv.AppendInt(dst, int64(int32(binary.BigEndian.Uint32(p))), 10)
	case 0xd3:
		dst = strconv.AppendInt(dst, int64(binary.BigEndian.Uint64(p)), 10)
	}
	return dst, i + size, nil
}

// appendJSONFloat appends the finite f as encoding/json.Marshal writes a
// float64 (bits 64) or float32 (bits 32): the shortest decimal that reads
// back as f, in exponent form only below 1e-6 or from 1e21 on (as
// ECMAScript does), so a float holding an integer below 1e21 reads back
// into an integer field from either codec.
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 {
		if bits == 64 && (a < 1e-6 || a >= 1e21) || bits == 32 && (float32(a) < 1e-6 || float32(a) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// 1e-07 → 1e-7, as encoding/json writes it.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// jsonToMsgpack appends the single JSON value in b as MessagePack. On error
// it returns dst as it was: no partial value is left appended.
func jsonToMsgpack(dst, b []byte) ([]byte, error) {
	start := skipWS(b, 0)
	out, end, err := jsToMp(dst, b, start, 0)
	if err != nil && err.err == errUnsupportedJSON {
		// Malformed input is reported as such even when a number out of
		// range comes before the flaw.
		if end, serr := skipValue(b, start, 0); serr != nil {
			err = serr
		} else if i := skipWS(b, end); i != len(b) {
			err = &jsonErr{i, errJSONSyntax}
		}
	}
	if err == nil {
		if i := skipWS(b, end); i != len(b) {
			err = &jsonErr{i, errJSONSyntax}
		}
	}
	if err != nil {
		return dst, &DecodeError{Codec: SubprotocolJSON, Offset: err.off, Detail: err.err.Error(), Err: transcodeSentinel(err.err)}
	}
	return out, nil
}

func jsToMp(dst, b []byte, i, depth int) ([]byte, int, *jsonErr) {
	if depth > maxDepth {
		return dst, 0, &jsonErr{i, errJSONDepth}
	}
	end, err := skipValue(b, i, depth)
	if err != nil {
		return dst, 0, err
	}
	v := b[i:end]
	switch c := v[0]; {
	case c == '"':
		if hasEscape(v) {
			return appendMpString(dst, appendUnescaped(nil, v)), end, nil
		}
		return appendMpString(dst, v[1:len(v)-1]), end, nil
	case c == 't':
		return append(dst, 0xc3), end, nil
	case c == 'f':
		return append(dst, 0xc2), end, nil
	case c == 'n':
		return append(dst, 0xc0), end, nil
	case c == '{' || c == '[':
		// Count the members first: MessagePack headers carry the length.
		n := 0
		if c == '{' {
			objectMembers(b, i, func([]byte, bool, int, int) *jsonErr { n++; return nil })
			dst = appendMpMapHeader(dst, n)
			_, err = objectMembers(b, i, func(k []byte, esc bool, vs, _ int) *jsonErr {
				dst = appendMpString(dst, jsonKey(k, esc))
				var e *jsonErr
				dst, _, e = jsToMp(dst, b, vs, depth+1)
				return e
			})
			return dst, end, err
		}
		elems := make([]int, 0, 8)
		j := skipWS(b, i+1)
		for j < end-1 {
			elems = append(elems, j)
			e, _ := skipValue(b, j, depth+1)
			j = skipWS(b, e)
			if j < len(b) && b[j] == ',' {
				j = skipWS(b, j+1)
			}
		}
		dst = appendMpArrayHeader(dst, len(elems))
		for _, s := range elems {
			if dst, _, err = jsToMp(dst, b, s, depth+1); err != nil {
				return dst, 0, err
			}
		}
		return dst, end, nil
	}
	// A number: integers stay integers, the rest become float64.
	s := string(v)
	if n, perr := strconv.ParseInt(s, 10, 64); perr == nil {
		return appendMpInt(dst, n), end, nil
	}
	if n, perr := strconv.ParseUint(s, 10, 64); perr == nil {
		return binary.BigEndian.AppendUint64(append(dst, 0xcf), n), end, nil
	}
	f, perr := strconv.ParseFloat(s, 64)
	if errors.Is(perr, strconv.ErrRange) {
		// Beyond float64 (1e400): MessagePack could only hold ±Inf, which
		// has no JSON form, and encoding/json refuses such numbers too.
		return dst, 0, &jsonErr{i, errUnsupportedJSON}
	}
	if perr != nil {
		return dst, 0, &jsonErr{i, errJSONSyntax}
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(f)), end, nil
}
