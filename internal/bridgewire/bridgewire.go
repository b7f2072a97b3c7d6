// Package bridgewire is the one definition of the Cableway bridge's wire
// protocol (server/PROTOCOL.md) that the bridge (server/bridge) and the
// SDK's bridge client (sdk/transport/internal/bridgeconn) share: the JSON
// bodies, the SSE event ids and reset events, the reset reasons and the
// header names. It has no state and does no I/O.
package bridgewire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/cableway/cableway/sdk/protocol"
)

// Header names.
const (
	// TokenHeader carries a session's token (or the "token" parameter).
	TokenHeader = "Cableway-Token"
	// LastEventID is the SSE resume header, "<epoch>:<seq>".
	LastEventID = "Last-Event-ID"
)

// Reasons of a reset: the session cannot give the client a gapless stream
// from its cursor any more; the client starts a new session.
const (
	// ReasonEvicted: frames the client was sent but had not acknowledged
	// were trimmed from the session's resume window.
	ReasonEvicted = "evicted"
	// ReasonBadCursor: the cursor is of another epoch or from the future.
	ReasonBadCursor = "bad_cursor"
	// ReasonEnded: the session is over and its last frame was delivered.
	ReasonEnded = "ended"
)

// ResetEvent is the SSE event name of a reset; its data is a Reset.
const ResetEvent = "reset"

// SessionEvent is the SSE event name of the first event of a stream
// opened by OpenSSEPath: its data is a Created, the session the request
// created. It carries no id, so the stream's cursor starts at 0.
const SessionEvent = "session"

// OpenSSEPath is the path of the single-request open: a GET of it creates
// a session exactly as POST /sessions does (the same credentials and
// query passed to Rails, the same refusals, answered before the stream
// starts) and answers with the session's SSE stream at cursor 0, whose
// first event is a SessionEvent. A client resumes such a stream at the
// session's own URL, GET /sessions/{sid}/sse with Last-Event-ID; a GET of
// OpenSSEPath that carries a Last-Event-ID (an EventSource reconnecting to
// the URL it was given) creates nothing and answers a reset with
// ReasonBadCursor, never a silent new session.
const OpenSSEPath = "/sessions/sse"

// SubscribeParam is the query parameter of OpenSSEPath naming a channel
// identifier to subscribe to as soon as Rails has welcomed the session,
// before the stream starts (repeatable, in order, at most MaxSubscribe).
// They are the session's commands 1…n: the client's first POST /send
// command is n+1. The parameter is the bridge's and is not passed to
// Rails.
const SubscribeParam = "subscribe"

// MaxSubscribe bounds the SubscribeParam values of one request.
const MaxSubscribe = 16

// WebSocketResetPrefix starts the close reason of a re-attached WebSocket
// that is reset ("reset: <reason>").
const WebSocketResetPrefix = "reset"

// Created is the body of a 201 from POST /sessions.
type Created struct {
	SID   string `json:"sid"`
	Token string `json:"token"`
	Epoch uint32 `json:"epoch"`
	// TTL is how long, in seconds, the session survives without requests.
	TTL int `json:"ttl,omitempty"`
	// MaxBody is the largest POST body accepted, in bytes.
	MaxBody int64 `json:"max_body,omitempty"`
}

// Polled is the body of a long-poll answer.
type Polled struct {
	Epoch  uint32            `json:"epoch"`
	Frames []json.RawMessage `json:"frames"`
	// Next is the cursor to send as "after" in the next poll: the sequence
	// number of the last sequenced frame in Frames (pings have none).
	Next uint64 `json:"next"`
	// After, when set, replaces the poll's after: the client acknowledged
	// frames past it through another downstream, so Frames start later.
	After uint64 `json:"after,omitempty"`
	// Reset is set when the cursor's frames are gone: create a new session
	// and resubscribe. Reason says why (a Reason constant).
	Reset  bool   `json:"reset,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Ended is set when the session is over and nothing is left.
	Ended bool `json:"ended,omitempty"`
}

// Command is one entry of a POST /send batch.
type Command struct {
	CSeq  uint64          `json:"cseq"`
	Frame json.RawMessage `json:"frame"`
}

// Error is the body of every refusal (and of /send answers, with Acked).
type Error struct {
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
	Acked  uint64 `json:"acked"`
}

// Reset is the data of an SSE reset event.
type Reset struct {
	Reason string `json:"reason"`
}

// AppendSession appends the SessionEvent of c.
func AppendSession(dst []byte, c Created) []byte {
	body, _ := json.Marshal(c)
	dst = append(dst, "event: "+SessionEvent+"\n"...)
	return AppendData(dst, body)
}

// ParseSession reads the data of a SessionEvent.
func ParseSession(data []byte) (Created, error) {
	var c Created
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("bridgewire: session event: %w", err)
	}
	if c.SID == "" || c.Token == "" {
		return c, errors.New("bridgewire: session event without sid or token")
	}
	return c, nil
}

// AppendEventID appends the SSE line "id: <epoch>:<seq>\n".
func AppendEventID(dst []byte, epoch uint32, seq uint64) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, uint64(epoch), 10)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, '\n')
}

// ParseEventID parses "<epoch>:<seq>".
func ParseEventID(id string) (epoch uint32, seq uint64, ok bool) {
	i := bytes.IndexByte([]byte(id), ':')
	if i < 0 {
		return 0, 0, false
	}
	e, err1 := strconv.ParseUint(id[:i], 10, 32)
	s, err2 := strconv.ParseUint(id[i+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint32(e), s, true
}

// AppendData appends data as the data lines of one SSE event and the blank
// line that ends it. CR, LF and CRLF all end a line for an SSE parser, so
// each starts a new "data:" line: the client's joined data is data with
// every line end turned into LF.
func AppendData(dst, data []byte) []byte {
	for {
		i := bytes.IndexAny(data, "\r\n")
		dst = append(dst, "data: "...)
		if i < 0 {
			dst = append(dst, data...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(dst, '\n')
}

// AppendReset appends a reset event with reason.
func AppendReset(dst []byte, reason string) []byte {
	body, _ := json.Marshal(Reset{Reason: reason})
	dst = append(dst, "event: "+ResetEvent+"\n"...)
	return AppendData(dst, body)
}

// ParseReset reads the reason of a reset event's data.
func ParseReset(data []byte) string {
	var r Reset
	json.Unmarshal(data, &r)
	return r.Reason
}

// Refusal reasons of a POST /send body (the "error" of its 400 answer).
const (
	// SendBadBody: the body is not a JSON array of {cseq, frame}.
	SendBadBody = "bad_body"
	// SendBadCommand: an entry's frame is not a valid command, or its
	// cseq is 0.
	SendBadCommand = "bad_command"
	// SendInvalidUTF8: the body, or the text of a command, is not valid
	// UTF-8.
	SendInvalidUTF8 = "invalid_utf8"
)

// SendError is the refusal of a POST /send body by [ParseSend]: Reason is
// a Send* constant, Detail says what is wrong for a person (and names the
// entry, counted from 0, when one is at fault), Entry is that entry or -1.
// Err, when set, is the underlying error (a *protocol.DecodeError,
// protocol.ErrInvalidUTF8, a JSON syntax error, …).
type SendError struct {
	Reason string
	Detail string
	Entry  int
	Err    error
}

func (e *SendError) Error() string { return "send: " + e.Reason + ": " + e.Detail }

// Unwrap returns Err.
func (e *SendError) Unwrap() error { return e.Err }

// ParseSend reads the body of a POST /send: a JSON array of {cseq, frame}
// entries, each frame one ActionCable command as a JSON object or as a
// JSON string holding its text (server/PROTOCOL.md). It returns the
// entries and their commands, decoded and validated (cmds[i] is batch[i]'s
// frame), or a *SendError: the whole batch is refused when any part of it
// is malformed. An accepted batch has only commands that
// [protocol.ValidateCommand] accepts (valid UTF-8 included), no \u escape
// of a lone surrogate at any level of their JSON text (Go decodes one as
// U+FFFD, Rails refuses the text: the command would not be the client's),
// and cseqs ≥ 1.
func ParseSend(body []byte) (batch []Command, cmds []protocol.Command, err error) {
	if !utf8.Valid(body) {
		// encoding/json would turn the bad bytes of a string frame into
		// U+FFFD and pass those of an object frame on; Rails closes the
		// whole connection (1007) on them.
		return nil, nil, &SendError{Reason: SendInvalidUTF8, Entry: -1,
			Detail: fmt.Sprintf("the body is not valid UTF-8 (byte %d)", invalidUTF8At(body))}
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '[' {
		// encoding/json takes null for an empty slice.
		return nil, nil, &SendError{Reason: SendBadBody, Entry: -1,
			Detail: "want a JSON array of {cseq, frame}"}
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		return nil, nil, &SendError{Reason: SendBadBody, Entry: -1, Err: err,
			Detail: "want a JSON array of {cseq, frame}: " + err.Error()}
	}
	cmds = make([]protocol.Command, len(batch))
	for i, c := range batch {
		frame := []byte(c.Frame)
		lone := LoneSurrogate(frame)
		var str string
		if json.Unmarshal(frame, &str) == nil {
			frame = []byte(str) // the frame as a JSON string
			lone = lone || LoneSurrogate(frame)
		}
		if err := (protocol.JSONCodec{}).DecodeCommand(frame, &cmds[i]); err != nil {
			return nil, nil, &SendError{Reason: SendBadCommand, Entry: i, Err: err,
				Detail: fmt.Sprintf("entry %d: %v", i, err)}
		}
		if err := protocol.ValidateCommand(&cmds[i]); err != nil {
			reason := SendBadCommand
			if errors.Is(err, protocol.ErrInvalidUTF8) {
				reason = SendInvalidUTF8
			}
			return nil, nil, &SendError{Reason: reason, Entry: i, Err: err,
				Detail: fmt.Sprintf("entry %d: %v", i, err)}
		}
		if lone || LoneSurrogate([]byte(cmds[i].Identifier)) || LoneSurrogate([]byte(cmds[i].Data)) {
			return nil, nil, &SendError{Reason: SendInvalidUTF8, Entry: i,
				Detail: fmt.Sprintf("entry %d: a \\u escape of half a surrogate pair is no Unicode text", i)}
		}
		if c.CSeq == 0 {
			return nil, nil, &SendError{Reason: SendBadCommand, Entry: i,
				Detail: fmt.Sprintf("entry %d: cseq must be ≥ 1", i)}
		}
	}
	return batch, cmds, nil
}

// invalidUTF8At is the offset of the first byte of b that does not start
// a valid UTF-8 sequence, or -1.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}
