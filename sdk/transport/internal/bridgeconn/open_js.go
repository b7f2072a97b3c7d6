//go:build js

package bridgeconn

import (
	"context"

	"github.com/cableway/cableway/sdk/transport"
)

// DialSSE opens a session on the bridge at base for the connection req
// asks for and reads it with down: under GOOS=js with the two requests of
// CreateFor and Open (the browser's EventSource reconnects to the URL it
// was given, so it is given the session's own).
func DialSSE(ctx context.Context, down Downstream, doer Doer, base string, req *transport.Request) (*Conn, error) {
	s, err := CreateFor(ctx, doer, base, req)
	if err != nil {
		return nil, err
	}
	return Open(s, down), nil
}
