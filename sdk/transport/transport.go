// Package transport is the seam between a consumer and the connections that
// carry ActionCable frames: a [Transport] dials a [Conn], and a Conn moves
// whole frames. A transport knows nothing of channels or subscriptions; it
// only moves bytes that a protocol.Codec understands.
//
// Implementations live in subpackages: websocket (the ActionCable socket
// itself), and the bridge transports that reach the same frames through
// Server-Sent Events or long-polling.
package transport

import (
	"context"
	"errors"
	"fmt"
)

// Names of this module's transports, as their Name methods and
// Describer.TransportName return them. Compare names with these.
const (
	NameWebSocket = "websocket"
	NameSSE       = "sse"
	NameLongPoll  = "longpoll"
	// NameFallback is the fallback transport's own name; its connections
	// describe themselves by the transport that carries them.
	NameFallback = "fallback"
)

// Request describes one connection attempt.
type Request struct {
	// URL is the ActionCable endpoint, e.g. "wss://example.com/cable".
	URL string
	// Header holds handshake headers: Cookie, Authorization, Origin and any
	// the application needs. It has the layout of http.Header (canonical
	// keys), which converts to it directly. Transports must not modify it.
	Header map[string][]string
	// Subprotocols lists the codecs to offer, most preferred first.
	Subprotocols []string
}

// Transport opens connections. Implementations are safe for concurrent use.
type Transport interface {
	// Name is a short lower-case name for logs and events ("websocket").
	Name() string
	// Dial opens one connection. It blocks until the connection is ready to
	// carry frames, ctx is done, or the attempt fails. A cancelled ctx
	// abandons the attempt and returns an error wrapping ctx.Err(); it does
	// not affect a connection already returned.
	Dial(ctx context.Context, req *Request) (Conn, error)
}

// Conn is one open connection carrying whole ActionCable frames.
//
// One goroutine may call ReadFrame while any number call WriteFrame; Close
// may be called from any goroutine, any number of times.
type Conn interface {
	// Subprotocol is the codec the server chose; "" means JSON.
	Subprotocol() string
	// ReadFrame blocks until the next frame arrives and returns it,
	// appended to buf[:0] (pass the previous result back in to reuse its
	// storage). The frame is valid until the next call. When ctx is done
	// the connection is closed and ReadFrame returns ctx's error: after
	// that the Conn is unusable.
	ReadFrame(ctx context.Context, buf []byte) ([]byte, error)
	// WriteFrame sends one frame. It blocks until the frame is handed to
	// the network or ctx is done, which fails the write and closes the
	// connection, since a partial frame cannot be taken back.
	WriteFrame(ctx context.Context, frame []byte) error
	// Close closes the connection, politely when it can (a close frame),
	// within a short bound. It unblocks ReadFrame.
	Close() error
}

// Describer is implemented by connections that can name the transport
// carrying them right now; a fallback connection can move between
// transports while it lives.
type Describer interface {
	TransportName() string
}

// Change reports a connection moving from one transport to another.
type Change struct {
	From, To string
	// Upgrade is set when a background probe moved the connection to a
	// better transport.
	Upgrade bool
	// Reason says why the connection is not on From: on a dial, the
	// failures of the transports tried before To (a hanging one included);
	// on a move down, the stall. It is nil for upgrades.
	Reason error
}

// ChangeNotifier is implemented by transports whose connections can move
// between transports (package fallback). The consumer (sdk/cable)
// registers with it to report the moves as events; nothing else needs to.
type ChangeNotifier interface {
	// OnChange registers f to be told of every change of transport of the
	// connections the transport dials, from the goroutine that made the
	// change; f must not block. Calling remove unregisters f.
	OnChange(f func(Change)) (remove func())
}

// Errors returned by transports, to be tested with errors.Is / errors.As.
var (
	// ErrUnsupportedSubprotocol: the server chose a subprotocol that was not
	// offered, so its frames cannot be read.
	ErrUnsupportedSubprotocol = errors.New("transport: server chose an unsupported subprotocol")
	// ErrFrameTooLarge: a frame exceeded the read limit; the connection was
	// closed with status 1009.
	ErrFrameTooLarge = errors.New("transport: frame exceeds the read limit")
	// ErrClosed: the connection was closed by this side.
	ErrClosed = errors.New("transport: connection closed")
	// ErrNotSent: WriteFrame knows that the frame did not reach the
	// server (the connection, or the bridge session behind it, is gone).
	// The consumer reports it as not connected.
	ErrNotSent = errors.New("transport: frame not sent: the connection is gone")
	// ErrSessionReset: a bridge session ended or no longer has the frames
	// after the client's cursor (evicted, expired, or from another epoch).
	// The connection is over; a new one starts a new session, and the
	// consumer resubscribes. The error's text says which.
	ErrSessionReset = errors.New("bridge session reset")
	// ErrHeaderUnsupported: the platform cannot send a requested handshake
	// header (browsers set Cookie and Origin themselves and allow no others).
	ErrHeaderUnsupported = errors.New("transport: header cannot be set on this platform")
)

// HandshakeError reports a connection attempt that the server (or a proxy)
// answered with an HTTP status instead of an open connection.
type HandshakeError struct {
	StatusCode int
	Err        error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("transport: handshake refused with HTTP %d: %v", e.StatusCode, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// Permanent reports whether retrying the same request cannot help: a 4xx
// other than 408 (timeout) and 429 (rate limited).
func (e *HandshakeError) Permanent() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 && e.StatusCode != 408 && e.StatusCode != 429
}

// CloseError reports a connection the peer closed, with its close status
// (WebSocket close codes; 1006 when the connection dropped without one).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("transport: closed by peer with status %d: %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("transport: closed by peer with status %d", e.Code)
}
