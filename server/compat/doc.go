// Package compat serves the HTTP API of actioncable-to-eventsource ("the
// seed"), so that its existing clients keep working with Cableway:
//
//	GET  /{events-id}  Accept: text/event-stream   seed events over SSE
//	GET  /{events-id}  Accept: application/json    seed events by long-poll
//	POST /{events-id}                              subscribe / unsubscribe / send
//
// The API, and where it deliberately differs from the seed, is specified in
// server/COMPAT.md. The bridge (server/bridge) mounts a [Handler] under its
// compat prefix, behind its origin policy and CORS.
//
// Each events id has at most one session at a time: an sdk/cable Consumer
// connected to Rails with the credentials of the GET that opened it, and
// the seed events it produced, which are the frames of a session-core log
// (server/session.Log) under the seed's poll-queue bound. The consumer
// does the ActionCable work — subscribing, repeating unanswered
// subscribes, redialling a lost connection with backoff and subscribing
// again — and the session only translates what it sees into seed events.
// Its sessions share the bridge's limits and memory budget (WithLimiter,
// WithBudget).
//
// With WithSharedStore the sessions live in a shared store
// (server/session/redisstore) instead, so that several bridges behind a
// load balancer without stickiness serve them: any process reads a
// session's events and checks its binding, the one holding its consumer
// (its owner) performs its POSTs (forwarded to it), and another process
// takes a session over when its owner dies (see shared.go and
// server/SCALEOUT.md).
//
// An events id is bound to the client that opened it: its IP address and
// its credential headers (Cookie, Authorization and the pass headers). Only
// a GET opens a session; a POST to an id with no session gets 404.
package compat
