//go:build js

package bridgeconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"syscall/js"
)

// await waits for a JS promise without blocking any JS callback: the
// callbacks only hand the outcome to this goroutine. ctx cancellation calls
// abort (if set).
func await(ctx context.Context, promise js.Value, abort func()) (js.Value, error) {
	type outcome struct {
		v   js.Value
		err error
	}
	ch := make(chan outcome, 1)
	onOK := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- outcome{v: args[0]}
		return nil
	})
	onErr := js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := "promise rejected"
		if len(args) > 0 && args[0].Truthy() {
			msg = args[0].Call("toString").String()
		}
		ch <- outcome{err: errors.New(msg)}
		return nil
	})
	defer onOK.Release()
	defer onErr.Release()
	promise.Call("then", onOK, onErr)
	select {
	case o := <-ch:
		return o.v, o.err
	case <-ctx.Done():
		if abort != nil {
			abort()
		}
		<-ch // the rejection caused by abort, so the callbacks can be released
		return js.Undefined(), ctx.Err()
	}
}

// FetchDoer is the GOOS=js Doer, on the global fetch. Cookies are sent by
// the browser (credentials: "include"); Cookie headers given are dropped,
// since fetch forbids them.
type FetchDoer struct{}

// Do performs one request.
func (FetchDoer) Do(ctx context.Context, method, u string, header map[string][]string, body []byte) (int, []byte, error) {
	fetch := js.Global().Get("fetch")
	if fetch.Type() != js.TypeFunction {
		return 0, nil, errors.New("bridge: no global fetch")
	}
	opts := js.Global().Get("Object").New()
	opts.Set("method", method)
	opts.Set("credentials", "include")
	h := js.Global().Get("Object").New()
	for k, v := range header {
		if k == "Cookie" || k == "Origin" || len(v) == 0 {
			continue
		}
		h.Set(k, v[0])
	}
	opts.Set("headers", h)
	if body != nil {
		opts.Set("body", string(body))
	}
	var abort func()
	if ac := js.Global().Get("AbortController"); ac.Type() == js.TypeFunction {
		c := ac.New()
		opts.Set("signal", c.Get("signal"))
		abort = func() { c.Call("abort") }
	}
	resp, err := await(ctx, fetch.Invoke(u, opts), abort)
	if err != nil {
		return 0, nil, fmt.Errorf("bridge: fetch: %w", err)
	}
	text, err := await(ctx, resp.Call("text"), abort)
	if err != nil {
		return 0, nil, fmt.Errorf("bridge: fetch body: %w", err)
	}
	return resp.Get("status").Int(), []byte(text.String()), nil
}

// SSE is the Server-Sent Events downstream on the browser's EventSource.
// The browser's own reconnection is not used: the first error closes the
// source and Conn resumes from its cursor.
type SSE struct {
	MaxFrame int
}

// Name returns "sse".
func (SSE) Name() string { return "sse" }

type sseEvent struct {
	reset, failed bool
	data, id      string
}

// Run reads one EventSource until it fails.
func (d SSE) Run(ctx context.Context, s *Session, after uint64, emit func(uint64, []byte) error, ready func()) error {
	ctor := js.Global().Get("EventSource")
	if ctor.Type() != js.TypeFunction {
		return &permanent{errors.New("bridge: no EventSource in this environment")}
	}
	opts := js.Global().Get("Object").New()
	opts.Set("withCredentials", true)
	es := ctor.New(s.URL("sse", url.Values{"after": {strconv.FormatUint(after, 10)}}), opts)
	defer es.Call("close")

	// Callbacks only queue; this goroutine does the work.
	var (
		mu     sync.Mutex
		queue  []sseEvent
		signal = make(chan struct{}, 1)
	)
	push := func(e sseEvent) {
		mu.Lock()
		queue = append(queue, e)
		mu.Unlock()
		select {
		case signal <- struct{}{}:
		default:
		}
	}
	onOpen := js.FuncOf(func(js.Value, []js.Value) any { ready(); return nil })
	onMessage := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ev := args[0]
		push(sseEvent{data: ev.Get("data").String(), id: ev.Get("lastEventId").String()})
		return nil
	})
	onReset := js.FuncOf(func(js.Value, []js.Value) any { push(sseEvent{reset: true}); return nil })
	onError := js.FuncOf(func(js.Value, []js.Value) any { push(sseEvent{failed: true}); return nil })
	defer onOpen.Release()
	defer onMessage.Release()
	defer onReset.Release()
	defer onError.Release()
	es.Set("onopen", onOpen)
	es.Set("onmessage", onMessage)
	es.Set("onerror", onError)
	es.Call("addEventListener", "reset", onReset)

	lastID := ""
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-signal:
		}
		mu.Lock()
		batch := queue
		queue = nil
		mu.Unlock()
		for _, e := range batch {
			switch {
			case e.reset:
				return ErrReset
			case e.failed:
				return errStreamEnded
			}
			var seq uint64
			data := []byte(e.data)
			// lastEventId carries over to events without an id (pings):
			// only a changed id numbers a frame.
			if e.id != "" && e.id != lastID && !isPing(data) {
				var ok bool
				if seq, ok = parseEventID(e.id, s.Epoch); !ok {
					return fmt.Errorf("%w: event id %q is not of this session", ErrReset, e.id)
				}
				lastID = e.id
			}
			if err := emit(seq, data); err != nil {
				return err
			}
		}
	}
}

// errStreamEnded is a dropped stream: resume from the cursor.
var errStreamEnded = errors.New("bridge: event stream ended")

// permanent marks an error no retry can fix.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return ErrReset }
