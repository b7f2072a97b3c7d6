//go:build js && wasm

package wasm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall/js"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// settleTimeout bounds how long a socket closed while connecting waits for
// its dial to settle before abandoning it.
const settleTimeout = 5 * time.Second

// socket is the Go side of a JS CableSocket: one transport.Conn whose
// frames are shown to JavaScript as actioncable-v1-json, whatever codec the
// wire speaks.
//
// It is in rt.sockets from socketOpen until finish, which reports its
// close record; its goroutines (run and read, write) report to rt's outbox.
// The fields under mu are shared between them and the API functions.
type socket struct {
	rt     *Runtime
	id     int
	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	conn        transport.Conn // nil until open
	codec       protocol.Codec // the wire codec; nil passes frames through
	queue       [][]byte       // encoded commands for the writer
	closing     bool
	closeCode   int
	closeReason string
	writeErr    error         // why the writer stopped, if it failed
	wake        chan struct{} // the writer's signal
}

// socketOpen(id, url, protocols []string, options) starts dialling. The
// wire offer is MessagePack first when options.msgpack is set, then JSON;
// protocols the JS client offered that no codec speaks (e.g.
// actioncable-unsupported) are offered after them and passed through.
// Its events arrive as n/o/m/e/x records (and w on a fallback); a socket
// that cannot open reports e and then x, with the error as the reason.
func (rt *Runtime) socketOpen(args []js.Value) any {
	id, url, opts := args[0].Int(), args[1].String(), parseOptions(args[3])
	var offer []string
	if opts.MsgPack {
		offer = append(offer, protocol.SubprotocolMessagePack)
	}
	if n := args[2].Length(); n > 0 {
		offer = append(offer, protocol.SubprotocolJSON)
		for i := range n {
			if p := args[2].Index(i).String(); p != protocol.SubprotocolJSON && p != protocol.SubprotocolMessagePack {
				offer = append(offer, p)
			}
		}
	} else if opts.MsgPack {
		offer = append(offer, protocol.SubprotocolJSON)
	}
	tr, err := opts.transport(func(ch transport.Change) { rt.out.add(recMove, id, change(ch)) })
	s := &socket{rt: rt, id: id, wake: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	rt.sockets.Store(id, s)
	if err != nil {
		go s.fail(err)
		return nil
	}
	go s.run(tr, &transport.Request{URL: url, Subprotocols: offer})
	return nil
}

// fail reports a socket that never opened: error, then close 1006, as a
// browser does, with the error as the close reason (a browser gives none,
// which leaves the page guessing).
func (s *socket) fail(err error) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		s.finish(1006, "cableway: closed before the connection opened", false)
		return
	}
	s.rt.out.addText(recError, s.id, err.Error())
	s.finish(1006, err.Error(), false)
}

func (s *socket) finish(code int, reason string, clean bool) {
	s.rt.sockets.CompareAndDelete(s.id, s)
	s.cancel()
	c := "0"
	if clean {
		c = "1"
	}
	s.rt.out.addText(recClose, s.id, strconv.Itoa(code)+","+c+","+reason)
}

func (s *socket) run(tr transport.Transport, req *transport.Request) {
	ctx := s.ctx
	if _, plain := tr.(*websocket.Transport); plain {
		// One WebSocket, no fallback: on a wire whose frames JS reads as
		// they come (not MessagePack), the loader's wire hands the text
		// frames straight to the JS CableSocket, and it sends on the
		// WebSocket itself (see js/loader.js): a frame then costs no
		// crossing into Go. What is left to Go is the dial, the
		// subprotocol, the read limit and the close.
		ctx = websocket.WithJSTag(ctx, js.ValueOf(map[string]any{
			"socket":  s.id,
			"convert": []any{protocol.SubprotocolMessagePack},
		}))
	}
	conn, err := tr.Dial(ctx, req)
	if err != nil {
		s.fail(err)
		return
	}
	shown := conn.Subprotocol()
	codec, ok := protocol.CodecFor(shown)
	if ok {
		shown = protocol.SubprotocolJSON // JS always reads JSON
	} else {
		codec = nil
	}
	s.mu.Lock()
	s.conn, s.codec = conn, codec
	closing, code, reason := s.closing, s.closeCode, s.closeReason
	s.mu.Unlock()
	if closing { // close() was called while connecting: close now that it settled
		conn.Close()
		s.finish(code, reason, true)
		return
	}
	s.rt.out.addText(recTransport, s.id, transportName(tr, conn))
	s.rt.out.addText(recOpen, s.id, shown)
	go s.write(conn)
	if _, isJSON := codec.(protocol.JSONCodec); isJSON {
		// JSON frames are what JS reads: passed on byte for byte, as a
		// plain WebSocket would (re-encoding them would drop what this sdk
		// does not model, such as a newer server's welcome "sid").
		codec = nil
	}
	s.read(conn, codec)
}

// convert shows one wire frame to JS as JSON: decoded with codec (the
// wire's, when it is not JSON) and encoded as JSON; with no codec, as it
// came.
func (s *socket) convert(codec protocol.Codec, frame []byte, m *protocol.Message) {
	if codec == nil {
		if err := s.rt.out.add(recFrame, s.id, func(dst []byte) ([]byte, error) { return append(dst, frame...), nil }); err != nil {
			s.rt.out.addText(recError, s.id, "cableway: skipped a frame: "+err.Error())
		}
		return
	}
	if derr := codec.DecodeMessage(frame, m); derr != nil {
		// A frame that cannot be shown as JSON is skipped, and said so
		// with an error event (the socket stays open).
		s.rt.out.addText(recError, s.id, "cableway: skipped a frame that cannot be shown as JSON: "+derr.Error())
		return
	}
	if err := s.rt.out.add(recFrame, s.id, func(dst []byte) ([]byte, error) { return protocol.JSONCodec{}.AppendMessage(dst, m) }); err != nil {
		s.rt.out.addText(recError, s.id, "cableway: skipped a frame: "+err.Error())
	}
}

// read moves frames from the wire to the outbox until the connection ends.
func (s *socket) read(conn transport.Conn, codec protocol.Codec) {
	var (
		buf []byte
		m   protocol.Message
		err error
	)
	for {
		if buf, err = conn.ReadFrame(s.ctx, buf); err != nil {
			break
		}
		s.convert(codec, buf, &m)
	}
	s.mu.Lock()
	closing, code, reason, werr := s.closing, s.closeCode, s.closeReason, s.writeErr
	s.mu.Unlock()
	var ce *transport.CloseError
	switch {
	case closing:
		conn.Close()
		s.finish(code, reason, true)
	case werr != nil: // the writer failed and closed the connection
		s.rt.out.addText(recError, s.id, werr.Error())
		s.finish(1006, werr.Error(), false)
	case errors.As(err, &ce) && ce.Code != 1006:
		s.finish(ce.Code, ce.Reason, true) // the server's close frame
	case errors.Is(err, transport.ErrFrameTooLarge):
		s.rt.out.addText(recError, s.id, err.Error())
		s.finish(1009, "frame exceeds the read limit", false)
	default: // lost (1006) or failed: error, then close 1006 saying why
		s.rt.out.addText(recError, s.id, err.Error())
		conn.Close()
		s.finish(1006, err.Error(), false)
	}
}

// write sends queued commands in order until the socket ends.
func (s *socket) write(conn transport.Conn) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, frame := range q {
			if err := conn.WriteFrame(s.ctx, frame); err != nil {
				var ce *transport.CloseError
				if errors.As(err, &ce) || errors.Is(err, transport.ErrClosed) || s.ctx.Err() != nil {
					return // the connection ended: the reader reports how
				}
				// A command that cannot be sent must not vanish while the
				// socket looks open: end the connection (the reader then
				// reports this error and a close), as nothing queued
				// after it could be sent in order either.
				s.mu.Lock()
				s.writeErr = fmt.Errorf("cableway: sending a command failed: %w", err)
				s.mu.Unlock()
				conn.Close()
				return
			}
		}
	}
}

// socketSend(id, text) decodes text as a JSON command and queues it,
// encoded with the wire codec. It returns "" or why the text was refused
// (not JSON, or not a command the wire codec can carry).
//
// A socket whose connection has ended, or that is closing, drops the text
// and returns "": JS may still see it OPEN until the close record arrives,
// and a browser's WebSocket does not throw from send() then either (the
// close event that follows says what happened).
func (rt *Runtime) socketSend(args []js.Value) any {
	id, text := args[0].Int(), args[1].String()
	v, ok := rt.sockets.Load(id)
	if !ok {
		return ""
	}
	s := v.(*socket)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ""
	}
	if s.conn == nil { // JS sends only once the open record came
		return "cableway: socket is not open yet"
	}
	frame := []byte(text)
	if s.codec != nil {
		var cmd protocol.Command
		if err := (protocol.JSONCodec{}).DecodeCommand(frame, &cmd); err != nil {
			return err.Error()
		}
		var err error
		if frame, err = s.codec.AppendCommand(nil, &cmd); err != nil {
			return err.Error()
		}
	}
	s.queue = append(s.queue, frame)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return ""
}

// socketClose(id, code, reason) closes the socket. One still connecting is
// closed once its dial settles (or after settleTimeout), and reports a
// close event then.
func (rt *Runtime) socketClose(args []js.Value) any {
	code := 1005 // no status, as browsers report a close() without a code
	if args[1].Type() == js.TypeNumber {
		code = args[1].Int()
	}
	rt.closeSocket(args[0].Int(), code, args[2].String())
	return nil
}

// closeSocket closes socket id (if open and not closing) with code and
// reason, reported in its close record. It does not block.
func (rt *Runtime) closeSocket(id, code int, reason string) {
	v, ok := rt.sockets.Load(id)
	if !ok {
		return
	}
	s := v.(*socket)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing, s.closeCode, s.closeReason = true, code, reason
	if s.conn != nil {
		// The reader sees the connection end and reports the close.
		go s.conn.Close()
	} else {
		time.AfterFunc(settleTimeout, s.cancel)
	}
}
