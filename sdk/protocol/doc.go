// Package protocol holds the ActionCable wire format: the frames a server
// sends (welcome, ping, confirm_subscription, reject_subscription,
// disconnect and channel messages), the commands a client sends (subscribe,
// unsubscribe, message), and the codecs that turn them into bytes.
//
// Two codecs are provided: [JSON] for the "actioncable-v1-json" subprotocol
// that every Rails server speaks, and [MessagePack] for
// "actioncable-v1-msgpack" (AnyCable's binary layout: the same maps, encoded
// as MessagePack).
//
// The package does no I/O and keeps no state: every function may be called
// from any goroutine. Decoding is built for a hot read loop: it scans only
// the envelope of a frame (type, identifier, reason, reconnect) and keeps the
// channel payload as a raw [Payload] span until the caller decodes it, so a
// consumer that forwards frames never pays for a full parse.
//
// Identifiers are opaque strings. Rails compares them byte for byte with the
// identifier of the subscribe command, so they are never re-marshalled
// through a map (which would sort keys); [NewIdentifier] builds one with the
// channel first and the params in the caller's order.
package protocol
