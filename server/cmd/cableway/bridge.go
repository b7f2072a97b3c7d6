package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
	"github.com/cableway/cableway/server/bridge"
)

// HTTP server limits. WriteTimeout and ReadTimeout stay 0, see serve.
const (
	// readHeaderTimeout bounds the arrival of a request's headers: a
	// client trickling them is cut off.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a kept-alive connection with no request.
	idleTimeout    = 120 * time.Second
	maxHeaderBytes = 64 << 10
	// bodyReadGrace is how long a client has to send a POST body, on top
	// of the session creation timeout (see withBodyDeadline).
	bodyReadGrace = 30 * time.Second
	// bodylessTimeout is how long the body of any other request (one the
	// handler does not want: GET, DELETE, …) may take to arrive.
	bodylessTimeout = 10 * time.Second
	// defaultMaxConnsPerIP is --max-conns-per-ip's default.
	defaultMaxConnsPerIP = 256
)

// bridgeConfig is what the bridge command's flags say.
type bridgeConfig struct {
	listen              string
	upstream            string
	allowedOrigins      []string
	passHeaders         []string
	sessionTTL          time.Duration
	queueFrames         int
	queueBytes          byteSize
	resumeWindow        byteSize
	memoryBudget        byteSize
	maxSessions         int
	maxSessionsPerIP    int
	maxBody             byteSize
	maxFrame            byteSize
	commandsPerSecond   float64
	createTimeout       time.Duration
	upstreamStale       time.Duration
	keepAlive           time.Duration
	compatPrefix        string
	tlsCert, tlsKey     string
	upstreamCA          string
	trustedProxyHeader  string
	shutdownTimeout     time.Duration
	logLevel            slog.Level
	metrics             bool
	maxConnsPerIP       int
	maxConnsPerIPSet    bool // --max-conns-per-ip given (or its variable)
	sessionRate         float64
	sessionBurst        int
	publicOrigin        string
	trustForwardedProto bool
	store               storeConfig // --store, --node, --lease (flags.go)
}

func defaultBridgeConfig() bridgeConfig {
	return bridgeConfig{
		listen:            "127.0.0.1:8080",
		upstream:          "ws://127.0.0.1:3000/cable",
		sessionTTL:        bridge.DefaultSessionTTL,
		queueFrames:       bridge.DefaultQueueFrames,
		queueBytes:        bridge.DefaultQueueBytes,
		resumeWindow:      bridge.DefaultResumeWindow,
		memoryBudget:      bridge.DefaultMemoryBudget,
		maxSessions:       bridge.DefaultMaxSessions,
		maxSessionsPerIP:  bridge.DefaultMaxSessionsPerIP,
		maxBody:           bridge.DefaultMaxBodyBytes,
		maxFrame:          bridge.DefaultMaxFrameBytes,
		commandsPerSecond: bridge.DefaultCommandsPerSecond,
		createTimeout:     bridge.DefaultCreateTimeout,
		upstreamStale:     bridge.DefaultUpstreamStaleTimeout,
		keepAlive:         bridge.DefaultKeepAlive,
		compatPrefix:      bridge.DefaultCompatPrefix,
		shutdownTimeout:   10 * time.Second,
		logLevel:          slog.LevelInfo,
		metrics:           true,
		maxConnsPerIP:     defaultMaxConnsPerIP,
		sessionRate:       bridge.DefaultSessionRate,
		sessionBurst:      bridge.DefaultSessionBurst,
		store:             defaultStoreConfig(),
	}
}

const bridgeIntro = `Serves ActionCable to browsers and other clients over Server-Sent Events,
long-polling and WebSocket (server/PROTOCOL.md), holding one upstream
ActionCable WebSocket per client session. Also serves GET /healthz and, unless
--metrics=false, Prometheus metrics on GET /metrics.

Every flag can also be set by the environment variable shown; a flag on the
command line wins over its variable. Sizes take KiB, MiB or GiB suffixes;
durations are written like 30s, 1m30s or 500ms. SIGINT or SIGTERM drains:
every session is sent a server_restart disconnect, then the process exits
within --shutdown-timeout.`

func bridgeCommand(cfg *bridgeConfig) *command {
	c := newCommand("bridge", bridgeIntro)
	c.str(&cfg.listen, "listen", "ADDR", "host:port to serve HTTP on", true)
	c.str(&cfg.upstream, "upstream", "URL", "Rails ActionCable endpoint, ws:// or wss://", true)
	c.add(listValue(&cfg.allowedOrigins), "allowed-origins", "LIST", "browser origins allowed cross-origin, comma separated, no wildcards (same-origin is always allowed)", true)
	c.add(durationValue(&cfg.sessionTTL), "session-ttl", "DURATION", "how long a session with no client attached survives its last request", true)
	c.add(intValue(&cfg.queueFrames), "queue-size", "FRAMES", "frames per session not yet sent to its client; beyond, the session's upstream is not read until the client catches up", true)
	c.add(byteSizeValue(&cfg.queueBytes), "queue-bytes", "SIZE", "bytes per session not yet sent to its client (as --queue-size)", true)
	c.add(byteSizeValue(&cfg.resumeWindow), "resume-window", "SIZE", "bytes per session kept after sending until the client acknowledges them, for resuming", true)
	c.add(byteSizeValue(&cfg.memoryBudget), "memory-budget", "SIZE", "bytes of frames all sessions hold together", true)
	c.add(intValue(&cfg.maxSessions), "max-sessions", "N", "sessions open at once, in total (beyond: 503)", true)
	c.add(intValue(&cfg.maxSessionsPerIP), "max-sessions-per-ip", "N", "sessions open at once per client IP (beyond: 429)", true)
	c.add(byteSizeValue(&cfg.maxBody), "max-body", "SIZE", "largest request body (beyond: 413)", true)
	c.add(byteSizeValue(&cfg.maxFrame), "max-frame", "SIZE", "largest WebSocket frame, from Rails and from clients", true)
	c.add(floatValue(&cfg.commandsPerSecond), "commands-per-second", "RATE", "client commands per second per session, burst twice that (beyond: 429)", true)
	c.add(durationValue(&cfg.createTimeout), "create-timeout", "DURATION", "how long session creation waits for Rails' welcome (beyond: 504)", true)
	c.add(durationValue(&cfg.upstreamStale), "upstream-stale-timeout", "DURATION", "how long without a frame from Rails (it pings every 3 s) before a session's upstream counts as dead", true)
	c.add(durationValue(&cfg.keepAlive), "keep-alive", "DURATION", "interval of SSE keep-alive comments", true)
	c.str(&cfg.compatPrefix, "compat-prefix", "PATH", `path of the actioncable-to-eventsource API (server/COMPAT.md); "" turns it off`, true)
	c.add(listValue(&cfg.passHeaders), "pass-headers", "LIST", "request headers passed on to Rails besides Cookie, Authorization and Origin", true)
	c.str(&cfg.tlsCert, "tls-cert", "FILE", "PEM certificate chain; with --tls-key, serve HTTPS", true)
	c.str(&cfg.tlsKey, "tls-key", "FILE", "PEM private key of --tls-cert", true)
	c.str(&cfg.upstreamCA, "upstream-ca", "FILE", "PEM CA certificates to trust for a wss:// upstream instead of the system roots", true)
	c.str(&cfg.trustedProxyHeader, "trusted-proxy-header", "HEADER", "header your reverse proxy puts the client IP in, e.g. X-Forwarded-For (last address used)", true)
	c.add(durationValue(&cfg.shutdownTimeout), "shutdown-timeout", "DURATION", "on SIGINT/SIGTERM, time for clients to fetch their server_restart frame", true)
	c.add(levelValue(&cfg.logLevel), "log-level", "LEVEL", "debug, info, warn or error; logs go to stderr", true)
	c.boolean(&cfg.metrics, "metrics", "serve Prometheus metrics on GET /metrics (--metrics=false: off)", true)
	c.add(countValue(&cfg.maxConnsPerIP), "max-conns-per-ip", "N", "TCP connections open at once per peer address, an IPv6 /64 counting as one (beyond: closed at once; 0: no cap; off by default with --trusted-proxy-header)", true)
	c.add(rateValue(&cfg.sessionRate), "session-rate", "RATE", "sessions a client IP may create per second, burst --session-burst (beyond: 429; 0: no limit)", true)
	c.add(intValue(&cfg.sessionBurst), "session-burst", "N", "sessions a client IP may create at once before --session-rate applies", true)
	c.str(&cfg.publicOrigin, "public-origin", "URL", "the bridge's origin as browsers see it, e.g. https://cable.example.com: same-origin is decided against it (set it behind a reverse proxy)", true)
	c.boolean(&cfg.trustForwardedProto, "trust-forwarded-proto", "take the request scheme from X-Forwarded-Proto for the same-origin check (only behind a proxy that sets it)", true)
	addStoreFlags(c, &cfg.store)
	return c
}

// parseBridgeFlags reads the environment and args into a checked config.
func parseBridgeFlags(args []string, env lookupEnv, stdout io.Writer) (bridgeConfig, error) {
	cfg := defaultBridgeConfig()
	c := bridgeCommand(&cfg)
	if err := c.parse(args, env, stdout); err != nil {
		return cfg, err
	}
	c.fs.Visit(func(f *flag.Flag) {
		if f.Name == "max-conns-per-ip" {
			cfg.maxConnsPerIPSet = true
		}
	})
	return cfg, cfg.check()
}

// check validates what each flag cannot check alone.
func (cfg *bridgeConfig) check() error {
	u, err := url.Parse(cfg.upstream)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("--upstream %q: want a ws:// or wss:// URL", cfg.upstream)
	}
	if _, err := bridge.CompatPrefix(cfg.compatPrefix); err != nil {
		return fmt.Errorf("--compat-prefix: %w", err)
	}
	if cfg.upstreamCA != "" && u.Scheme != "wss" {
		return errors.New("--upstream-ca needs a wss:// upstream")
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if _, _, err := net.SplitHostPort(cfg.listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port", cfg.listen)
	}
	for i, o := range cfg.allowedOrigins {
		norm, err := normalizeOrigin(o)
		if err != nil {
			return fmt.Errorf("--allowed-origins: %v", err)
		}
		cfg.allowedOrigins[i] = norm
	}
	for _, h := range cfg.passHeaders {
		if !validHeaderName(h) {
			return fmt.Errorf("--pass-headers: %q is not a header name", h)
		}
	}
	if h := cfg.trustedProxyHeader; h != "" && !validHeaderName(h) {
		return fmt.Errorf("--trusted-proxy-header: %q is not a header name", h)
	}
	if cfg.maxConnsPerIP < 0 {
		return fmt.Errorf("--max-conns-per-ip %d: want 0 (no cap) or more", cfg.maxConnsPerIP)
	}
	if cfg.sessionRate < 0 || math.IsNaN(cfg.sessionRate) || math.IsInf(cfg.sessionRate, 0) {
		return fmt.Errorf("--session-rate %v: want 0 (no limit) or a positive rate", cfg.sessionRate)
	}
	if cfg.sessionBurst < 1 {
		return fmt.Errorf("--session-burst %d: want 1 or more", cfg.sessionBurst)
	}
	o, err := bridge.PublicOrigin(cfg.publicOrigin)
	if err != nil {
		return fmt.Errorf("--public-origin: %w", err)
	}
	cfg.publicOrigin = o
	return cfg.store.check()
}

// normalizeOrigin turns "https://App.example.com/" into the form browsers
// send in Origin, "https://app.example.com", which the bridge compares
// byte for byte.
func normalizeOrigin(o string) (string, error) {
	if o == "*" || strings.Contains(o, "*") {
		return "", fmt.Errorf("%q: wildcards are not supported; list each origin", o)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q is not an origin like https://app.example.com", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}

// options turns the config into bridge options. It reads --upstream-ca.
func (cfg *bridgeConfig) options(logger *slog.Logger) ([]bridge.Option, error) {
	opts := []bridge.Option{
		bridge.WithLogger(logger),
		bridge.WithAllowedOrigins(cfg.allowedOrigins...),
		bridge.WithPassHeaders(cfg.passHeaders...),
		bridge.WithSessionTTL(cfg.sessionTTL),
		bridge.WithQueue(cfg.queueFrames, int(min(int64(cfg.queueBytes), math.MaxInt))),
		bridge.WithResumeWindow(int(min(int64(cfg.resumeWindow), math.MaxInt))),
		bridge.WithMemoryBudget(int64(cfg.memoryBudget)),
		bridge.WithSessionLimits(cfg.maxSessions, cfg.maxSessionsPerIP),
		bridge.WithBodyLimit(int64(cfg.maxBody)),
		bridge.WithFrameLimit(int64(cfg.maxFrame)),
		bridge.WithCommandRate(cfg.commandsPerSecond),
		bridge.WithCreateTimeout(cfg.createTimeout),
		bridge.WithUpstreamStaleTimeout(cfg.upstreamStale),
		bridge.WithKeepAlive(cfg.keepAlive),
		bridge.WithCompatPrefix(cfg.compatPrefix),
		bridge.WithSessionRate(cfg.sessionRate, cfg.sessionBurst),
		bridge.WithPublicOrigin(cfg.publicOrigin),
		bridge.WithTrustForwardedProto(cfg.trustForwardedProto),
	}
	if cfg.upstreamCA != "" {
		client, err := upstreamClient(cfg.upstreamCA)
		if err != nil {
			return nil, err
		}
		// The bridge's default transport has the frame limit as its read
		// limit; a transport of our own must say so itself.
		opts = append(opts, bridge.WithUpstreamTransport(websocket.New(
			websocket.WithReadLimit(int64(cfg.maxFrame)),
			websocket.WithHTTPClient(client),
		)))
	}
	if cfg.trustedProxyHeader != "" {
		opts = append(opts, bridge.WithClientIP(forwardedClientIP(cfg.trustedProxyHeader)))
	}
	return opts, nil
}

// upstreamClient is an HTTP client for dialling a wss:// upstream that
// trusts the CA certificates in the PEM file caFile (and only those).
func upstreamClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--upstream-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--upstream-ca %s: no PEM certificate found", caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{
		RootCAs:    pool,
		MinVersion: tls.VersionTLS12,
		// A WebSocket handshake is an HTTP/1.1 upgrade: never negotiate h2.
		NextProtos: []string{"http/1.1"},
	}
	t.ForceAttemptHTTP2 = false
	// No Timeout: it would cut live sockets; the dial's context bounds the
	// handshake.
	return &http.Client{Transport: t}, nil
}

// forwardedClientIP reads the client IP from header, which a trusted
// reverse proxy sets. Only the last address is believed: the one the
// proxy itself appended (addresses to its left came from the client and
// can be forged). For "Forwarded" (RFC 7239) that is the last element's
// for= parameter. Without a usable address, the connection's peer is
// used.
func forwardedClientIP(header string) func(*http.Request) string {
	forwarded := strings.EqualFold(header, "Forwarded")
	return func(r *http.Request) string {
		if ip, ok := lastForwardedIP(r.Header.Values(header), forwarded); ok {
			return ip
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
}

func lastForwardedIP(values []string, forwarded bool) (string, bool) {
	if len(values) == 0 {
		return "", false
	}
	list := values[len(values)-1]
	last := strings.TrimSpace(list[strings.LastIndexByte(list, ',')+1:])
	if forwarded {
		found := false
		for _, pair := range strings.Split(last, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && strings.EqualFold(k, "for") {
				last, found = strings.Trim(v, `"`), true
				break
			}
		}
		if !found {
			return "", false
		}
	}
	if ap, err := netip.ParseAddrPort(last); err == nil {
		return ap.Addr().Unmap().WithZone("").String(), true
	}
	last = strings.TrimSuffix(strings.TrimPrefix(last, "["), "]")
	if a, err := netip.ParseAddr(last); err == nil {
		return a.Unmap().WithZone("").String(), true
	}
	return "", false
}

// runBridge is "cableway bridge": it serves until ctx ends, then drains.
func runBridge(ctx context.Context, args []string, stdout, stderr io.Writer, env lookupEnv) int {
	cfg, err := parseBridgeFlags(args, env, stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		usageError(stderr, "bridge", err)
		return exitUsage
	}
	logger := newLogger(stderr, cfg.logLevel)
	if err := serveBridge(ctx, &cfg, logger); err != nil {
		logger.Error("bridge failed", "err", err)
		return exitFailure
	}
	return exitOK
}

// serveBridge runs the bridge until ctx ends and then shuts it down
// within cfg.shutdownTimeout. It fails if it cannot start or serve.
func serveBridge(ctx context.Context, cfg *bridgeConfig, logger *slog.Logger) error {
	opts, err := cfg.options(logger)
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	// Behind a reverse proxy every connection comes from the proxy: the
	// per-peer cap would cap the proxy, so it is off unless asked for.
	connsPerIP := cfg.maxConnsPerIP
	if cfg.trustedProxyHeader != "" && !cfg.maxConnsPerIPSet {
		connsPerIP = 0
	}
	limited := bridge.LimitListener(ln, connsPerIP)
	st, err := openStore(ctx, cfg, logger)
	if err != nil {
		ln.Close()
		return err
	}
	if st != nil {
		defer st.Close() // after the bridge's shutdown
		opts = append(opts, bridge.WithSharedStore(st))
	}
	b := bridge.New(cfg.upstream, opts...)

	mux := http.NewServeMux()
	if cfg.metrics {
		mux.Handle("GET /metrics", metricsHandler(b, limited.Refused, logger, storeCollectors(b, st)...))
	}
	mux.Handle("/", b) // the bridge's API and its own /healthz
	srv := newHTTPServer(withBodyDeadline(mux, cfg.createTimeout+bodyReadGrace), tlsConfig, logger)
	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- srv.ServeTLS(limited, "", "")
		} else {
			served <- srv.Serve(limited)
		}
	}()
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	logger.Info("bridge listening", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String(),
		"upstream", transport.RedactURL(cfg.upstream), "metrics", cfg.metrics, "max_conns_per_ip", connsPerIP)

	select {
	case <-ctx.Done():
	case err := <-served:
		// Serving failed on its own: no clients can reach the sessions.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		b.Close(sctx)
		srv.Close()
		return fmt.Errorf("serve: %w", err)
	}
	return shutdown(cfg.shutdownTimeout, ln, served, srv, b, logger)
}

// newHTTPServer is the bridge's http.Server.
func newHTTPServer(h http.Handler, tlsConfig *tls.Config, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// WriteTimeout and ReadTimeout must stay 0: each is a deadline for
		// a whole request, and SSE streams, long-polls and re-attached
		// WebSockets are meant to outlast any such deadline (an expired
		// read deadline even cancels the request's context). The bridge
		// bounds every write to a client itself (a reader that cannot take
		// a batch within 10 s is cut off and resumes at its cursor);
		// ReadHeaderTimeout stops slow headers and withBodyDeadline slow
		// bodies.
		WriteTimeout: 0,
		ReadTimeout:  0,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// shutdown stops accepting connections, has the bridge send every session
// a server_restart disconnect and wait for clients to fetch it, then shuts
// the HTTP server down. It returns within timeout (plus the time to close
// sockets forcibly).
func shutdown(timeout time.Duration, ln net.Listener, served <-chan error, srv *http.Server, b *bridge.Bridge, logger *slog.Logger) error {
	logger.Info("bridge shutting down", "timeout", formatDuration(timeout))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	// 1. Stop accepting. Open connections stay: attached clients fetch
	// their server_restart frame over them, and new connections go to
	// another instance.
	ln.Close()
	<-served // Serve returns as soon as its listener is closed

	// 2. Every session gets a server_restart disconnect as its last frame
	// and ends once its client has it (or at the deadline). Close may
	// overrun its context while it closes upstream sockets; never wait
	// past the deadline for it.
	closed := make(chan error, 1)
	go func() { closed <- b.Close(ctx) }()
	select {
	case err := <-closed:
		if err != nil {
			logger.Warn("bridge: not every session drained in time", "err", err)
		}
	case <-ctx.Done():
		logger.Warn("bridge: sessions still closing at the shutdown deadline")
	}

	// 3. Wait for the handlers still running (they end with their
	// sessions), then cut whatever is left.
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("http: connections still open at the shutdown deadline; closing them", "err", err)
		srv.Close()
	}
	logger.Info("bridge stopped", "after", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// withBodyDeadline bounds how long a request body may take to arrive:
// without it a client could trickle a body forever, or declare one and
// never send it, and hold a connection. A POST gets the session creation
// timeout plus bodyReadGrace (the handler waits for Rails after reading
// the body, and an expired read deadline cancels the request); any other
// request that declares a body gets bodylessTimeout (its handler reads
// none, and the server waits for it before answering). Other GETs get no
// deadline: streams and long-polls are long by design.
func withBodyDeadline(next http.Handler, post time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := time.Duration(0)
		switch {
		case r.Method == http.MethodPost:
			d = post
		case r.ContentLength != 0:
			d = bodylessTimeout
		}
		if d > 0 {
			// Not every ResponseWriter supports it (ErrNotSupported): then
			// there is simply no deadline.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		next.ServeHTTP(w, r)
	})
}
