package bridge

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
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
// browser), the same origin as the request's Host, or an allowlisted one.
func (b *Bridge) originAllowed(r *http.Request) (origin string, ok bool) {
	origin = r.Header.Get("Origin")
	if origin == "" {
		return "", true
	}
	if b.cfg.allowedOrigins[origin] {
		return origin, true
	}
	u, err := url.Parse(origin)
	return origin, err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
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
