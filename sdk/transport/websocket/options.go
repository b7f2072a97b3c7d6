package websocket

// Option configures a Transport.
type Option func(*options)

// WithReadLimit sets the largest frame, in bytes, a connection accepts
// (default DefaultReadLimit, 1 MiB). A larger frame closes the connection
// with status 1009 and fails ReadFrame with transport.ErrFrameTooLarge.
func WithReadLimit(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.readLimit = n
		}
	}
}
