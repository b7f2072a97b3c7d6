package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/server/internal/ratelimit"
)

// apiError is the JSON body of every refusal.
type apiError struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

// writeError answers with status and a JSON error, counting the refusal.
func (b *Bridge) writeError(w http.ResponseWriter, status int, reason, detail string) {
	b.countRefusal(reason)
	writeJSON(w, status, apiError{Error: reason, Detail: detail})
}

// writeJSON answers with v as JSON. HTML escaping is off so that frames
// and messages embedded as json.RawMessage reach the client byte for byte
// as Rails sent them.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// originAllowed reports whether a request may proceed: no Origin (not a
// browser), the bridge's own origin (see sameOrigin), or an allowlisted
// one.
func (b *Bridge) originAllowed(r *http.Request) (origin string, ok bool) {
	origin = r.Header.Get("Origin")
	if origin == "" {
		return "", true
	}
	if b.cfg.allowedOrigins[origin] {
		return origin, true
	}
	return origin, b.sameOrigin(r, origin)
}

// sameOrigin reports whether origin is the bridge's own: scheme, host and
// port all equal (default ports implied). The bridge's origin is the
// configured public origin (WithPublicOrigin) when there is one; else the
// request's scheme (TLS or not, or X-Forwarded-Proto if
// WithTrustForwardedProto says so) with its Host.
func (b *Bridge) sameOrigin(r *http.Request, origin string) bool {
	got, ok := canonicalOrigin(origin)
	if !ok {
		return false
	}
	if b.cfg.publicOrigin != "" {
		return got == b.cfg.publicOrigin
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if b.cfg.trustForwardedProto {
		if v := r.Header.Values("X-Forwarded-Proto"); len(v) > 0 {
			// The proxy's own value: the last one, as for client IPs.
			list := v[len(v)-1]
			p := strings.ToLower(strings.TrimSpace(list[strings.LastIndexByte(list, ',')+1:]))
			if p != "http" && p != "https" {
				return false
			}
			scheme = p
		}
	}
	own, ok := canonicalOrigin(scheme + "://" + r.Host)
	return ok && got == own
}

// canonicalOrigin is origin as "scheme://host[:port]" in lower case,
// without a default port; ok is false for anything but an http(s) origin.
func canonicalOrigin(origin string) (string, bool) {
	if strings.ContainsAny(origin, "?#") { // even empty: url.Parse drops "http://h#"'s '#'
		return "", false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	return scheme + "://" + host, true
}

// withOrigin applies the origin policy and CORS to every request:
// refused origins get 403 before anything reaches Rails; allowed ones get
// their own origin reflected with credentials (never "*"), and preflights
// are answered here.
func (b *Bridge) withOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		// Every answer, error bodies of the WebSocket library included:
		// a browser must never sniff one into HTML.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Method != http.MethodPost && r.ContentLength != 0 && !b.drainBody(w, r) {
			return
		}
		origin, ok := b.originAllowed(r)
		if !ok {
			b.writeError(w, http.StatusForbidden, "origin_not_allowed", origin)
			return
		}
		if origin != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h := w.Header()
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID, Cableway-Token, Authorization, Accept")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bodyTimeout bounds how long the body of a request that needs none
// (GET, DELETE, …) may take to arrive.
const bodyTimeout = 10 * time.Second

// drainBody reads and drops the body of a request whose handler reads
// none, within bodyTimeout: otherwise the server waits for it with no
// deadline before it answers (to keep the connection), and a client that
// declares a Content-Length and never sends the body holds the connection
// forever. On failure it has answered, and the connection closes.
func (b *Bridge) drainBody(w http.ResponseWriter, r *http.Request) bool {
	rc := http.NewResponseController(w)
	// Without deadline support (ErrNotSupported) the read is unbounded, as
	// it would have been anyway.
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	_, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, b.cfg.maxBodyBytes))
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
		return true
	}
	w.Header().Set("Connection", "close")
	_ = rc.SetReadDeadline(time.Now()) // nothing more is read
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		b.writeError(w, http.StatusRequestTimeout, "body_timeout", fmt.Sprintf("the request body did not arrive within %v", bodyTimeout))
		return false
	}
	b.bodyError(w, err)
	return false
}

// ClientKey is what the per-client limits count under for the client
// address ip: an IPv4 address as it is, an IPv6 address as its /64 (a
// single subscriber usually holds a whole /64), anything unparsable as
// given.
func ClientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// rateLimiter is a token bucket per client key. Full buckets are dropped
// as the map grows, so it stays as large as the set of recent clients.
type rateLimiter struct {
	mu      sync.Mutex
	buckets map[string]*ratelimit.Bucket
	sweep   int // len(buckets) that triggers the next sweep
}

func newRateLimiter() *rateLimiter {
	return &rateLimiter{buckets: map[string]*ratelimit.Bucket{}, sweep: 1024}
}

// allow takes a token of key's bucket, which holds up to burst tokens and
// refills at rate per second. When it is empty it returns how long until
// the next token.
func (l *rateLimiter) allow(key string, rate float64, burst int, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	bk := l.buckets[key]
	if bk == nil {
		if len(l.buckets) >= l.sweep {
			l.sweepLocked(rate, burst, now)
		}
		full := ratelimit.Full(float64(burst), now)
		bk = &full
		l.buckets[key] = bk
	}
	return bk.Take(1, rate, float64(burst), now)
}

func (l *rateLimiter) sweepLocked(rate float64, burst int, now time.Time) {
	for k, bk := range l.buckets {
		if bk.IsFull(rate, float64(burst), now) {
			delete(l.buckets, k)
		}
	}
	l.sweep = max(1024, 2*len(l.buckets))
}

// allowCreate applies the session creation rate of key, answering the
// refusal itself (429 with Retry-After).
func (b *Bridge) allowCreate(w http.ResponseWriter, key string) bool {
	if b.cfg.sessionRate <= 0 {
		return true
	}
	ok, wait := b.cfg.createLimiter.allow(key, b.cfg.sessionRate, b.cfg.sessionBurst, time.Now())
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
		b.writeError(w, http.StatusTooManyRequests, "create_rate_limited",
			fmt.Sprintf("at most %v new sessions per second per client (burst %d)", b.cfg.sessionRate, b.cfg.sessionBurst))
	}
	return ok
}

// LimitListener returns a listener that holds at most perIP connections
// open at once from one client address (counted by [ClientKey], so an IPv6
// /64 is one client). A connection beyond that is closed as soon as it is
// accepted, before anything is read from it, and counted (Refused).
// perIP ≤ 0 means no limit.
//
// It counts the TCP peer: behind a reverse proxy every connection comes
// from the proxy, so the cap must then allow for all of them (or be off).
func LimitListener(ln net.Listener, perIP int) *LimitedListener {
	return &LimitedListener{Listener: ln, max: perIP, open: map[string]int{}}
}

// LimitedListener is the listener of LimitListener.
type LimitedListener struct {
	net.Listener
	max     int
	mu      sync.Mutex
	open    map[string]int
	refused atomic.Uint64
}

// Refused is how many connections were closed for the cap so far.
func (l *LimitedListener) Refused() uint64 { return l.refused.Load() }

// Accept waits for the next connection within the cap.
func (l *LimitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.max <= 0 {
			return c, err
		}
		key := c.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(key); err == nil {
			key = ClientKey(host)
		}
		l.mu.Lock()
		if l.open[key] >= l.max {
			l.mu.Unlock()
			l.refused.Add(1)
			c.Close()
			continue
		}
		l.open[key]++
		l.mu.Unlock()
		return &limitConn{Conn: c, l: l, key: key}, nil
	}
}

func (l *LimitedListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

type limitConn struct {
	net.Conn
	l    *LimitedListener
	key  string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}
