package cable

import (
	"context"
	"log/slog"
	"time"

	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// Defaults of the Consumer options.
const (
	DefaultStaleTimeout        = 6 * time.Second
	DefaultHandshakeTimeout    = 10 * time.Second
	DefaultWriteTimeout        = 10 * time.Second
	DefaultResubscribeInterval = 500 * time.Millisecond
	DefaultMessageBuffer       = 1024
)

// HeaderFunc returns the handshake headers for one connection attempt. It
// is called before every dial, so it can hand out fresh tokens. The result
// has http.Header's layout; return an http.Header directly.
type HeaderFunc func(ctx context.Context) (map[string][]string, error)

// Option configures a Consumer.
type Option func(*options)

type options struct {
	transport    transport.Transport
	codecs       []protocol.Codec
	header       HeaderFunc
	fixed        [][2]string // WithHeader's key, value pairs, keys canonical
	logger       *slog.Logger
	onEvent      func(Event)
	backoff      backoff.Policy
	stale        time.Duration
	handshake    time.Duration
	write        time.Duration
	resubscribe  time.Duration
	bufferSize   int
	maxEventsLag int
	frameHook    func(Frame)
	frameLimit   int
	noDialRetry  bool
	noReconnect  bool
}

func defaultOptions() options {
	return options{
		codecs:       []protocol.Codec{protocol.JSONCodec{}},
		logger:       slog.New(slog.DiscardHandler),
		stale:        DefaultStaleTimeout,
		handshake:    DefaultHandshakeTimeout,
		write:        DefaultWriteTimeout,
		resubscribe:  DefaultResubscribeInterval,
		bufferSize:   DefaultMessageBuffer,
		maxEventsLag: 256,
	}
}

// WithTransport sets how connections are made. The default is a
// websocket.Transport with default options.
//
// To fall back to a Cableway bridge when WebSockets to Rails fail, give it
// the fallback transport (package sdk/transport/fallback):
//
//	cable.WithTransport(fallback.Bridged("https://example.com/cable-bridge"))
//
// A transport that implements transport.ChangeNotifier, as the fallback
// does, has its moves between transports reported as
// EventTransportChanged. A program that never names the fallback links
// only the WebSocket transport.
func WithTransport(t transport.Transport) Option {
	return func(o *options) { o.transport = t }
}

// WithCodecs sets the codecs to offer, most preferred first. The default
// offers JSON only. A server that picks none of them is refused with
// transport.ErrUnsupportedSubprotocol; one that picks no subprotocol at all
// is spoken to in JSON, as every Rails version is.
func WithCodecs(codecs ...protocol.Codec) Option {
	return func(o *options) {
		if len(codecs) > 0 {
			o.codecs = codecs
		}
	}
}

// WithHeaderFunc sets the function that supplies handshake headers for each
// connection attempt. An error from it fails that attempt (and is retried
// with backoff, as any failed attempt).
func WithHeaderFunc(f HeaderFunc) Option {
	return func(o *options) { o.header = f }
}

// WithHeader adds a fixed handshake header, e.g. a Cookie or Authorization.
// It is applied after WithHeaderFunc's headers, whatever the order of the
// options: its value is added to theirs.
func WithHeader(key, value string) Option {
	return func(o *options) {
		o.fixed = append(o.fixed, [2]string{canonicalHeaderKey(key), value})
	}
}

// headers returns the handshake headers for one attempt: the header
// function's, then WithHeader's, in a new map with canonical keys.
func (o *options) headers(ctx context.Context) (map[string][]string, error) {
	if o.header == nil && len(o.fixed) == 0 {
		return nil, nil
	}
	h := map[string][]string{}
	if o.header != nil {
		p, err := o.header(ctx)
		if err != nil {
			return nil, err
		}
		for k, v := range p {
			ck := canonicalHeaderKey(k)
			h[ck] = append(h[ck], v...)
		}
	}
	for _, kv := range o.fixed {
		h[kv[0]] = append(h[kv[0]], kv[1])
	}
	return h, nil
}

// WithDialRetry sets whether Dial retries failed attempts until its
// context is done (the default) or returns the first attempt's error. A
// proxy that must answer its own client promptly turns retries off.
// Reconnects after the first welcome retry unless WithReconnect(false).
func WithDialRetry(retry bool) Option {
	return func(o *options) { o.noDialRetry = !retry }
}

// WithReconnect sets whether the consumer reconnects when its welcomed
// connection is lost (the default) or stops, with the cause as Err (a
// *DisconnectError for the server's disconnect). A proxy whose own client
// must see the loss turns reconnects off.
func WithReconnect(reconnect bool) Option {
	return func(o *options) { o.noReconnect = !reconnect }
}

// WithLogger sets where the consumer logs. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithEventHandler sets a function called for each connection Event, in
// order, on a goroutine owned by the Consumer. If it falls more than 256
// events behind, later events are dropped and logged.
func WithEventHandler(f func(Event)) Option {
	return func(o *options) { o.onEvent = f }
}

// WithBackoff sets the reconnect delays (default: backoff.Policy{}, i.e.
// 500 ms doubling to 30 s, with jitter).
func WithBackoff(p backoff.Policy) Option {
	return func(o *options) { o.backoff = p }
}

// WithStaleTimeout sets how long a connection may stay silent before it is
// dropped and redialled (default 6 s: two missed Rails pings).
func WithStaleTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.stale = d
		}
	}
}

// WithHandshakeTimeout bounds one connection attempt, from dial to welcome
// (default 10 s).
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.handshake = d
		}
	}
}

// WithWriteTimeout bounds every command write (default 10 s). A write
// that takes longer fails and drops the connection, which is then
// redialled: one that cannot take a frame for so long is broken. The
// context given to Perform, Send or Unsubscribe bounds only that call: one
// already done sends nothing, and one that ends during the write returns
// its error while the write goes on (the frame may still arrive). Neither
// affects the connection.
func WithWriteTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.write = d
		}
	}
}

// WithResubscribeInterval sets how often an unanswered subscribe is sent
// again (default 500 ms).
func WithResubscribeInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.resubscribe = d
		}
	}
}

// WithMessageBuffer sets the default per-subscription buffer size (default
// 1024 messages). Subscribe's WithBuffer overrides it per subscription.
func WithMessageBuffer(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.bufferSize = n
		}
	}
}

// WithFrameLimit caps the frames the consumer accepts at n bytes, whatever
// the transport (a transport's own limit, like websocket.WithReadLimit,
// stops a large frame sooner, before it is read whole). A connection that
// brings a larger frame is dropped, with an error wrapping
// transport.ErrFrameTooLarge, and redialled as any lost connection. The
// default is no cap beyond the transport's.
func WithFrameLimit(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.frameLimit = n
		}
	}
}

// Frame is one frame as it arrived, for WithFrameHook.
type Frame struct {
	// Raw is the frame's bytes, in Codec's encoding. It is valid only
	// during the hook call.
	Raw []byte
	// Message is Raw decoded (its fields alias Raw).
	Message *protocol.Message
	// Codec is the codec the connection speaks.
	Codec protocol.Codec
}

// WithFrameHook sets a function called with every frame that decodes,
// welcome and ping included, before the consumer acts on it. It runs on
// the connection's reader goroutine; it must copy what it keeps. It may
// block to apply backpressure: while it runs the connection is not read
// (TCP holds the server back, as it would a slow direct client) and the
// stale timeout is suspended; it should return soon after Close. It is
// meant for proxies (the Cableway bridge passes frames on with it) and for
// tracing. It may call Close, which then returns without waiting for the
// goroutine the hook runs on (see Consumer.Close).
func WithFrameHook(f func(Frame)) Option {
	return func(o *options) { o.frameHook = f }
}

func (o *options) transportOrDefault() transport.Transport {
	if o.transport == nil {
		return websocket.New()
	}
	return o.transport
}
