package bridge

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

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
		if out, err := sse.Open(w, r, append(retryPrelude, bridgewire.AppendReset(nil, bridgewire.ReasonBadCursor)...)); err == nil {
			out.Close()
		}
		return
	}
	b.stream(w, r, s, after)
}

// stream writes session s to an event stream answering r, from after on.
//
// A stream holds no goroutine while it waits: the session's log notifies
// it (Frames.Notify) and a keep-alive timer wakes it, and each wake-up
// writes what there is on a goroutine that ends once the stream is caught
// up. Over HTTP/1.x the stream owns its connection and stream returns at
// once; otherwise stream returns when the stream ends.
func (b *Bridge) stream(w http.ResponseWriter, r *http.Request, s *session, after uint64) {
	out, err := sse.OpenDetached(w, r, retryPrelude)
	if err != nil {
		return
	}
	st := &sseStream{b: b, s: s, out: out, ack: after, after: after, done: make(chan struct{})}
	st.running = true // the first run is this goroutine's
	b.wg.Add(1)
	st.timer = time.AfterFunc(b.cfg.keepAlive, st.keepAlive)
	st.detach = s.log.AttachFunc(core.Kind(downSSE), st.stop) // a newer SSE downstream stops this one
	if !out.Hijacked() {
		// The handler stays: the client's going ends its context.
		defer context.AfterFunc(r.Context(), st.stop)()
	}
	st.run()
	if !out.Hijacked() {
		<-st.done
	}
}

// sseStream is one SSE downstream of a session.
//
// run is never running twice: wake starts it only when it is not running,
// and otherwise asks the running one to look again before it sleeps.
type sseStream struct {
	b      *Bridge
	s      *session
	out    *sse.Stream
	detach func()
	timer  *time.Timer // keep-alive
	done   chan struct{}

	// Owned by run.
	ack, after, pingSeen uint64 // ack: the client's cursor, which frees frames up to it
	stopNotify           func() bool

	mu      sync.Mutex // guards the fields below
	running bool       // run is running (or finished: it never runs again)
	again   bool       // woken while running: look again before sleeping
	keepDue bool       // the keep-alive timer fired
	stopped bool       // replaced by a newer SSE downstream, or the client went
}

// wake runs the stream unless it is running already. It is called on a
// goroutine of its own (a notification, the timer, the context's end).
func (st *sseStream) wake() {
	st.mu.Lock()
	if st.running {
		st.again = true
		st.mu.Unlock()
		return
	}
	st.running = true
	st.mu.Unlock()
	st.run()
}

// stop ends the stream: a write in progress fails at once.
func (st *sseStream) stop() {
	st.mu.Lock()
	st.stopped = true
	st.mu.Unlock()
	st.out.Close()
	st.wake()
}

func (st *sseStream) keepAlive() {
	st.mu.Lock()
	st.keepDue = true
	st.mu.Unlock()
	st.wake()
}

// run writes everything there is, then arms the log's notification and
// returns; or ends the stream.
func (st *sseStream) run() {
	for {
		st.mu.Lock()
		st.again = false
		keep, stopped := st.keepDue, st.stopped
		st.keepDue = false
		st.mu.Unlock()
		if stopped || st.flush(keep) {
			st.finish()
			return
		}
		if st.stopNotify != nil {
			st.stopNotify()
		}
		st.stopNotify = st.s.log.Notify(st.after, st.pingSeen, st.wake)
		st.mu.Lock()
		if st.again {
			st.mu.Unlock()
			continue
		}
		st.running = false
		st.mu.Unlock()
		return
	}
}

// flush writes the frames after st.after and the latest ping, batch by
// batch, plus a keep-alive comment if keep and nothing else is written.
// It reports whether the stream is over: ended or reset (and told so),
// or the client cannot take it.
//
// Frames written are not acknowledged: a broken stream loses what the
// client had not read yet, and it resumes from its Last-Event-ID. Only
// that cursor frees frames (and the client's acknowledgements elsewhere).
func (st *sseStream) flush(keep bool) (over bool) {
	b, s := st.b, st.s
	// The buffer is borrowed for this wake-up only: an idle stream holds
	// none.
	buf := b.getBuffer()
	defer func() { b.putBuffer(buf) }()
	wrote := false
	for {
		bt, err := s.readFrom(st.ack, st.after, st.pingSeen, maxBatch, maxBatchBytes)
		if errors.Is(err, errReset) {
			buf = bridgewire.AppendReset(buf, resetReason(err))
			st.out.Write(buf, writeTimeout)
			return true
		}
		st.after = bt.From // past what the client acknowledged elsewhere
		for _, f := range bt.Frames {
			buf = bridgewire.AppendEventID(buf, s.epoch, f.Seq)
			buf = bridgewire.AppendData(buf, f.Data)
			st.after = f.Seq
		}
		if bt.Ping != nil {
			buf = bridgewire.AppendData(buf, bt.Ping)
		}
		st.pingSeen = bt.PingN
		if err != nil { // ended, and everything delivered: tell EventSource to stop
			buf = bridgewire.AppendReset(buf, bridgewire.ReasonEnded)
			st.out.Write(buf, writeTimeout)
			b.stats.framesOut.Add(uint64(len(bt.Frames)) + uint64(btoi(bt.Ping != nil)))
			return true
		}
		if len(buf) == 0 && keep && !wrote {
			buf = append(buf, ": keep-alive\n\n"...)
		}
		if len(buf) > 0 {
			if st.out.Write(buf, writeTimeout) != nil {
				return true
			}
			wrote = true
			b.stats.framesOut.Add(uint64(len(bt.Frames)) + uint64(btoi(bt.Ping != nil)))
			buf = buf[:0]
		}
		if !bt.More {
			if wrote {
				st.timer.Reset(b.cfg.keepAlive)
			}
			return false
		}
	}
}

// finish ends the stream for good: run never runs again.
func (st *sseStream) finish() {
	if st.stopNotify != nil {
		st.stopNotify()
	}
	st.timer.Stop()
	st.out.Close()
	st.detach()
	close(st.done)
	st.b.wg.Done()
}
