// Package cable is an ActionCable consumer: it connects to a Rails
// ActionCable server (or a Cableway bridge), subscribes to channels,
// performs actions and receives broadcasts, and stays connected.
//
// # Connecting
//
// [Dial] returns once the server's welcome has arrived. From then on the
// Consumer keeps itself connected: a connection silent for longer than the
// stale timeout (6 s; Rails pings every 3 s) is dropped, and every lost
// connection is redialled with jittered exponential backoff (250–500 ms at
// first, growing ×2 up to 15–30 s; they start over only after a connection
// that lived at least the stale timeout, so a server that welcomes and then
// drops the connection is not redialled in a tight loop). After each
// welcome every subscription is sent again, and a subscribe that is not
// answered is repeated every 500 ms until the server confirms or rejects it.
//
// The consumer stops for good when the server refuses the connection
// (a disconnect frame with reason "unauthorized" or reconnect:false, which
// surface as a *DisconnectError), or when Close is called.
//
// # Receiving
//
// Each [Subscription] delivers its messages, in arrival order, either on a
// bounded channel ([Subscription.Messages]) or to callbacks run in order on
// one goroutine of its own ([WithHandler]). Message payloads arrive raw
// (protocol.Payload): decode them when and into what you like. Nothing ever
// blocks the connection's reader: when a subscription's buffer is full, the
// newest message is dropped, counted ([Subscription.Dropped]) and logged.
//
// # Goroutines
//
// All methods of Consumer and Subscription are safe for concurrent use.
// Event and handler callbacks run on goroutines owned by the Consumer; they
// may call any method, but block delivery of later events while they run.
//
// Logs go to a *slog.Logger ([WithLogger]); by default nothing is logged.
package cable
