package protocol

import (
	"fmt"
)

// MessagePackCodec is the "actioncable-v1-msgpack" codec: binary frames
// holding MessagePack maps with the same keys as the JSON frames (AnyCable's
// layout). A channel message's "message" is a MessagePack value; a
// command's "identifier" and "data" stay JSON strings, as in ActionCable.
type MessagePackCodec struct{}

// Subprotocol returns "actioncable-v1-msgpack".
func (MessagePackCodec) Subprotocol() string { return SubprotocolMessagePack }

// Binary returns true: MessagePack frames are binary frames.
func (MessagePackCodec) Binary() bool { return true }

func mpDecodeError(e *mpErr, detail string) error {
	return &DecodeError{Codec: SubprotocolMessagePack, Offset: e.off, Detail: detail + ": " + e.err.Error(), Err: ErrMalformed}
}

// mpMembers calls fn for each member of the map at b[0] whose key is a
// string, with the value's span, and checks that the map is all of b.
func mpMembers(b []byte, what string, fn func(key []byte, vs, ve int)) error {
	kind, hdr, n, err := mpHeader(b, 0)
	if err != nil {
		return mpDecodeError(err, what)
	}
	if kind != 'm' {
		return &DecodeError{Codec: SubprotocolMessagePack, Offset: 0, Detail: what + " is not a map", Err: ErrMalformed}
	}
	i := hdr
	for ; n > 0; n-- {
		key, kend, isStr, err := mpString(b, i)
		if err != nil {
			return mpDecodeError(err, what+" key")
		}
		vend, err := mpSkip(b, kend)
		if err != nil {
			return mpDecodeError(err, what+" value")
		}
		if isStr {
			fn(key, kend, vend)
		}
		i = vend
	}
	if i != len(b) {
		return &DecodeError{Codec: SubprotocolMessagePack, Offset: i, Detail: "data after the " + what, Err: ErrMalformed}
	}
	return nil
}

// DecodeMessage decodes one server frame; see [JSONCodec.DecodeMessage].
func (MessagePackCodec) DecodeMessage(frame []byte, m *Message) error {
	m.Reset()
	var (
		unknownType []byte
		haveType    bool
		haveID      bool
		fieldErr    error
	)
	err := mpMembers(frame, "frame", func(key []byte, vs, ve int) {
		v := frame[vs:ve]
		switch string(key) {
		case "type":
			s, _, ok, _ := mpString(v, 0)
			if !ok {
				fieldErr = fieldError(SubprotocolMessagePack, "type", "a string")
				return
			}
			// The last "type" wins, as for every other key.
			t, known := parseType(s)
			unknownType = nil
			if !known {
				unknownType = s
			}
			m.Type, haveType = t, true
		case "identifier":
			s, _, ok, _ := mpString(v, 0)
			if !ok {
				fieldErr = fieldError(SubprotocolMessagePack, "identifier", "a string")
				return
			}
			m.setIdentifier('m', s, appendRaw)
			haveID = true
		case "message":
			m.Body = RawMessagePack(v)
		case "reason":
			if s, _, ok, _ := mpString(v, 0); ok {
				m.Reason = string(s)
			} else if v[0] != 0xc0 {
				fieldErr = fieldError(SubprotocolMessagePack, "reason", "a string")
			}
		case "reconnect":
			switch v[0] {
			case 0xc3:
				m.Reconnect, m.HasReconnect = true, true
			case 0xc2:
				m.Reconnect, m.HasReconnect = false, true
			case 0xc0:
			default:
				fieldErr = fieldError(SubprotocolMessagePack, "reconnect", "a boolean")
			}
		}
	})
	if err != nil {
		return err
	}
	return finishDecode(SubprotocolMessagePack, m, haveType, haveID, unknownType, fieldErr)
}

// AppendMessage encodes a server frame. A JSON body is transcoded to
// MessagePack. On error dst is returned as it was.
func (MessagePackCodec) AppendMessage(dst []byte, m *Message) ([]byte, error) {
	orig := dst
	var err error
	switch m.Type {
	case TypeMessage:
		dst = appendMpMapHeader(dst, 2)
		dst = appendMpString(appendMpString(dst, "identifier"), m.Identifier)
		dst = appendMpString(dst, "message")
		if dst, err = m.Body.AppendMessagePack(dst); err != nil {
			return orig, err
		}
		return dst, nil
	case TypeConfirm, TypeReject:
		dst = appendMpMapHeader(dst, 2)
		dst = appendMpString(appendMpString(dst, "identifier"), m.Identifier)
		return appendMpString(appendMpString(dst, "type"), m.Type.String()), nil
	case TypeWelcome, TypePing:
		n := 1
		if !m.Body.IsZero() {
			n = 2
		}
		dst = appendMpMapHeader(dst, n)
		dst = appendMpString(appendMpString(dst, "type"), m.Type.String())
		if n == 2 {
			dst = appendMpString(dst, "message")
			if dst, err = m.Body.AppendMessagePack(dst); err != nil {
				return orig, err
			}
		}
		return dst, nil
	case TypeDisconnect:
		n := 1
		if m.Reason != "" {
			n++
		}
		if m.HasReconnect {
			n++
		}
		dst = appendMpMapHeader(dst, n)
		dst = appendMpString(appendMpString(dst, "type"), "disconnect")
		if m.Reason != "" {
			dst = appendMpString(appendMpString(dst, "reason"), m.Reason)
		}
		if m.HasReconnect {
			b := byte(0xc2)
			if m.Reconnect {
				b = 0xc3
			}
			dst = append(appendMpString(dst, "reconnect"), b)
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%w: message type %v", ErrUnsupported, m.Type)
}

// DecodeCommand decodes one client frame. "data" may be a string (the JSON
// text ActionCable clients send) or a map, which is transcoded to JSON text.
func (MessagePackCodec) DecodeCommand(frame []byte, c *Command) error {
	*c = Command{}
	var fieldErr error
	err := mpMembers(frame, "command", func(key []byte, vs, ve int) {
		v := frame[vs:ve]
		s, _, ok, _ := mpString(v, 0)
		k := string(key)
		switch k {
		case "command", "identifier", "data":
		default:
			return
		}
		if !ok {
			if k == "command" || v[0]&0xf0 != 0x80 && v[0] != 0xde && v[0] != 0xdf {
				fieldErr = fieldError(SubprotocolMessagePack, k, "a string")
				return
			}
			j, err := msgpackToJSON(nil, v)
			if err != nil {
				fieldErr = err
				return
			}
			s = j
		}
		switch k {
		case "command":
			c.Command = string(s)
		case "identifier":
			c.Identifier = string(s)
		case "data":
			c.Data = string(s)
		}
	})
	if err != nil {
		return err
	}
	if fieldErr != nil {
		return fieldErr
	}
	return checkCommand(SubprotocolMessagePack, c)
}

// AppendCommand encodes a client frame.
func (MessagePackCodec) AppendCommand(dst []byte, c *Command) ([]byte, error) {
	withData := c.Data != "" || c.Command == CommandMessage
	n := 2
	if withData {
		n = 3
	}
	dst = appendMpMapHeader(dst, n)
	dst = appendMpString(appendMpString(dst, "command"), c.Command)
	dst = appendMpString(appendMpString(dst, "identifier"), c.Identifier)
	if withData {
		dst = appendMpString(appendMpString(dst, "data"), c.Data)
	}
	return dst, nil
}
