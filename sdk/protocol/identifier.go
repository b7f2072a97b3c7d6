package protocol

import (
	"encoding/json"
	"fmt"
)

// NewIdentifier builds a subscription identifier: a JSON object with
// "channel" first, then the params in the order given. Params alternate keys
// and values, as in log/slog: NewIdentifier("ChatChannel", "room", "lobby",
// "user_id", 42). Values are encoded with encoding/json; pass a
// json.RawMessage to control a nested value's key order.
func NewIdentifier(channel string, params ...any) (string, error) {
	if len(params)%2 != 0 {
		return "", fmt.Errorf("protocol: NewIdentifier: params must be key, value pairs; got %d items", len(params))
	}
	b := []byte(`{"channel":`)
	b = appendJSONString(b, channel)
	for i := 0; i < len(params); i += 2 {
		key, ok := params[i].(string)
		if !ok {
			return "", fmt.Errorf("protocol: NewIdentifier: param %d: key is %T, not a string", i/2, params[i])
		}
		if key == "channel" {
			return "", fmt.Errorf("protocol: NewIdentifier: param %q is reserved", key)
		}
		v, err := json.Marshal(params[i+1])
		if err != nil {
			return "", fmt.Errorf("protocol: NewIdentifier: param %q: %w", key, err)
		}
		b = append(b, ',')
		b = appendJSONString(b, key)
		b = append(b, ':')
		b = append(b, v...)
	}
	return string(append(b, '}')), nil
}

// MustIdentifier is like NewIdentifier but panics on error. It is meant for
// identifiers written in the source, whose params are known to be valid.
func MustIdentifier(channel string, params ...any) string {
	id, err := NewIdentifier(channel, params...)
	if err != nil {
		panic(err)
	}
	return id
}
