package cable

import (
	"errors"
	"fmt"

	"github.com/cableway/cableway/sdk/protocol"
)

// Errors returned by the consumer, for errors.Is.
var (
	// ErrClosed: the Consumer (or Subscription) was closed by its owner.
	ErrClosed = errors.New("cable: consumer closed")
	// ErrNotConnected: the action needs a live connection and a confirmed
	// subscription, and there is none right now. Nothing was sent: the
	// consumer never queues actions blindly, since an action replayed after
	// a reconnect can be worse than one that failed.
	ErrNotConnected = errors.New("cable: not connected")
	// ErrRejected: the server rejected the subscription.
	ErrRejected = errors.New("cable: subscription rejected")
	// ErrUnsubscribed: the subscription was ended by Unsubscribe.
	ErrUnsubscribed = errors.New("cable: unsubscribed")
	// ErrDuplicateSubscription: the consumer already has a subscription
	// with this identifier (the server would treat both as one).
	ErrDuplicateSubscription = errors.New("cable: already subscribed with this identifier")
	// ErrStale: no frame, not even a ping, arrived within the stale timeout.
	ErrStale = errors.New("cable: connection stale")
	// ErrNoWelcome: the connection opened but no welcome arrived in time.
	ErrNoWelcome = errors.New("cable: no welcome from server")
	// ErrUnauthorized matches a *DisconnectError whose reason is
	// "unauthorized": the server's connect refused the credentials.
	ErrUnauthorized = errors.New("cable: unauthorized")
)

// DisconnectError is a disconnect frame from the server.
type DisconnectError struct {
	// Reason is the server's reason: "unauthorized", "invalid_request",
	// "server_restart", "remote", or empty.
	Reason string
	// Reconnect is the server's advice. The consumer stops when it is false
	// or the reason is "unauthorized", and reconnects otherwise.
	Reconnect bool
}

func (e *DisconnectError) Error() string {
	r := e.Reason
	if r == "" {
		r = "no reason given"
	}
	return fmt.Sprintf("cable: server disconnected: %s (reconnect %v)", r, e.Reconnect)
}

// DisconnectOf reads a disconnect frame (m.Type is protocol.TypeDisconnect)
// as the consumer acts on it. A frame with no "reconnect" key (Rails ≥ 6.0
// always sends one) advises no reconnect, as in @rails/actioncable, whose
// close({allowReconnect: undefined}) stops its monitor. Code that passes
// disconnects on (the Cableway bridge) reads them with it too.
func DisconnectOf(m *protocol.Message) *DisconnectError {
	return &DisconnectError{Reason: m.Reason, Reconnect: m.HasReconnect && m.Reconnect}
}

// Is makes errors.Is(err, ErrUnauthorized) true for unauthorized disconnects.
func (e *DisconnectError) Is(target error) bool {
	return target == ErrUnauthorized && e.Reason == protocol.ReasonUnauthorized
}

// Final reports whether the consumer stops for this disconnect.
func (e *DisconnectError) Final() bool {
	return !e.Reconnect || e.Reason == protocol.ReasonUnauthorized
}
