//go:build js

package protocol

import "encoding/json"

// unmarshalJSON decodes JSON text into v with encoding/json. The faster
// decoder used natively (goccy/go-json, see jsondecode.go) would add ~0.7 MB
// brotli to the wasm build; encoding/json is linked there anyway.
func unmarshalJSON(b []byte, v any) error { return json.Unmarshal(b, v) }
