package bridge

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cableway/cableway/server/compat"
)

// compatRoutes mounts the actioncable-to-eventsource API (package
// server/compat) under the configured prefix, with the bridge's upstream,
// limits and client IP; the bridge's origin policy and CORS apply to it as
// to every route.
func (b *Bridge) compatRoutes(mux *http.ServeMux) {
	if b.cfg.compatPrefix == "" {
		return
	}
	opts := []compat.Option{
		compat.WithPassHeaders(b.cfg.passHeaders...),
		compat.WithSessionTTL(b.cfg.sessionTTL),
		compat.WithSessionLimits(b.cfg.maxSessions, b.cfg.maxSessionsPerIP),
		compat.WithBodyLimit(b.cfg.maxBodyBytes),
		compat.WithFrameLimit(b.cfg.maxFrameBytes),
		compat.WithCommandRate(b.cfg.commandsPerSecond),
		compat.WithCreateTimeout(b.cfg.createTimeout),
		compat.WithKeepAlive(b.cfg.keepAlive),
		compat.WithUpstreamStaleTimeout(b.cfg.upstreamStale),
		compat.WithLogger(b.cfg.logger),
		compat.WithUpstreamBackoff(b.cfg.backoff),
		compat.WithClientIP(b.cfg.clientIP),
		compat.WithOriginPolicy(func(r *http.Request, origin string) bool {
			return b.cfg.allowedOrigins[origin] || b.sameOrigin(r, origin)
		}),
		compat.WithBudget(b.budget),
		compat.WithLimiter(compatLimiter{b}),
	}
	if b.cfg.upstream != nil {
		opts = append(opts, compat.WithUpstreamTransport(b.cfg.upstream))
	}
	if b.cluster != nil {
		// The compat sessions live in the shared store too; their POSTs
		// reach their owner through the bridge's forwarding (one Serve
		// function per process: the cluster's).
		st := b.cluster.st
		opts = append(opts, compat.WithSharedStore(st, func(ctx context.Context, node string, req []byte) ([]byte, error) {
			return st.Forward(ctx, node, mustJSON(forwarded{Compat: req}))
		}))
	}
	b.compat = compat.New(b.upstream, opts...)
	if b.cluster != nil {
		b.cluster.compat.Store(b.compat)
	}
	mux.Handle(b.cfg.compatPrefix, http.StripPrefix(strings.TrimSuffix(b.cfg.compatPrefix, "/"), b.compat))
}

// compatLimiter counts the compat API's sessions against the bridge's
// session limits (total, per client and the creation rate, an IPv6 /64
// being one client), as reserved places.
type compatLimiter struct{ b *Bridge }

func (l compatLimiter) Reserve(ip string) (func(), error) {
	b, key := l.b, ClientKey(ip)
	if b.cfg.sessionRate > 0 {
		if ok, wait := b.cfg.createLimiter.allow(key, b.cfg.sessionRate, b.cfg.sessionBurst, time.Now()); !ok {
			return nil, &compat.LimitError{Status: http.StatusTooManyRequests, Reason: "create_rate_limited", RetryAfter: wait}
		}
	}
	if err := b.reserve(key); err != nil {
		if le, ok := errors.AsType[*errLimit](err); ok {
			return nil, &compat.LimitError{Status: le.status, Reason: le.reason}
		}
		return nil, err
	}
	return sync.OnceFunc(func() { b.unreserve(key) }), nil
}
