package compat

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/transport"
	core "github.com/cableway/cableway/server/session"
)

// Defaults of the Handler options.
const (
	DefaultSessionTTL        = 30 * time.Second
	DefaultMaxSessions       = 10000
	DefaultMaxSessionsPerIP  = 100
	DefaultMaxBodyBytes      = 64 << 10
	DefaultMaxFrameBytes     = 1 << 20
	DefaultCommandsPerSecond = 50
	DefaultCreateTimeout     = 10 * time.Second
	DefaultKeepAlive         = 15 * time.Second
	// DefaultUpstreamStaleTimeout is how long Rails may send nothing (it
	// pings every 3 s) before a session's connection counts as dead.
	DefaultUpstreamStaleTimeout = 20 * time.Second
	DefaultPollTimeout          = 25 * time.Second
	MaxPollTimeout              = 60 * time.Second
	// DefaultPollQueue is a session's event queue bound unless the client
	// sets poll-queue.
	DefaultPollQueue = 32
	// MaxPollQueue caps poll-queue.
	MaxPollQueue = 1024
)

// Option configures a Handler.
type Option func(*config)

type config struct {
	passHeaders       []string
	sessionTTL        time.Duration
	maxSessions       int
	maxSessionsPerIP  int
	maxBodyBytes      int64
	maxFrameBytes     int64
	commandsPerSecond float64
	createTimeout     time.Duration
	keepAlive         time.Duration
	logger            *slog.Logger
	backoff           backoff.Policy
	upstream          transport.Transport
	clientIP          func(*http.Request) string
	originAllowed     func(r *http.Request, origin string) bool
	budget            *core.Budget
	limiter           Limiter
	upstreamStale     time.Duration
	shared            core.Shared // nil: sessions in memory
	forward           Forwarder
}

func defaultConfig() config {
	return config{
		sessionTTL:        DefaultSessionTTL,
		maxSessions:       DefaultMaxSessions,
		maxSessionsPerIP:  DefaultMaxSessionsPerIP,
		maxBodyBytes:      DefaultMaxBodyBytes,
		maxFrameBytes:     DefaultMaxFrameBytes,
		commandsPerSecond: DefaultCommandsPerSecond,
		createTimeout:     DefaultCreateTimeout,
		keepAlive:         DefaultKeepAlive,
		upstreamStale:     DefaultUpstreamStaleTimeout,
		logger:            slog.New(slog.DiscardHandler),
		clientIP:          remoteIP,
		originAllowed:     sameOrigin,
	}
}

// WithPassHeaders names request headers, besides Cookie, Authorization and
// Origin, that are passed to Rails on the upstream handshake. They are
// credentials: an events id is bound to their values too.
func WithPassHeaders(names ...string) Option {
	return func(c *config) { c.passHeaders = append(c.passHeaders, names...) }
}

// WithSessionTTL sets how long a session lives after its last request
// while no listener is attached (default 30 s).
func WithSessionTTL(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.sessionTTL = d
		}
	}
}

// WithSessionLimits caps sessions in total and per client IP (defaults
// 10000 and 100). Beyond them creation answers 503 / 429.
func WithSessionLimits(total, perIP int) Option {
	return func(c *config) {
		if total > 0 {
			c.maxSessions = total
		}
		if perIP > 0 {
			c.maxSessionsPerIP = perIP
		}
	}
}

// WithBodyLimit caps POST bodies (default 64 KiB; larger: 413).
func WithBodyLimit(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxBodyBytes = n
		}
	}
}

// WithFrameLimit caps the frames accepted from Rails (default 1 MiB).
func WithFrameLimit(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxFrameBytes = n
		}
	}
}

// WithCommandRate caps commands per second per session, with a burst of
// twice that (default 50/s; beyond it a POST gets 429).
func WithCommandRate(perSecond float64) Option {
	return func(c *config) {
		if perSecond > 0 {
			c.commandsPerSecond = perSecond
		}
	}
}

// WithCreateTimeout bounds session creation: the upstream dial and its
// welcome (default 10 s; beyond it: 504).
func WithCreateTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.createTimeout = d
		}
	}
}

// WithKeepAlive sets the interval of SSE keep-alive comments (default 15 s).
func WithKeepAlive(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.keepAlive = d
		}
	}
}

// WithLogger sets where the handler logs (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithUpstreamBackoff sets the upstream redial delays.
func WithUpstreamBackoff(p backoff.Policy) Option {
	return func(c *config) { c.backoff = p }
}

// WithUpstreamTransport sets how Rails is dialled (default: a WebSocket
// transport whose read limit is the frame limit).
func WithUpstreamTransport(t transport.Transport) Option {
	return func(c *config) { c.upstream = t }
}

// WithClientIP sets how a request's client IP is found, for the per-IP
// limit and the binding of an events id (default: the connection's remote
// address).
func WithClientIP(f func(*http.Request) string) Option {
	return func(c *config) {
		if f != nil {
			c.clientIP = f
		}
	}
}

// WithOriginPolicy sets which browser origins ("https://app.example")
// may use the API with credentials: the handler's own origin and the
// allowed ones (default: the request's scheme and Host only). The Handler
// consults it for requests that carry credentials but no Origin header,
// with the origin of their Referer. It does not apply CORS itself: mount
// the Handler behind the policy that does (the bridge's).
func WithOriginPolicy(allowed func(r *http.Request, origin string) bool) Option {
	return func(c *config) {
		if allowed != nil {
			c.originAllowed = allowed
		}
	}
}

// WithBudget counts every session's queued events against b, a memory
// budget shared with other session logs (the bridge's). An event that
// would pass it while the session has events not handed out yet is
// dropped, and counted in the long-poll answer's "dropped".
func WithBudget(b *core.Budget) Option {
	return func(c *config) { c.budget = b }
}

// Limiter counts sessions against limits shared with other handlers (the
// bridge's own sessions): Reserve takes a place for a session of client
// ip before Rails is dialled, or refuses with a *LimitError; release gives
// it back. Both are safe for concurrent use.
type Limiter interface {
	Reserve(ip string) (release func(), err error)
}

// LimitError is a refusal by the session limits: the HTTP status (429,
// 503) and the reason the JSON error names.
type LimitError struct {
	Status int
	Reason string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return "compat: session refused: " + e.Reason }

// WithLimiter makes sessions count against l instead of the handler's own
// limits (WithSessionLimits then does not apply).
func WithLimiter(l Limiter) Option {
	return func(c *config) { c.limiter = l }
}

// WithUpstreamStaleTimeout sets after how long without any frame from Rails
// a session's upstream connection counts as dead and is redialled
// (default 20 s).
func WithUpstreamStaleTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.upstreamStale = d
		}
	}
}
