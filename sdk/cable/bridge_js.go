//go:build js

package cable

import "github.com/cableway/cableway/sdk/transport/fallback"

// WithBridge is WithTransport(fallback.Bridged(bridgeURL, opts...)).
//
// Deprecated: use that instead. It remains under GOOS=js only, for callers
// not yet moved; natively, package cable no longer links the bridge
// transports unless the program names them.
func WithBridge(bridgeURL string, opts ...fallback.Option) Option {
	return WithTransport(fallback.Bridged(bridgeURL, opts...))
}
