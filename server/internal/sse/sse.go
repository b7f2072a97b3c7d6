// Package sse writes Server-Sent Events: the one event writer of the
// Cableway server, for the bridge's own event streams and the compat API.
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

// AppendData appends data as the data field of one event, ended by the
// blank line that dispatches it. A browser ends a line at CR, LF or CRLF,
// so data is cut at each of them into data: lines (which the browser
// joins with LF): a frame with a raw CR or LF in it arrives whole, with
// every line end as LF.
func AppendData(buf, data []byte) []byte {
	buf = append(buf, "data: "...)
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			fallthrough
		case '\n':
			buf = append(buf, "\ndata: "...)
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '\n', '\n')
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
