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
	"github.com/cableway/cableway/sdk/transport/fallback"
)

// consumer is the Go side of a JS Consumer: one sdk cable.Consumer.
type consumer struct {
	id     int
	ctx    context.Context // ends at disconnect()
	cancel context.CancelFunc
	ready  chan struct{} // closed when Dial has returned
	c      *cable.Consumer
}

// sub is the Go side of a JS Subscription.
type sub struct {
	id     int
	cons   *consumer
	ident  string
	ctx    context.Context // ends at unsubscribe()
	cancel context.CancelFunc

	mu sync.Mutex
	s  *cable.Subscription // set once the first subscribe is confirmed
}

var (
	consumers sync.Map // id → *consumer
	subs      sync.Map // id → *sub
)

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
func consumerOpen(args []js.Value) any {
	c := &consumer{id: args[0].Int(), ready: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	consumers.Store(c.id, c)
	url := args[1].String()
	o := parseOptions(args[2])
	opts, err := o.consumerOptions(func(ch fallback.Change) { out.add(recMoved, c.id, change(ch)) })
	go func() {
		defer close(c.ready)
		if err != nil {
			out.add(recStop, c.id, func(dst []byte) ([]byte, error) { return appendStop(dst, err) })
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
		out.add(recConnect, c.id, func(dst []byte) ([]byte, error) {
			dst, _ = flag(e.Reconnected)(dst)
			return append(dst, clean(e.Transport)...), nil
		})
	case cable.EventDisconnected:
		out.add(recDrop, c.id, func(dst []byte) ([]byte, error) {
			dst, _ = flag(e.WillReconnect)(dst)
			return append(dst, clean(errText(e.Err))...), nil
		})
	case cable.EventStopped:
		consumers.Delete(c.id)
		out.add(recStop, c.id, func(dst []byte) ([]byte, error) { return appendStop(dst, e.Err) })
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
func consumerClose(args []js.Value) any {
	id, pid := args[0].Int(), args[1].Int()
	v, ok := consumers.Load(id)
	if !ok {
		out.add(recResult, pid, nil)
		return nil
	}
	c := v.(*consumer)
	c.cancel()
	go func() {
		<-c.ready
		if c.c != nil {
			c.c.Close()
		}
		out.add(recResult, pid, nil)
	}()
	return nil
}

// subscribe(id, consumerID, identifier) subscribes once the consumer is
// connected. Confirmations, messages, drops and rejections arrive as
// c/r/d/j records.
func subscribe(args []js.Value) any {
	v, ok := consumers.Load(args[1].Int())
	if !ok {
		return "cableway: consumer is closed"
	}
	s := &sub{id: args[0].Int(), cons: v.(*consumer), ident: args[2].String()}
	s.ctx, s.cancel = context.WithCancel(s.cons.ctx)
	subs.Store(s.id, s)
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
	h := cable.Handler{
		Received: func(msg protocol.Payload) {
			out.add(recRecv, s.id, msg.AppendJSON)
		},
		Connected:    func(re bool) { out.add(recSubOK, s.id, flag(re)) },
		Disconnected: func(will bool) { out.add(recSubDrop, s.id, flag(will)) },
		Rejected:     func() { out.add(recReject, s.id, nil) },
	}
	cs, err := s.cons.c.Subscribe(s.ctx, s.ident, cable.WithHandler(h))
	switch {
	case errors.Is(err, cable.ErrRejected):
		subs.Delete(s.id)
		out.add(recReject, s.id, nil)
	case err != nil:
		subs.Delete(s.id)
	default:
		s.mu.Lock()
		s.s = cs
		s.mu.Unlock()
		go func() {
			<-cs.Done()
			subs.Delete(s.id)
		}()
	}
}

// subscriptionSend(id, promiseID, action, dataJSON) performs action with
// data (a JSON object) or, when action is "", sends data as it is. The
// promise fails when the subscription is not confirmed or not connected:
// nothing is queued.
func subscriptionSend(args []js.Value) any {
	pid := args[1].Int()
	v, ok := subs.Load(args[0].Int())
	var s *sub
	if ok {
		s = v.(*sub)
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	if s == nil || s.s == nil {
		out.addText(recResult, pid, cable.ErrNotConnected.Error())
		return nil
	}
	cs, action, data := s.s, args[2].String(), json.RawMessage(args[3].String())
	go func() {
		var err error
		if action != "" {
			err = cs.Perform(s.ctx, action, data)
		} else {
			err = cs.Send(s.ctx, data)
		}
		out.addText(recResult, pid, errText(err))
	}()
	return nil
}

// unsubscribe(id) ends the subscription (and a subscribe still waiting).
func unsubscribe(args []js.Value) any {
	v, ok := subs.LoadAndDelete(args[0].Int())
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
