package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Format is the encoding of a [Payload].
type Format uint8

// Payload formats.
const (
	FormatJSON Format = iota + 1
	FormatMessagePack
)

func (f Format) String() string {
	switch f {
	case FormatJSON:
		return "json"
	case FormatMessagePack:
		return "msgpack"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Payload is a raw value in a known encoding: the "message" of a server
// frame, kept undecoded until someone asks for it.
//
// A Payload returned by [Codec.DecodeMessage] aliases the frame it came
// from; [Payload.Clone] makes it independent. Payloads are immutable values
// and safe to share between goroutines once cloned.
type Payload struct {
	format Format
	raw    []byte
}

// RawJSON wraps JSON text as a Payload without validating or copying it.
func RawJSON(b []byte) Payload { return Payload{format: FormatJSON, raw: b} }

// RawMessagePack wraps one MessagePack value as a Payload without validating
// or copying it.
func RawMessagePack(b []byte) Payload { return Payload{format: FormatMessagePack, raw: b} }

// MarshalJSONPayload encodes v with encoding/json.
func MarshalJSONPayload(v any) (Payload, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Payload{}, err
	}
	return RawJSON(b), nil
}

// Format reports the payload's encoding; 0 for the zero Payload.
func (p Payload) Format() Format { return p.format }

// Bytes returns the raw encoded value. The caller must not modify it.
func (p Payload) Bytes() []byte { return p.raw }

// IsZero reports whether p holds no value (the frame had no "message").
func (p Payload) IsZero() bool { return len(p.raw) == 0 }

// Clone returns a copy of p that shares no memory with the frame it was
// decoded from.
func (p Payload) Clone() Payload {
	if p.raw == nil {
		return p
	}
	return Payload{format: p.format, raw: bytes.Clone(p.raw)}
}

// Decode unmarshals the payload into v with the semantics of encoding/json
// for either codec: `json` struct tags, case-insensitive field names,
// json.Unmarshaler and encoding.TextUnmarshaler, numbers into interface{}
// as float64, unknown fields ignored, an error for a value of the wrong
// type. A MessagePack payload decodes exactly as its JSON form
// ([Payload.JSON]) would, so one struct decodes the same from either codec;
// a MessagePack payload must be exactly one well-formed value with a JSON
// form (no extension types, NaN or binary map keys).
//
// Which fields are set when Decode returns an error is unspecified.
func (p Payload) Decode(v any) error {
	switch p.format {
	case FormatJSON:
		return unmarshalJSON(p.raw, v)
	case FormatMessagePack:
		return decodeMessagePack(p.raw, v)
	}
	return fmt.Errorf("%w: empty payload", ErrInvalidField)
}

// JSON returns the payload as JSON text, transcoding MessagePack (map key
// order is kept). It fails with ErrUnsupported for values JSON cannot hold
// (extension types, NaN, non-string map keys other than integers).
func (p Payload) JSON() ([]byte, error) {
	return p.AppendJSON(nil)
}

// AppendJSON appends the payload as JSON text to dst.
func (p Payload) AppendJSON(dst []byte) ([]byte, error) {
	switch p.format {
	case FormatJSON:
		return append(dst, p.raw...), nil
	case FormatMessagePack:
		return msgpackToJSON(dst, p.raw)
	}
	return dst, fmt.Errorf("%w: empty payload", ErrInvalidField)
}

// AppendMessagePack appends the payload as one MessagePack value to dst,
// transcoding JSON (object key order is kept).
func (p Payload) AppendMessagePack(dst []byte) ([]byte, error) {
	switch p.format {
	case FormatMessagePack:
		return append(dst, p.raw...), nil
	case FormatJSON:
		return jsonToMsgpack(dst, p.raw)
	}
	return dst, fmt.Errorf("%w: empty payload", ErrInvalidField)
}

// String returns the payload as JSON text, or a description of why it cannot
// be shown. It is meant for logs and debugging.
func (p Payload) String() string {
	if p.IsZero() {
		return "<none>"
	}
	b, err := p.JSON()
	if err != nil {
		return fmt.Sprintf("<%s payload, %d bytes: %v>", p.format, len(p.raw), err)
	}
	return string(b)
}
