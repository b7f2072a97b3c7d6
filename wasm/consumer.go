//go:build js && wasm

package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"syscall/js"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
)

// consumer is the Go side of a JS Consumer: one sdk cable.Consumer. It is
// in rt.consumers from consumerOpen until it stops (its S record); its
// events, run on the sdk's goroutines, report to rt's outbox. c is set
// once, before ready is closed.
type consumer struct {
	rt     *Runtime
	id     int
	ctx    context.Context // ends at disconnect()
	cancel context.CancelFunc
	ready  chan struct{} // closed when Dial has returned
	c      *cable.Consumer
}

// sub is the Go side of a JS Subscription, in rt.subs (of its consumer's
// Runtime) from subscribe until unsubscribe, a rejection or its end.
type sub struct {
	id     int
	cons   *consumer
	ident  string
	ctx    context.Context // ends at unsubscribe()
	cancel context.CancelFunc

	mu sync.Mutex
	s  *cable.Subscription // set once the first subscribe is confirmed
}

func flag(b bool) func([]byte) ([]byte, error) {
	return func(dst []byte) ([]byte, error) {
		if b {
			return append(dst, '1'), nil
		}
		return append(dst, '0'), nil
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// consumerOpen(id, url, options) starts a consumer. Its events arrive as
// C/D/S records; it keeps itself connected until consumerClose or a
// refusal (S with the error).
func (rt *Runtime) consumerOpen(args []js.Value) any {
	id, url, o := args[0].Int(), args[1].String(), parseOptions(args[2])
	c := &consumer{rt: rt, id: id, ready: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	rt.consumers.Store(c.id, c)
	opts, err := o.consumerOptions(func(ch transport.Change) { rt.out.add(recMoved, c.id, change(ch)) })
	go func() {
		defer close(c.ready)
		if err != nil {
			c.rt.out.add(recStop, c.id, func(dst []byte) ([]byte, error) { return appendStop(dst, err) })
			return
		}
		opts = append(opts, cable.WithEventHandler(c.event))
		// Dial retries with backoff until the welcome, a refusal, or
		// disconnect(); its events report each step.
		c.c, _ = cable.Dial(c.ctx, url, opts...)
	}()
	return nil
}

func (c *consumer) event(e cable.Event) {
	switch e.Kind {
	case cable.EventConnected:
		c.rt.out.add(recConnect, c.id, func(dst []byte) ([]byte, error) {
			dst, _ = flag(e.Reconnected)(dst)
			return append(dst, clean(e.Transport)...), nil
		})
	case cable.EventDisconnected:
		c.rt.out.add(recDrop, c.id, func(dst []byte) ([]byte, error) {
			dst, _ = flag(e.WillReconnect)(dst)
			return append(dst, clean(errText(e.Err))...), nil
		})
	case cable.EventStopped:
		c.rt.consumers.CompareAndDelete(c.id, c)
		c.rt.out.add(recStop, c.id, func(dst []byte) ([]byte, error) { return appendStop(dst, e.Err) })
	}
}

// appendStop writes why a consumer stopped as JSON {"message","reason"}
// (reason: the server's disconnect reason, if any), or nothing after
// disconnect().
func appendStop(dst []byte, err error) ([]byte, error) {
	if err == nil || errors.Is(err, cable.ErrClosed) {
		return dst, nil
	}
	v := struct {
		Message string `json:"message"`
		Reason  string `json:"reason,omitempty"`
	}{Message: err.Error()}
	var de *cable.DisconnectError
	if errors.As(err, &de) {
		v.Reason = de.Reason
	}
	b, jerr := json.Marshal(v)
	return append(dst, b...), jerr
}

// consumerClose(id, promiseID) stops the consumer; the promise settles
// when it has.
func (rt *Runtime) consumerClose(args []js.Value) any {
	id, pid := args[0].Int(), args[1].Int()
	rt.closeConsumer(id, func() { rt.out.add(recResult, pid, nil) })
	return nil
}

// closeConsumer stops consumer id, and then calls done (if not nil) on a
// goroutine of its own; at once when there is no such consumer. It does
// not block.
func (rt *Runtime) closeConsumer(id int, done func()) {
	v, ok := rt.consumers.Load(id)
	if !ok {
		if done != nil {
			done()
		}
		return
	}
	c := v.(*consumer)
	c.cancel()
	go func() {
		<-c.ready
		if c.c != nil {
			c.c.Close()
		}
		if done != nil {
			done()
		}
	}()
}

// subscribe(id, consumerID, identifier) subscribes once the consumer is
// connected. Confirmations, messages, drops and rejections arrive as
// c/r/d/j records.
func (rt *Runtime) subscribe(args []js.Value) any {
	id, cid, ident := args[0].Int(), args[1].Int(), args[2].String()
	v, ok := rt.consumers.Load(cid)
	if !ok {
		return "cableway: consumer is closed"
	}
	s := &sub{id: id, cons: v.(*consumer), ident: ident}
	s.ctx, s.cancel = context.WithCancel(s.cons.ctx)
	rt.subs.Store(s.id, s)
	go s.run()
	return ""
}

func (s *sub) run() {
	select {
	case <-s.cons.ready:
	case <-s.ctx.Done():
		return
	}
	if s.cons.c == nil {
		return // the consumer never connected; its S record says why
	}
	rt := s.cons.rt
	h := cable.Handler{
		Received: func(msg protocol.Payload) {
			rt.out.add(recRecv, s.id, msg.AppendJSON)
		},
		Connected:    func(re bool) { rt.out.add(recSubOK, s.id, flag(re)) },
		Disconnected: func(will bool) { rt.out.add(recSubDrop, s.id, flag(will)) },
		Rejected:     func() { rt.out.add(recReject, s.id, nil) },
	}
	cs, err := s.cons.c.Subscribe(s.ctx, s.ident, cable.WithHandler(h))
	switch {
	case errors.Is(err, cable.ErrRejected):
		rt.subs.CompareAndDelete(s.id, s)
		rt.out.add(recReject, s.id, nil)
	case err != nil:
		rt.subs.CompareAndDelete(s.id, s)
	default:
		s.mu.Lock()
		s.s = cs
		s.mu.Unlock()
		go func() {
			<-cs.Done()
			rt.subs.CompareAndDelete(s.id, s)
		}()
	}
}

// subscriptionSend(id, promiseID, action, dataJSON) performs action with
// data (a JSON object) or, when action is "", sends data as it is. The
// promise fails when the subscription is not confirmed or not connected:
// nothing is queued.
func (rt *Runtime) subscriptionSend(args []js.Value) any {
	id, pid, action, data := args[0].Int(), args[1].Int(), args[2].String(), json.RawMessage(args[3].String())
	v, ok := rt.subs.Load(id)
	var s *sub
	if ok {
		s = v.(*sub)
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	if s == nil || s.s == nil {
		rt.out.addText(recResult, pid, cable.ErrNotConnected.Error())
		return nil
	}
	cs := s.s
	go func() {
		var err error
		if action != "" {
			err = cs.Perform(s.ctx, action, data)
		} else {
			err = cs.Send(s.ctx, data)
		}
		rt.out.addText(recResult, pid, errText(err))
	}()
	return nil
}

// unsubscribe(id) ends the subscription (and a subscribe still waiting).
func (rt *Runtime) unsubscribe(args []js.Value) any {
	v, ok := rt.subs.LoadAndDelete(args[0].Int())
	if !ok {
		return nil
	}
	s := v.(*sub)
	s.mu.Lock()
	cs := s.s
	s.mu.Unlock()
	s.cancel()
	if cs != nil {
		go cs.Unsubscribe(context.Background())
	}
	return nil
}

// clean replaces the outbox separators in text.
func clean(text string) string {
	b := []byte(text)
	for i, c := range b {
		if c == recordSep || c == fieldSep {
			b[i] = ' '
		}
	}
	return string(b)
}
