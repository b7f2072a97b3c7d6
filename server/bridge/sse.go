package bridge

import (
	"errors"
	"net/http"
	"slices"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/server/internal/sse"
	core "github.com/cableway/cableway/server/session"
)

// retryPrelude opens every event stream: an EventSource reconnects after 1 s.
var retryPrelude = []byte("retry: 1000\n\n")

// sse serves GET /sessions/{sid}/sse: the session's frames as an event
// stream, from the client's Last-Event-ID (or "after") on.
func (b *Bridge) sse(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r)
	if s == nil {
		return
	}
	after, ok := cursor(r, s)
	if !ok {
		refuseStream(w, r, bridgewire.ReasonBadCursor)
		return
	}
	b.stream(w, r, s, after, retryPrelude)
}

// refuseStream answers with an event stream that holds only a reset with
// reason: an EventSource stops reconnecting.
func refuseStream(w http.ResponseWriter, r *http.Request, reason string) {
	if out, err := sse.Open(w, r, bridgewire.AppendReset(slices.Clip(retryPrelude), reason)); err == nil {
		out.Close()
	}
}

// stream writes session s to an event stream answering r, from after on,
// after prelude (which it does not modify) — in one write with the first
// frames (package server/internal/sse: over HTTP/1.x the stream owns its
// connection, holds no goroutine while it waits, and stream returns at
// once; otherwise stream returns when the stream ends). A newer SSE
// downstream of the session stops it.
func (b *Bridge) stream(w http.ResponseWriter, r *http.Request, s *session, after uint64, prelude []byte) {
	b.wg.Add(1)
	var detach func()
	st := sse.NewStreamer(&sseSource{s: s, ack: after, after: after}, sse.Config{
		KeepAlive:    b.cfg.keepAlive,
		WriteTimeout: writeTimeout,
		Detach:       true,
		Buffers:      &b.buffers,
		Sent:         func(n int) { b.stats.framesOut.Add(uint64(n)) },
		Done: func() {
			detach()
			b.wg.Done()
		},
	})
	detach = s.log.AttachFunc(core.Kind(downSSE), st.Stop)
	st.Serve(w, r, prelude)
}

// sseSource is a session's frames as SSE events. Frames written are not
// acknowledged: a broken stream loses what the client had not read yet,
// and it resumes from its Last-Event-ID. Only that cursor (ack) frees
// frames, and the client's acknowledgements elsewhere.
type sseSource struct {
	s                    *session
	ack, after, pingSeen uint64
}

// Append writes the next batch of frames, and the latest ping; the
// session's end or a reset ends the stream, with the reason.
func (src *sseSource) Append(buf []byte) ([]byte, int, bool, bool) {
	s := src.s
	bt, err := s.readFrom(src.ack, src.after, src.pingSeen, maxBatch, maxBatchBytes)
	if storeFailed(err) { // the stream ends without a word: the client comes back at its Last-Event-ID
		return buf, 0, false, true
	}
	if errors.Is(err, errReset) {
		return bridgewire.AppendReset(buf, resetReason(err)), 0, false, true
	}
	src.after = bt.From // past what the client acknowledged elsewhere
	for _, f := range bt.Frames {
		buf = bridgewire.AppendEventID(buf, s.epoch, f.Seq)
		buf = bridgewire.AppendData(buf, f.Data)
		src.after = f.Seq
	}
	if bt.Ping != nil {
		buf = bridgewire.AppendData(buf, bt.Ping)
	}
	src.pingSeen = bt.PingN
	n := len(bt.Frames) + btoi(bt.Ping != nil)
	if err != nil { // ended, and everything delivered: tell EventSource to stop
		return bridgewire.AppendReset(buf, bridgewire.ReasonEnded), n, false, true
	}
	return buf, n, bt.More, false
}

// Notify calls f once something follows what Append wrote.
func (src *sseSource) Notify(f func()) (stop func() bool) {
	return src.s.log.Notify(src.after, src.pingSeen, f)
}
