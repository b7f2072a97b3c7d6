package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/transport"
	core "github.com/cableway/cableway/server/session"
)

// Defaults of the Bridge options.
const (
	DefaultSessionTTL        = 30 * time.Second
	DefaultQueueFrames       = 1024
	DefaultQueueBytes        = 1 << 20
	DefaultResumeWindow      = 1 << 20
	DefaultMemoryBudget      = 256 << 20
	DefaultMaxSessions       = 10000
	DefaultMaxSessionsPerIP  = 100
	DefaultMaxBodyBytes      = 64 << 10
	DefaultMaxFrameBytes     = 1 << 20
	DefaultCommandsPerSecond = 50
	DefaultCreateTimeout     = 10 * time.Second
	// DefaultUpstreamStaleTimeout is longer than a browser's 6 s: a
	// bridge serving thousands of sessions on a saturated machine may not
	// run a session's reader for seconds, and dropping the upstream then
	// loses its frames; a truly dead upstream is still found.
	DefaultUpstreamStaleTimeout = 20 * time.Second
	DefaultPollTimeout          = 25 * time.Second
	MaxPollTimeout              = 60 * time.Second
	DefaultKeepAlive            = 15 * time.Second
	DefaultCompatPrefix         = "/events/"
)

// Option configures a Bridge.
type Option func(*config)

type config struct {
	allowedOrigins    map[string]bool
	passHeaders       []string
	sessionTTL        time.Duration
	queueFrames       int
	queueBytes        int
	windowBytes       int
	memoryBudget      int64
	maxSessions       int
	maxSessionsPerIP  int
	maxBodyBytes      int64
	maxFrameBytes     int64
	commandsPerSecond float64
	createTimeout     time.Duration
	upstreamStale     time.Duration
	store             core.Store
	shared            core.Shared // WithSharedStore
	keepAlive         time.Duration
	logger            *slog.Logger
	backoff           backoff.Policy
	upstream          transport.Transport
	clientIP          func(*http.Request) string
	compatPrefix      string

	sessionRate         float64
	sessionBurst        int
	createLimiter       *rateLimiter
	publicOrigin        string
	trustForwardedProto bool
}

func defaultConfig() config {
	return config{
		allowedOrigins:    map[string]bool{},
		sessionTTL:        DefaultSessionTTL,
		queueFrames:       DefaultQueueFrames,
		queueBytes:        DefaultQueueBytes,
		windowBytes:       DefaultResumeWindow,
		memoryBudget:      DefaultMemoryBudget,
		maxSessions:       DefaultMaxSessions,
		maxSessionsPerIP:  DefaultMaxSessionsPerIP,
		maxBodyBytes:      DefaultMaxBodyBytes,
		maxFrameBytes:     DefaultMaxFrameBytes,
		commandsPerSecond: DefaultCommandsPerSecond,
		createTimeout:     DefaultCreateTimeout,
		upstreamStale:     DefaultUpstreamStaleTimeout,
		keepAlive:         DefaultKeepAlive,
		logger:            slog.New(slog.DiscardHandler),
		clientIP:          remoteIP,
		compatPrefix:      DefaultCompatPrefix,

		sessionRate:   DefaultSessionRate,
		sessionBurst:  DefaultSessionBurst,
		createLimiter: newRateLimiter(),
	}
}

// WithAllowedOrigins sets the browser origins ("https://app.example.com")
// allowed to use the bridge with credentials. Requests without an Origin
// header (non-browser clients) and same-origin requests are always
// allowed; any other origin is refused with 403 before anything reaches
// Rails. There is no wildcard: an arbitrary origin is never reflected.
func WithAllowedOrigins(origins ...string) Option {
	return func(c *config) {
		for _, o := range origins {
			if o != "" {
				c.allowedOrigins[o] = true
			}
		}
	}
}

// WithPassHeaders names request headers, besides Cookie, Authorization
// and Origin, that are passed to Rails on the upstream handshake.
func WithPassHeaders(names ...string) Option {
	return func(c *config) { c.passHeaders = append(c.passHeaders, names...) }
}

// WithSessionTTL sets how long a session lives after its last client
// request while no client is attached (default 30 s).
func WithSessionTTL(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.sessionTTL = d
		}
	}
}

// WithQueue bounds each session's frames not yet sent to its client
// (default 1024 frames, 1 MiB). Beyond it the bridge stops reading that
// session's upstream socket until the client catches up: Rails is held
// back by TCP, as a slow direct WebSocket client would hold it, and no
// frame is dropped.
func WithQueue(frames, bytes int) Option {
	return func(c *config) {
		if frames > 0 {
			c.queueFrames = frames
		}
		if bytes > 0 {
			c.queueBytes = bytes
		}
	}
}

// WithResumeWindow bounds the bytes of frames each session keeps after
// sending them until its client acknowledges them (default 1 MiB), so that
// a client whose stream broke resumes without loss. Beyond it the oldest
// are trimmed; a client that then asks for one gets a reset that says so.
func WithResumeWindow(bytes int) Option {
	return func(c *config) {
		if bytes >= 0 {
			c.windowBytes = bytes
		}
	}
}

// WithMemoryBudget bounds the bytes of frames all sessions hold together
// (default 256 MiB). Past three quarters of it sessions keep no resume
// window; past it, upstream reads of sessions whose clients have frames
// to fetch wait until clients fetch them (each session may exceed it by
// one frame, so that every session makes progress).
func WithMemoryBudget(bytes int64) Option {
	return func(c *config) {
		if bytes > 0 {
			c.memoryBudget = bytes
		}
	}
}

// WithSessionLimits caps sessions in total and per client IP (defaults
// 10000 and 100). Beyond them session creation answers 429 / 503.
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

// WithBodyLimit caps request bodies (default 64 KiB; larger: 413).
func WithBodyLimit(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxBodyBytes = n
		}
	}
}

// WithFrameLimit caps frames in both directions (default 1 MiB).
func WithFrameLimit(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxFrameBytes = n
		}
	}
}

// WithCommandRate caps client commands per second per session, with a
// burst of twice that (default 50/s; beyond it: 429).
func WithCommandRate(perSecond float64) Option {
	return func(c *config) {
		if perSecond > 0 {
			c.commandsPerSecond = perSecond
		}
	}
}

// WithStore sets where sessions keep their frames (default: this
// process's memory, bounded by WithQueue, WithResumeWindow and
// WithMemoryBudget, which do not apply to another store).
func WithStore(s core.Store) Option { return func(c *config) { c.store = s } }

// WithUpstreamStaleTimeout sets after how long without any frame from
// Rails (it pings every 3 s) a session's upstream connection counts as
// dead (default 20 s). Time its reader is held back by its client
// (backpressure) does not count.
func WithUpstreamStaleTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.upstreamStale = d
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

// WithLogger sets where the bridge logs (default: nowhere).
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

// WithUpstreamTransport sets how the upstream is dialled, e.g. a
// websocket.Transport with a custom *http.Client for TLS to Rails.
func WithUpstreamTransport(t transport.Transport) Option {
	return func(c *config) { c.upstream = t }
}

// WithClientIP sets how a request's client IP is found for the per-client
// limits (sessions per IP, session creation rate), which count what it
// returns as ClientKey does: an IPv6 address as its /64. The default is the
// connection's remote address; behind a trusted reverse proxy, read its
// forwarding header here.
func WithClientIP(f func(*http.Request) string) Option {
	return func(c *config) {
		if f != nil {
			c.clientIP = f
		}
	}
}

// WithCompatPrefix sets the path under which the bridge serves the HTTP API
// of actioncable-to-eventsource (default "/events/": a session lives at
// /events/{events-id}; see server/COMPAT.md). A missing leading or trailing
// slash is added; "" turns that API off. The prefix must be a plain path
// (see CompatPrefix): New panics otherwise, as http.ServeMux would.
func WithCompatPrefix(prefix string) Option {
	return func(c *config) {
		p, err := CompatPrefix(prefix)
		if err != nil {
			panic(err)
		}
		c.compatPrefix = p
	}
}

// CompatPrefix normalises a compat-API prefix as WithCompatPrefix does
// ("events" → "/events/"; "" stays "", meaning off) and reports why it
// cannot be used: the root "/" is the bridge's own, and only letters,
// digits, '-', '.', '_', '~' and '/' are allowed.
func CompatPrefix(prefix string) (string, error) {
	if prefix == "" {
		return "", nil
	}
	if !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if prefix == "/" {
		return "", errors.New(`bridge: compat prefix "/": the root is the bridge's own`)
	}
	for _, r := range prefix {
		if !(r == '/' || r == '-' || r == '.' || r == '_' || r == '~' ||
			'0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return "", fmt.Errorf("bridge: compat prefix %q: not a plain path", prefix)
		}
	}
	return prefix, nil
}

// Defaults of the per-client session creation rate (see WithSessionRate).
const (
	DefaultSessionRate  = 10.0
	DefaultSessionBurst = 100
)

// WithSessionRate caps how fast one client creates sessions (POST
// /sessions, proxy upgrades and compat sessions alike): a token bucket per
// client IP (an IPv6 /64 counting as one, see ClientKey) holding burst
// creations and refilling at perSecond (defaults 10/s, burst 100). Beyond
// it creation answers 429 create_rate_limited with Retry-After, before
// Rails is dialled. perSecond ≤ 0 turns the limit off; burst ≤ 0 keeps
// the default.
func WithSessionRate(perSecond float64, burst int) Option {
	return func(c *config) {
		c.sessionRate = perSecond
		if burst > 0 {
			c.sessionBurst = burst
		}
	}
}

// WithPublicOrigin sets the bridge's own origin as browsers see it
// ("https://cable.example.com"), for the same-origin check: a request whose
// Origin is exactly that is same-origin, whatever its Host header says.
// Set it behind a reverse proxy, where the request's scheme and Host are
// the proxy's. Without it, same-origin means the request's own scheme
// (TLS or not) and Host. It panics on an origin that is not
// http(s)://host[:port] (see PublicOrigin), as http.ServeMux does on an
// invalid pattern.
func WithPublicOrigin(origin string) Option {
	o, err := PublicOrigin(origin)
	if err != nil {
		panic(err)
	}
	return func(c *config) { c.publicOrigin = o }
}

// PublicOrigin normalises an origin for WithPublicOrigin as browsers send
// it ("https://Cable.example.com:443/" → "https://cable.example.com") and
// reports why it cannot be one. "" stays "" (no public origin).
func PublicOrigin(origin string) (string, error) {
	if origin == "" {
		return "", nil
	}
	o, ok := canonicalOrigin(origin)
	if !ok {
		return "", fmt.Errorf("bridge: public origin %q: want http(s)://host[:port]", origin)
	}
	return o, nil
}

// WithTrustForwardedProto makes the same-origin check take the request's
// scheme from X-Forwarded-Proto (the last value) when there is one. Only
// set it when a proxy you run sets that header on every request: a client
// can send it too. WithPublicOrigin, when set, takes precedence.
func WithTrustForwardedProto(trust bool) Option {
	return func(c *config) { c.trustForwardedProto = trust }
}
