package protocol

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrInvalidUTF8 is wrapped by the error of [ValidateCommand] for a command
// whose text is not valid UTF-8. ActionCable servers close the whole
// connection (WebSocket status 1007) on such a frame, so a relay must refuse
// the command rather than forward it.
var ErrInvalidUTF8 = errors.New("protocol: invalid UTF-8")

// ValidateCommand reports whether c may be sent to an ActionCable server:
// a known command, an identifier, and valid UTF-8 in every field. The
// decoders keep the bytes they were given (MessagePack strings and raw JSON
// text are not checked), so a server or relay that forwards decoded
// commands calls this before sending them on. The error wraps
// [ErrInvalidUTF8], or [ErrInvalidField] / [ErrUnknownType] for a command
// that no decoder would have returned.
func ValidateCommand(c *Command) error {
	if err := checkCommand("command", c); err != nil {
		return err
	}
	for _, f := range [...]struct{ name, v string }{
		{"command", c.Command}, {"identifier", c.Identifier}, {"data", c.Data},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w in %q at byte %d", ErrInvalidUTF8, f.name, invalidAt(f.v))
		}
	}
	return nil
}

// invalidAt is the offset of the first byte of s that does not start a
// valid UTF-8 sequence.
func invalidAt(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return i
			}
		}
	}
	return -1
}
