package protocol

import (
	"bytes"
	"errors"
	"fmt"
)

// Type is the kind of a server frame, the value of its "type" key.
type Type uint8

// Server frame types. TypeMessage is a channel message: a frame with an
// identifier and a message but no type.
const (
	TypeMessage Type = iota
	TypeWelcome
	TypePing
	TypeConfirm
	TypeReject
	TypeDisconnect
)

var typeNames = [...]string{
	TypeMessage:    "",
	TypeWelcome:    "welcome",
	TypePing:       "ping",
	TypeConfirm:    "confirm_subscription",
	TypeReject:     "reject_subscription",
	TypeDisconnect: "disconnect",
}

// String returns the wire name of t ("" for TypeMessage).
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// parseType maps a wire name to a Type without allocating.
func parseType(b []byte) (Type, bool) {
	switch string(b) {
	case "welcome":
		return TypeWelcome, true
	case "ping":
		return TypePing, true
	case "confirm_subscription":
		return TypeConfirm, true
	case "reject_subscription":
		return TypeReject, true
	case "disconnect":
		return TypeDisconnect, true
	}
	return 0, false
}

// Disconnect reasons sent by Rails (ActionCable::INTERNAL[:disconnect_reasons]).
const (
	ReasonUnauthorized   = "unauthorized"
	ReasonInvalidRequest = "invalid_request"
	ReasonServerRestart  = "server_restart"
	ReasonRemote         = "remote"
)

// Message is one decoded server frame.
//
// A Message is meant to be reused across calls to [Codec.DecodeMessage]:
// decoding overwrites every field and reuses the Identifier's storage, so a
// read loop that decodes into the same Message allocates nothing per frame,
// and a run of frames for one identifier unescapes it once. Identifier is
// owned by the Message and valid until the next decode: treat it as
// read-only. Body aliases the decoded frame; copy it (see [Payload.Clone])
// before the frame buffer is reused.
type Message struct {
	Type Type
	// Identifier is the subscription identifier, unescaped: the exact bytes
	// of the identifier string the client subscribed with.
	Identifier []byte
	// Body is the raw "message" value: the channel payload of a TypeMessage
	// frame, the unix time of a TypePing. Body.IsZero() when absent.
	Body Payload
	// Reason and Reconnect are set on TypeDisconnect frames. HasReconnect
	// tells whether the frame carried a "reconnect" key at all (Rails < 6.0
	// does not send one).
	Reason       string
	Reconnect    bool
	HasReconnect bool

	// idVal holds the decoded identifier that Identifier points at, and
	// idRaw the encoded form it came from (empty when unknown): the next
	// frame with the same encoded identifier reuses idVal.
	idVal, idRaw []byte
	idCodec      byte // 'j' or 'm': the codec idRaw is encoded in
}

// Reset clears m for reuse, keeping its storage.
func (m *Message) Reset() {
	*m = Message{Identifier: m.Identifier[:0], idVal: m.idVal, idRaw: m.idRaw, idCodec: m.idCodec}
}

// setIdentifier sets Identifier from its encoded form raw, decoding with
// decode unless raw is the encoded form of the identifier already held.
func (m *Message) setIdentifier(codec byte, raw []byte, decode func(dst, raw []byte) []byte) {
	if m.idCodec != codec || len(m.idRaw) == 0 || !bytes.Equal(raw, m.idRaw) {
		m.idVal = decode(m.idVal[:0], raw)
		m.idRaw = append(m.idRaw[:0], raw...)
		m.idCodec = codec
	}
	m.Identifier = m.idVal
}

func appendRaw(dst, raw []byte) []byte { return append(dst, raw...) }

// Command is one client frame.
type Command struct {
	// Command is "subscribe", "unsubscribe" or "message".
	Command string
	// Identifier is the subscription identifier, sent as a string.
	Identifier string
	// Data is the JSON text of a "message" command's data (an object with an
	// "action" key); empty for subscribe and unsubscribe. ActionCable sends it
	// as a string in both codecs.
	Data string
}

// Client command names.
const (
	CommandSubscribe   = "subscribe"
	CommandUnsubscribe = "unsubscribe"
	CommandMessage     = "message"
)

// Sentinel errors. Decoding errors are *DecodeError values that wrap one of
// these, so callers test with errors.Is.
var (
	// ErrMalformed: the bytes are not a well-formed frame of the codec.
	ErrMalformed = errors.New("protocol: malformed frame")
	// ErrUnknownType: a well-formed frame with a "type" this package does not
	// know. The frame is otherwise intact; the DecodeError carries the type.
	ErrUnknownType = errors.New("protocol: unknown frame type")
	// ErrInvalidField: a known key holds a value of the wrong kind.
	ErrInvalidField = errors.New("protocol: invalid field")
	// ErrUnsupported: a value the codec cannot represent.
	ErrUnsupported = errors.New("protocol: unsupported value")
)

// DecodeError describes a frame that could not be decoded.
type DecodeError struct {
	Codec  string // codec name
	Offset int    // byte offset where decoding stopped, -1 if unknown
	Detail string // what was wrong, for people
	Type   string // the unknown type, for ErrUnknownType
	Err    error  // one of the sentinel errors above
}

func (e *DecodeError) Error() string {
	s := e.Err.Error()
	if e.Type != "" {
		s += fmt.Sprintf(" %q", e.Type)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf(" (%s, offset %d)", e.Codec, e.Offset)
	} else {
		s += " (" + e.Codec + ")"
	}
	return s
}

func (e *DecodeError) Unwrap() error { return e.Err }
