package cable

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/sdk/protocol"
)

// Handler holds the callbacks of a subscription, shaped like the mixin of
// @rails/actioncable's subscriptions.create. Nil fields are skipped. All
// run in order on one goroutine per subscription, so a callback sees
// Received calls and state changes in the order they happened.
type Handler struct {
	// Received is called with each message.
	Received func(msg protocol.Payload)
	// Connected is called when the server confirms the subscription;
	// reconnected is true for confirmations after a reconnect.
	Connected func(reconnected bool)
	// Disconnected is called when the connection is lost while the
	// subscription was confirmed, and when the subscription ends.
	Disconnected func(willReconnect bool)
	// Rejected is called when the server rejects the subscription after a
	// reconnect (a rejection of the first subscribe is Subscribe's error).
	Rejected func()
}

// SubscribeOption configures one subscription.
type SubscribeOption func(*subOptions)

type subOptions struct {
	buffer  int
	handler *Handler
}

// WithBuffer sets the subscription's buffer, in messages (default: the
// consumer's WithMessageBuffer, 1024).
func WithBuffer(n int) SubscribeOption {
	return func(o *subOptions) {
		if n > 0 {
			o.buffer = n
		}
	}
}

// WithHandler delivers to callbacks instead of the Messages channel.
func WithHandler(h Handler) SubscribeOption {
	return func(o *subOptions) { o.handler = &h }
}

type subState uint8

const (
	stateNew subState = iota
	statePending
	stateConfirmed
	stateEnded
)

// Subscription is one channel subscription of a Consumer. Its methods are
// safe for concurrent use.
type Subscription struct {
	c     *Consumer
	id    string
	first chan error // the answer to the first subscribe, or the end

	msgs    chan protocol.Payload // channel mode
	inbox   *inbox                // handler mode
	dropped atomic.Uint64
	done    chan struct{}

	mu            sync.Mutex
	state         subState
	everConfirmed bool
	lastSent      time.Time
	err           error
}

func newSubscription(c *Consumer, id string, opts []SubscribeOption) *Subscription {
	o := subOptions{buffer: c.o.bufferSize}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Subscription{c: c, id: id, first: make(chan error, 1), done: make(chan struct{})}
	if o.handler != nil {
		s.inbox = newInbox(*o.handler, o.buffer)
	} else {
		s.msgs = make(chan protocol.Payload, o.buffer)
	}
	return s
}

// Identifier returns the identifier the subscription was made with.
func (s *Subscription) Identifier() string { return s.id }

// Messages returns the channel on which messages arrive, in order. It is
// closed when the subscription ends (see Err). It is nil for subscriptions
// made WithHandler.
func (s *Subscription) Messages() <-chan protocol.Payload { return s.msgs }

// Done is closed when the subscription ends.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended (ErrUnsubscribed, ErrRejected,
// ErrClosed, or the consumer's final error), or nil while it lasts.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Dropped returns how many messages were dropped because the buffer was
// full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Confirmed reports whether the server has confirmed the subscription on
// the current connection.
func (s *Subscription) Confirmed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateConfirmed
}

// Perform calls the channel's action with data, as @rails/actioncable's
// perform does: data (a struct or map encoding to a JSON object, or nil)
// gets an "action" key and is sent as the command's data. It returns
// ErrNotConnected, sending nothing, unless the connection is up and the
// subscription confirmed. A nil error means the frame was handed to the
// network; ActionCable sends no acknowledgement. ctx bounds this call
// only: when it is done already nothing is sent, and in no case does it
// close the connection the subscriptions share (see WithWriteTimeout).
func (s *Subscription) Perform(ctx context.Context, action string, data any) error {
	body := []byte("{}")
	if data != nil {
		var err error
		if body, err = json.Marshal(data); err != nil {
			return fmt.Errorf("cable: perform %s: %w", action, err)
		}
		body = bytes.TrimSpace(body)
		if len(body) < 2 || body[0] != '{' {
			return fmt.Errorf("cable: perform %s: data must encode to a JSON object, got %.20s", action, body)
		}
	}
	a, _ := json.Marshal(action)
	out := make([]byte, 0, len(body)+len(a)+12)
	out = append(out, body[:len(body)-1]...)
	if len(bytes.TrimSpace(body[1:len(body)-1])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"action":`...)
	out = append(out, a...)
	out = append(out, '}')
	return s.sendData(ctx, string(out))
}

// Send sends data, which must encode to a JSON object, as the command's
// data: the raw form of Perform. Rails calls the channel method that its
// "action" key names, or the channel's receive method when it has none
// (and drops the command if the channel has no receive). ctx is used as by
// Perform.
func (s *Subscription) Send(ctx context.Context, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("cable: send: %w", err)
	}
	return s.sendData(ctx, string(b))
}

func (s *Subscription) sendData(ctx context.Context, data string) error {
	s.mu.Lock()
	state, err := s.state, s.err
	s.mu.Unlock()
	if state == stateEnded {
		return err
	}
	l := s.c.liveLink()
	if l == nil || state != stateConfirmed {
		return ErrNotConnected
	}
	return s.c.send(ctx, l, &protocol.Command{Command: protocol.CommandMessage, Identifier: s.id, Data: data})
}

// Unsubscribe ends the subscription: the server is told when connected,
// and Messages is closed. It returns the error of sending the unsubscribe
// command, if any; the subscription ends regardless.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	s.c.remove(s)
	s.mu.Lock()
	wasLive := s.state == statePending || s.state == stateConfirmed
	s.mu.Unlock()
	s.end(ErrUnsubscribed)
	if l := s.c.liveLink(); l != nil && wasLive {
		return s.c.send(ctx, l, &protocol.Command{Command: protocol.CommandUnsubscribe, Identifier: s.id})
	}
	return nil
}

// markPending records that a subscribe was sent on a new connection.
func (s *Subscription) markPending(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateEnded {
		s.state, s.lastSent = statePending, now
	}
}

// dueForResend reports, and records, whether an unanswered subscribe
// should be sent again.
func (s *Subscription) dueForResend(now time.Time, interval time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != statePending || now.Sub(s.lastSent) < interval {
		return false
	}
	s.lastSent = now
	return true
}

func (s *Subscription) confirmed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != statePending {
		return // a duplicate confirm (the subscribe was repeated)
	}
	s.state = stateConfirmed
	reconnected := s.everConfirmed
	s.everConfirmed = true
	if !reconnected {
		s.first <- nil
	}
	if s.inbox != nil {
		s.inbox.push(item{kind: itemConnected, flag: reconnected})
	}
}

func (s *Subscription) rejected() {
	s.mu.Lock()
	after := s.everConfirmed
	s.mu.Unlock()
	if after && s.inbox != nil {
		s.inbox.push(item{kind: itemRejected})
	}
	s.end(ErrRejected)
}

// disconnected is called when the connection is lost and will be redialled.
func (s *Subscription) disconnected() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateConfirmed && s.inbox != nil {
		s.inbox.push(item{kind: itemDisconnected, flag: true})
	}
	if s.state != stateEnded {
		s.state = stateNew
	}
}

// deliver hands a message to the subscription without ever blocking.
func (s *Subscription) deliver(p protocol.Payload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateEnded {
		return
	}
	var ok bool
	if s.inbox != nil {
		ok = s.inbox.push(item{kind: itemMessage, msg: p})
	} else {
		select {
		case s.msgs <- p:
			ok = true
		default:
		}
	}
	if !ok {
		n := s.dropped.Add(1)
		if n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th… drop
			s.c.o.logger.Warn("cable: subscription buffer full; message dropped", "identifier", s.id, "dropped_total", n)
		}
	}
}

// end finishes the subscription with err; later calls do nothing.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateEnded {
		return
	}
	wasConfirmed := s.state == stateConfirmed
	s.state, s.err = stateEnded, err
	select {
	case s.first <- err:
	default:
	}
	if s.inbox != nil {
		if wasConfirmed {
			s.inbox.push(item{kind: itemDisconnected, flag: false})
		}
		s.inbox.close()
	} else {
		close(s.msgs)
	}
	close(s.done)
}

type itemKind uint8

const (
	itemMessage itemKind = iota
	itemConnected
	itemDisconnected
	itemRejected
)

type item struct {
	kind itemKind
	flag bool
	msg  protocol.Payload
}

// inbox queues a handler subscription's items for its goroutine. Messages
// are bounded; state changes always fit, so none is lost.
type inbox struct {
	h      Handler
	limit  int
	signal chan struct{}

	mu     sync.Mutex
	items  []item
	msgs   int
	closed bool
}

func newInbox(h Handler, limit int) *inbox {
	q := &inbox{h: h, limit: limit, signal: make(chan struct{}, 1)}
	go q.run()
	return q
}

func (q *inbox) push(it item) bool {
	q.mu.Lock()
	if q.closed || (it.kind == itemMessage && q.msgs >= q.limit) {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, it)
	if it.kind == itemMessage {
		q.msgs++
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return true
}

func (q *inbox) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *inbox) run() {
	var batch []item
	for range q.signal {
		q.mu.Lock()
		batch, q.items = q.items, batch[:0]
		q.msgs = 0
		closed := q.closed
		q.mu.Unlock()
		for i := range batch {
			q.call(&batch[i])
			batch[i] = item{}
		}
		if closed {
			q.mu.Lock()
			rest := len(q.items)
			q.mu.Unlock()
			if rest == 0 {
				return
			}
		}
	}
}

func (q *inbox) call(it *item) {
	switch it.kind {
	case itemMessage:
		if q.h.Received != nil {
			q.h.Received(it.msg)
		}
	case itemConnected:
		if q.h.Connected != nil {
			q.h.Connected(it.flag)
		}
	case itemDisconnected:
		if q.h.Disconnected != nil {
			q.h.Disconnected(it.flag)
		}
	case itemRejected:
		if q.h.Rejected != nil {
			q.h.Rejected()
		}
	}
}
