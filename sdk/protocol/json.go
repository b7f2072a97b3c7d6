package protocol

import (
	"fmt"
)

// Subprotocol names, as offered in Sec-WebSocket-Protocol.
const (
	SubprotocolJSON        = "actioncable-v1-json"
	SubprotocolMessagePack = "actioncable-v1-msgpack"
)

// Codec turns frames into bytes and back. Implementations are stateless and
// safe for concurrent use.
//
// Decode methods overwrite their destination; slices in it may alias the
// input frame. Append methods append one encoded frame to dst and return
// the extended slice.
type Codec interface {
	// Subprotocol is the WebSocket subprotocol this codec speaks.
	Subprotocol() string
	// Binary reports whether frames travel as binary (true) or text frames.
	Binary() bool
	DecodeMessage(frame []byte, m *Message) error
	AppendMessage(dst []byte, m *Message) ([]byte, error)
	DecodeCommand(frame []byte, c *Command) error
	AppendCommand(dst []byte, c *Command) ([]byte, error)
}

// CodecFor returns the codec of a subprotocol name. The empty name (a
// server that negotiated no subprotocol) is JSON, as in every Rails version.
func CodecFor(subprotocol string) (Codec, bool) {
	switch subprotocol {
	case SubprotocolJSON, "":
		return JSONCodec{}, true
	case SubprotocolMessagePack:
		return MessagePackCodec{}, true
	}
	return nil, false
}

// JSONCodec is the "actioncable-v1-json" codec: text frames holding JSON
// objects, as every Rails server speaks.
type JSONCodec struct{}

// Subprotocol returns "actioncable-v1-json".
func (JSONCodec) Subprotocol() string { return SubprotocolJSON }

// Binary returns false: JSON frames are text frames.
func (JSONCodec) Binary() bool { return false }

func jsonDecodeError(e *jsonErr, detail string) error {
	return &DecodeError{Codec: SubprotocolJSON, Offset: e.off, Detail: detail + ": " + e.err.Error(), Err: ErrMalformed}
}

func fieldError(codec, key, want string) error {
	return &DecodeError{Codec: codec, Offset: -1, Detail: fmt.Sprintf("%q must be %s", key, want), Err: ErrInvalidField}
}

// jsonKey returns the key of an object member without quotes, unescaping
// it (rare) when needed.
func jsonKey(raw []byte, escaped bool) []byte {
	if !escaped {
		return raw[1 : len(raw)-1]
	}
	return appendUnescaped(nil, raw)
}

// DecodeMessage decodes one server frame. Only the envelope is parsed: the
// "message" value is kept as a raw span in m.Body. Unknown keys are skipped.
// A frame whose "type" is unknown returns a *DecodeError wrapping
// ErrUnknownType, with m otherwise filled in.
func (JSONCodec) DecodeMessage(frame []byte, m *Message) error {
	m.Reset()
	var (
		unknownType []byte
		haveType    bool
		haveID      bool
		fieldErr    error
	)
	start := skipWS(frame, 0)
	end, jerr := objectMembers(frame, start, func(rawKey []byte, esc bool, vs, ve int) *jsonErr {
		v := frame[vs:ve]
		switch string(jsonKey(rawKey, esc)) {
		case "type":
			if v[0] != '"' {
				fieldErr = fieldError(SubprotocolJSON, "type", "a string")
				return nil
			}
			name := v[1 : len(v)-1]
			if hasEscape(name) {
				name = appendUnescaped(nil, v)
			}
			// The last "type" wins, as for every other key.
			t, ok := parseType(name)
			unknownType = nil
			if !ok {
				unknownType = name
			}
			m.Type, haveType = t, true
		case "identifier":
			switch v[0] {
			case '"':
				m.setIdentifier('j', v, appendUnescaped)
			case '{':
				// Lenient: a server that sends the identifier as an object.
				m.setIdentifier('j', v, appendRaw)
			default:
				fieldErr = fieldError(SubprotocolJSON, "identifier", "a string")
				return nil
			}
			haveID = true
		case "message":
			m.Body = RawJSON(v)
		case "reason":
			if v[0] == '"' {
				m.Reason = string(appendUnescaped(nil, v))
			} else if v[0] != 'n' {
				fieldErr = fieldError(SubprotocolJSON, "reason", "a string")
			}
		case "reconnect":
			switch v[0] {
			case 't':
				m.Reconnect, m.HasReconnect = true, true
			case 'f':
				m.Reconnect, m.HasReconnect = false, true
			case 'n':
			default:
				fieldErr = fieldError(SubprotocolJSON, "reconnect", "a boolean")
			}
		}
		return nil
	})
	if jerr != nil {
		return jsonDecodeError(jerr, "frame")
	}
	if i := skipWS(frame, end); i != len(frame) {
		return jsonDecodeError(&jsonErr{i, errJSONSyntax}, "data after the frame object")
	}
	return finishDecode(SubprotocolJSON, m, haveType, haveID, unknownType, fieldErr)
}

// finishDecode applies the checks both codecs share once the envelope has
// been scanned.
func finishDecode(codec string, m *Message, haveType, haveID bool, unknownType []byte, fieldErr error) error {
	if fieldErr != nil {
		return fieldErr
	}
	if unknownType != nil {
		return &DecodeError{Codec: codec, Offset: -1, Type: string(unknownType), Err: ErrUnknownType}
	}
	if !haveType {
		if !haveID {
			return &DecodeError{Codec: codec, Offset: -1, Detail: "frame has neither a type nor an identifier", Err: ErrInvalidField}
		}
		if m.Body.IsZero() {
			return &DecodeError{Codec: codec, Offset: -1, Detail: "channel message without a \"message\"", Err: ErrInvalidField}
		}
	}
	if (m.Type == TypeConfirm || m.Type == TypeReject) && !haveID {
		return &DecodeError{Codec: codec, Offset: -1, Detail: m.Type.String() + " without an identifier", Err: ErrInvalidField}
	}
	return nil
}

func hasEscape(s []byte) bool {
	for _, c := range s {
		if c == '\\' {
			return true
		}
	}
	return false
}

// AppendMessage encodes a server frame with keys in the order Rails writes
// them. A MessagePack body is transcoded to JSON. On error dst is returned
// as it was.
func (JSONCodec) AppendMessage(dst []byte, m *Message) ([]byte, error) {
	orig := dst
	var err error
	switch m.Type {
	case TypeMessage:
		dst = append(dst, `{"identifier":`...)
		dst = appendJSONString(dst, m.Identifier)
		dst = append(dst, `,"message":`...)
		if dst, err = m.Body.AppendJSON(dst); err != nil {
			return orig, err
		}
	case TypeConfirm, TypeReject:
		dst = append(dst, `{"identifier":`...)
		dst = appendJSONString(dst, m.Identifier)
		dst = append(dst, `,"type":"`...)
		dst = append(dst, m.Type.String()...)
		dst = append(dst, '"')
	case TypeWelcome, TypePing:
		dst = append(dst, `{"type":"`...)
		dst = append(dst, m.Type.String()...)
		dst = append(dst, '"')
		if !m.Body.IsZero() {
			dst = append(dst, `,"message":`...)
			if dst, err = m.Body.AppendJSON(dst); err != nil {
				return orig, err
			}
		}
	case TypeDisconnect:
		dst = append(dst, `{"type":"disconnect"`...)
		if m.Reason != "" {
			dst = append(dst, `,"reason":`...)
			dst = appendJSONString(dst, m.Reason)
		}
		if m.HasReconnect {
			if m.Reconnect {
				dst = append(dst, `,"reconnect":true`...)
			} else {
				dst = append(dst, `,"reconnect":false`...)
			}
		}
	default:
		return dst, fmt.Errorf("%w: message type %v", ErrUnsupported, m.Type)
	}
	return append(dst, '}'), nil
}

// DecodeCommand decodes one client frame. "identifier" and "data" are
// normally strings; an object is accepted too and kept as its JSON text.
func (JSONCodec) DecodeCommand(frame []byte, c *Command) error {
	*c = Command{}
	var fieldErr error
	str := func(key string, v []byte, lenient bool) string {
		switch {
		case v[0] == '"':
			return string(appendUnescaped(nil, v))
		case lenient && v[0] == '{':
			return string(v)
		}
		fieldErr = fieldError(SubprotocolJSON, key, "a string")
		return ""
	}
	start := skipWS(frame, 0)
	end, jerr := objectMembers(frame, start, func(rawKey []byte, esc bool, vs, ve int) *jsonErr {
		v := frame[vs:ve]
		switch k := string(jsonKey(rawKey, esc)); k {
		case "command":
			c.Command = str(k, v, false)
		case "identifier":
			c.Identifier = str(k, v, true)
		case "data":
			c.Data = str(k, v, true)
		}
		return nil
	})
	if jerr != nil {
		return jsonDecodeError(jerr, "command")
	}
	if i := skipWS(frame, end); i != len(frame) {
		return jsonDecodeError(&jsonErr{i, errJSONSyntax}, "data after the command object")
	}
	if fieldErr != nil {
		return fieldErr
	}
	return checkCommand(SubprotocolJSON, c)
}

func checkCommand(codec string, c *Command) error {
	switch c.Command {
	case CommandSubscribe, CommandUnsubscribe, CommandMessage:
	case "":
		return &DecodeError{Codec: codec, Offset: -1, Detail: `command without "command"`, Err: ErrInvalidField}
	default:
		return &DecodeError{Codec: codec, Offset: -1, Type: c.Command, Detail: "unknown command", Err: ErrUnknownType}
	}
	if c.Identifier == "" {
		return &DecodeError{Codec: codec, Offset: -1, Detail: c.Command + ` without "identifier"`, Err: ErrInvalidField}
	}
	return nil
}

// AppendCommand encodes a client frame as the official JavaScript client
// does: command, identifier, then data for "message" commands.
func (JSONCodec) AppendCommand(dst []byte, c *Command) ([]byte, error) {
	dst = append(dst, `{"command":`...)
	dst = appendJSONString(dst, c.Command)
	dst = append(dst, `,"identifier":`...)
	dst = appendJSONString(dst, c.Identifier)
	if c.Data != "" || c.Command == CommandMessage {
		dst = append(dst, `,"data":`...)
		dst = appendJSONString(dst, c.Data)
	}
	return append(dst, '}'), nil
}
