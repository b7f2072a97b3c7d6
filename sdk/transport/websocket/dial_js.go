//go:build js

package websocket

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall/js"

	"github.com/cableway/cableway/sdk/transport"
)

type options struct {
	readLimit int64
}

// The hook installed by SetJSHook, if any.
var (
	hookMu sync.Mutex
	hook   js.Value // undefined: globalThis.WebSocket
)

// SetJSHook makes the Transports of this package, in this program, open
// their sockets through hook instead of globalThis.WebSocket; a hook that
// is undefined or null goes back to globalThis.WebSocket. Connections
// already open are not affected. The cableway JS loader (js/loader.js)
// installs one at start-up: it queues the events of every socket and hands
// them to Go in one call per JavaScript task, so a burst of frames crosses
// into Go once, not once per frame.
//
// Without a hook each socket is a globalThis.WebSocket driven through
// syscall/js, with one js.Func per event handler: this works wherever a
// WHATWG WebSocket is global (browsers, Deno, Node ≥ 22), at the cost of one
// JS→Go crossing per frame.
//
// # The hook contract
//
// hook is a JavaScript object with three methods, which Go calls
// synchronously (they must not call back into Go):
//
//   - open(id, url, protocols, direct): open a socket. id is an integer in
//     1…2³²−1, unique among this program's sockets and never reused; url is
//     the URL as given to Dial; protocols is an Array of strings (possibly
//     empty). The hook must create the socket with binary frames as bytes
//     (a browser WebSocket's binaryType "arraybuffer") and report its
//     events (below). It may throw: Dial then fails with the exception's
//     text, and the id is forgotten. direct is undefined unless Dial's
//     context carries a tag (WithJSTag); it is then an object {tag,
//     readLimit}: tag as given, and the connection's read limit in bytes.
//     The hook may then hand the socket's text frames to whatever tag
//     names instead of reporting them, as long as the frames keep their
//     order: once it has reported one frame of id in a 't' or 'b' record,
//     it must report every later one too. A frame handed elsewhere is
//     never returned by ReadFrame; one whose UTF-8 size may exceed
//     readLimit must be reported (ReadFrame then fails with
//     transport.ErrFrameTooLarge and closes the socket with 1009).
//   - send(id, data): send one frame. data is a string for a text frame or
//     a Uint8Array for a binary frame (the hook may keep it; Go does not
//     reuse it). It is called only after the open record for id has been
//     delivered. A throw fails WriteFrame.
//   - close(id, code, reason): close the socket. code is 1000 or, for a
//     frame over the read limit, 1009, which browsers refuse: the hook
//     must then close without a code (or with 1000). After close Go ignores
//     every record for id, so the hook need not report the close. Go never
//     calls send or close again for id afterwards.
//
// The hook reports events by having DeliverJS called with a batch (usually
// through a function the embedding program exports; DeliverJS must not be
// called from inside open, send or close). A batch is a Uint8Array of
// records, each
//
//	kind    u8   'o' (0x6f), 't' (0x74), 'b' (0x62) or 'x' (0x78)
//	id      u32  little-endian
//	length  u32  little-endian, the payload's size in bytes
//	payload
//
// with these kinds:
//
//   - 'o' open: the socket is open; payload: the protocol the server chose
//     (socket.protocol), UTF-8, empty for none. At most once per id, before
//     any frame.
//   - 't' a text frame: payload: its UTF-8 bytes.
//   - 'b' a binary frame: payload: its bytes.
//   - 'x' closed (the socket's close event, also when it never opened):
//     payload: code u16 little-endian, wasClean u8 (0 or 1), then the
//     reason in UTF-8. The last record for id.
//
// Records must keep the order of the events of each socket; records of
// different sockets may interleave. Records for an id Go does not know (or
// no longer knows) are skipped, and an incomplete record at the end of a
// batch is ignored. DeliverJS copies the batch before it returns, so the
// hook may reuse its buffer.
func SetJSHook(h js.Value) {
	hookMu.Lock()
	defer hookMu.Unlock()
	if h.IsUndefined() || h.IsNull() {
		hook = js.Undefined()
		return
	}
	hook = h
}

func currentHook() js.Value {
	hookMu.Lock()
	defer hookMu.Unlock()
	return hook
}

var nextID atomic.Uint32

type jsTagKey struct{}

// WithJSTag returns a copy of ctx with which Dial, through the hook (see
// SetJSHook), hands tag to the hook's open: the hook may then deliver the
// socket's text frames to what tag names, in JavaScript, without Go (the
// hook contract says how). A Conn dialled so returns only the frames the
// hook reported; it still opens, sends and closes as any other. Without a
// hook the tag is ignored. The cableway JS package tags the sockets of its
// drop-in WebSocket on a JSON wire, whose frames JavaScript reads as they
// came.
func WithJSTag(ctx context.Context, tag js.Value) context.Context {
	return context.WithValue(ctx, jsTagKey{}, tag)
}

func (t *Transport) dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	for k := range req.Header {
		if !strings.EqualFold(k, "Cookie") && !strings.EqualFold(k, "Origin") { // the browser sends its own
			return nil, fmt.Errorf("%w: %q (pass tokens in the URL query instead)", transport.ErrHeaderUnsupported, k)
		}
	}
	c := &conn{
		id:     nextID.Add(1),
		limit:  t.o.readLimit,
		signal: make(chan struct{}, 1),
		opened: make(chan struct{}),
		ended:  make(chan struct{}),
	}
	if c.limit <= 0 {
		c.limit = DefaultReadLimit
	}
	protocols := make([]any, len(req.Subprotocols))
	for i, p := range req.Subprotocols {
		protocols[i] = p
	}
	var err error
	if h := currentHook(); h.Truthy() {
		direct := js.Undefined()
		if tag, ok := ctx.Value(jsTagKey{}).(js.Value); ok {
			direct = js.ValueOf(map[string]any{"tag": tag, "readLimit": c.limit})
		}
		err = c.openHooked(h, req.URL, protocols, direct)
	} else {
		err = c.openGlobal(req.URL, protocols)
	}
	if err != nil {
		return nil, err
	}
	select {
	case <-c.opened:
	case <-c.ended:
		select {
		case <-c.opened:
			// It opened, then closed (the events came together): its
			// frames, such as a refusal, are read before the close.
		default:
			c.mu.Lock()
			err := c.cause
			c.mu.Unlock()
			c.Close()
			return nil, &notOpenedError{cause: err}
		}
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	}
	if err := checkSubprotocol(req.Subprotocols, c.protocol); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// notOpenedError is a socket that closed before it opened. A JavaScript
// WebSocket reports every failed dial alike, as status 1006 with no
// reason; the message says what that can mean instead of calling it a
// close by the peer. It unwraps to the *transport.CloseError.
type notOpenedError struct{ cause error }

func (e *notOpenedError) Error() string {
	var ce *transport.CloseError
	if errors.As(e.cause, &ce) && ce.Code == 1006 && ce.Reason == "" {
		return "no connection (status 1006: refused, unreachable or a failed handshake; JavaScript does not say which)"
	}
	return "closed before it opened: " + e.cause.Error()
}

func (e *notOpenedError) Unwrap() error { return e.cause }

// callJS calls fn with args, turning a JavaScript exception into an error.
func callJS(fn func() js.Value) (v js.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			if jerr, ok := r.(js.Error); ok {
				err = errors.New(jerr.Value.Call("toString").String())
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	return fn(), nil
}
