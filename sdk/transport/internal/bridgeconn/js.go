//go:build js

package bridgeconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall/js"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/protocol"

	"github.com/cableway/cableway/sdk/transport"
)

// await waits for a JS promise without blocking any JS callback: the
// callbacks only hand the outcome to this goroutine. When ctx ends first,
// abort (if set) is called and await returns at once; the callbacks are
// released once the promise has settled.
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
	release := func() {
		onOK.Release()
		onErr.Release()
	}
	promise.Call("then", onOK, onErr)
	select {
	case o := <-ch:
		release()
		return o.v, o.err
	case <-ctx.Done():
		if abort != nil {
			abort()
		}
		go func() {
			<-ch // JS may still call one of them until the promise settles
			release()
		}()
		return js.Undefined(), ctx.Err()
	}
}

// FetchDoer is the GOOS=js Doer, on the global fetch (browsers, Node ≥ 18,
// Deno). Requests carry the browser's cookies for the bridge
// (credentials: "include"; a cross-origin bridge must list the page's
// origin in --allowed-origins). Cookie and Origin headers given are
// dropped, since fetch forbids them, and so is Content-Type: a string body
// goes as text/plain, which the bridge accepts, and which keeps
// cross-origin requests free of CORS preflights.
type FetchDoer struct{}

// Do performs one request.
func (FetchDoer) Do(ctx context.Context, method, u string, header map[string][]string, body []byte) (int, []byte, error) {
	fetch := js.Global().Get("fetch")
	if fetch.Type() != js.TypeFunction {
		return 0, nil, errors.New("bridge: no global fetch")
	}
	object := js.Global().Get("Object")
	opts := object.New()
	opts.Set("method", method)
	opts.Set("credentials", "include")
	opts.Set("cache", "no-store")
	h := object.New()
	for k, v := range header {
		switch {
		case len(v) == 0, strings.EqualFold(k, "Cookie"), strings.EqualFold(k, "Origin"), strings.EqualFold(k, "Content-Type"):
			continue
		}
		h.Set(k, strings.Join(v, ", "))
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
	var promise js.Value
	if err := catch(func() { promise = fetch.Invoke(u, opts) }); err != nil {
		return 0, nil, fmt.Errorf("bridge: fetch: %w", err)
	}
	resp, err := await(ctx, promise, abort)
	if err != nil {
		return 0, nil, fmt.Errorf("bridge: fetch: %w", err)
	}
	text, err := await(ctx, resp.Call("text"), abort)
	if err != nil {
		return 0, nil, fmt.Errorf("bridge: fetch body: %w: %w", errCutShort, err)
	}
	return resp.Get("status").Int(), []byte(text.String()), nil
}

// catch runs f, turning a JavaScript exception into an error.
func catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if jerr, ok := r.(js.Error); ok {
				err = errors.New(jerr.Value.Call("toString").String())
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	f()
	return nil
}

// SSE is the Server-Sent Events downstream on the global EventSource
// (browsers; Node has none: a program may install one as
// globalThis.EventSource, or use long-polling). The EventSource's own
// reconnection is not used: the first error closes it and Conn resumes
// from its cursor. An error that leaves the EventSource CLOSED means the
// bridge answered with an HTTP error or no event stream (EventSource does
// not say which): that is final, as a 4xx is natively.
type SSE struct {
	MaxFrame int // largest event accepted (default 1 MiB)
}

// Name returns "sse".
func (SSE) Name() string { return transport.NameSSE }

type sseEvent struct {
	reset, failed, refused bool
	data, id               string // for a reset, data is its reason
}

// Run reads one EventSource until it fails.
func (d SSE) Run(ctx context.Context, s *Session, after uint64, emit func(uint64, []byte) error) error {
	ctor := js.Global().Get("EventSource")
	if ctor.Type() != js.TypeFunction {
		return &permanent{errors.New("no EventSource in this JavaScript environment")}
	}
	maxFrame := d.MaxFrame
	if maxFrame <= 0 {
		maxFrame = 1 << 20
	}
	opts := js.Global().Get("Object").New()
	opts.Set("withCredentials", true)
	var es js.Value
	if err := catch(func() { es = ctor.New(s.URL("sse", url.Values{"after": {strconv.FormatUint(after, 10)}}), opts) }); err != nil {
		return &permanent{fmt.Errorf("EventSource: %w", err)}
	}

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
	onMessage := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ev := args[0]
		push(sseEvent{data: ev.Get("data").String(), id: ev.Get("lastEventId").String()})
		return nil
	})
	onReset := js.FuncOf(func(_ js.Value, args []js.Value) any {
		e := sseEvent{reset: true}
		if len(args) > 0 {
			if d := args[0].Get("data"); d.Type() == js.TypeString {
				e.data = d.String()
			}
		}
		push(e)
		return nil
	})
	onError := js.FuncOf(func(js.Value, []js.Value) any {
		push(sseEvent{failed: true, refused: es.Get("readyState").Int() == 2}) // CLOSED: no retry
		return nil
	})
	es.Set("onmessage", onMessage)
	es.Set("onerror", onError)
	es.Call("addEventListener", "reset", onReset)
	defer func() {
		// JS runs only while Go waits: once the handlers are detached none
		// of them can be called, so they can be released.
		es.Call("close")
		es.Set("onmessage", js.Null())
		es.Set("onerror", js.Null())
		es.Call("removeEventListener", "reset", onReset)
		onMessage.Release()
		onReset.Release()
		onError.Release()
	}()

	lastID := ""
	var m protocol.Message
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
				return resetError(bridgewire.ParseReset([]byte(e.data)))
			case e.refused:
				return &permanent{errors.New("the event stream was refused (an HTTP error, or not an event stream)")}
			case e.failed:
				return errStreamEnded
			}
			if len(e.data) > maxFrame {
				return &permanent{fmt.Errorf("%w (%d bytes)", transport.ErrFrameTooLarge, maxFrame)}
			}
			var seq uint64
			data := []byte(e.data)
			// lastEventId carries over to events without an id (pings):
			// only a changed id numbers a frame.
			if ping, _ := frameKind(&m, data); e.id != "" && e.id != lastID && !ping {
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

// permanent marks an error no retry can fix: it wraps ErrReset too, which
// makes it final for Conn.
type permanent struct{ err error }

func (p *permanent) Error() string   { return p.err.Error() }
func (p *permanent) Unwrap() []error { return []error{p.err, ErrReset} }
