package cable

import (
	"fmt"
	"time"
)

// EventKind tells what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// EventConnected: a welcome arrived on a new connection.
	EventConnected EventKind = iota + 1
	// EventDisconnected: a live connection was lost (Err says why).
	EventDisconnected
	// EventReconnecting: the next attempt is scheduled after Delay.
	EventReconnecting
	// EventFrameError: a frame could not be decoded or was unexpected; it
	// was skipped and the connection kept (Err says why).
	EventFrameError
	// EventStopped: the consumer stopped for good (Err says why).
	EventStopped
	// EventTransportChanged: the connection moved from one transport to
	// another (From → Transport): Upgrade is set when the background probe
	// moved it up; otherwise it fell back, and Err holds the failures of
	// the transports tried first (nil when none failed, e.g. one outraced).
	EventTransportChanged
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventReconnecting:
		return "reconnecting"
	case EventFrameError:
		return "frame error"
	case EventStopped:
		return "stopped"
	case EventTransportChanged:
		return "transport changed"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event reports a change in the consumer's connection.
type Event struct {
	Kind EventKind
	// Transport is the name of the transport involved ("websocket").
	Transport string
	// From is the previous transport, and Upgrade tells a move up from a
	// fallback, on EventTransportChanged.
	From    string
	Upgrade bool
	// Reconnected is set on EventConnected after the first connection.
	Reconnected bool
	// WillReconnect is set on EventDisconnected when a reconnect follows.
	WillReconnect bool
	// Attempt (from 1) and Delay are set on EventReconnecting.
	Attempt int
	Delay   time.Duration
	// Err is the cause of a disconnect, failed attempt, frame error or stop.
	Err error
}

func (e Event) String() string {
	s := e.Kind.String()
	switch e.Kind {
	case EventConnected:
		s += fmt.Sprintf(" via %s (reconnected %v)", e.Transport, e.Reconnected)
	case EventDisconnected:
		s += fmt.Sprintf(" (will reconnect %v)", e.WillReconnect)
	case EventReconnecting:
		s += fmt.Sprintf(" attempt %d in %v", e.Attempt, e.Delay.Round(time.Millisecond))
	case EventTransportChanged:
		s += fmt.Sprintf(" %s → %s", e.From, e.Transport)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}
