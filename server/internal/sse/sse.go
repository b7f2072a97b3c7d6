// Package sse starts and writes Server-Sent Event streams for the Cableway
// server. Event data is formatted by internal/bridgewire (AppendData), the
// one definition of the bridge's wire format.
package sse

import (
	"net/http"
	"time"
)

// Start answers 200 with the headers of an event stream that proxies must
// pass through unbuffered and untransformed, and returns the controller
// that Write flushes with.
func Start(w http.ResponseWriter) *http.ResponseController {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w)
}

// Write writes buf and flushes it within timeout: a client that cannot
// take a batch in time is cut off (an EventSource resumes from its
// Last-Event-ID).
func Write(w http.ResponseWriter, rc *http.ResponseController, buf []byte, timeout time.Duration) error {
	rc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return rc.Flush()
}
