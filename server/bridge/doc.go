// Package bridge serves ActionCable to clients that cannot hold a WebSocket
// to Rails: it keeps one upstream ActionCable WebSocket per client session
// and offers the same frames downstream over Server-Sent Events,
// long-polling or a WebSocket, with commands coming back by POST.
//
// A [Bridge] is an http.Handler; mount it under any prefix with
// http.StripPrefix. Its protocol is specified in server/PROTOCOL.md. In
// short:
//
//	POST   /sessions                  open a session (dials Rails; answers after its welcome)
//	GET    /sessions/sse              open a session, subscribe, and stream it, in one request
//	GET    /sessions/{sid}/sse        frames as SSE events, id "<epoch>:<seq>"
//	GET    /sessions/{sid}/poll       frames after a cursor, as JSON
//	POST   /sessions/{sid}/send       client commands, idempotent by sequence number
//	GET    /sessions/{sid}/ws         the session re-attached over a WebSocket at a cursor
//	DELETE /sessions/{sid}            close the session
//	GET    /  (WebSocket upgrade)      a plain ActionCable proxy, JSON or MessagePack
//	GET    /healthz                   200, or 503 while draining
//	       /events/{events-id}        the actioncable-to-eventsource API (server/COMPAT.md)
//
// Every frame from Rails but pings gets one sequence number from the
// session's single upstream reader and waits in the session's log (package
// server/session) until a client acknowledges it (by asking for frames
// after it, or POST /ack). A client that falls behind holds its session's
// upstream read back (backpressure, as TCP holds a direct socket): no frame
// is dropped before a client was sent it. Frames sent but unacknowledged
// are kept for resuming up to a window; a client asking for one trimmed
// from it learns it as a reset. Pings pass through
// unnumbered so the consumer's stale detection works unchanged. A session
// lives as long as its upstream socket, like an ActionCable connection:
// its last frame is Rails' disconnect, or the bridge's "upstream_lost"
// disconnect when the socket is lost without one; the client then starts a
// new session and resubscribes, as after any reconnect. The bridge never
// subscribes on its own (the compat API, package server/compat, does).
//
// An SSE stream over HTTP/1.x owns its connection (it is hijacked from
// net/http) and holds no goroutine while it waits: the session's log
// notifies it of frames and a timer of keep-alives, and each wake-up writes
// on a goroutine that ends once the stream is caught up. An idle session
// costs one goroutine (its upstream reader), its two sockets and a few KiB
// (BenchmarkIdleSSEMemory: about 28 KiB in all). Nothing
// reads a stream's connection, so a client that goes is noticed when a
// write fails: at the next Rails ping (every 3 s) or keep-alive. Over
// HTTP/2 the stream stays on its handler.
//
// The upstream side is an sdk/cable Consumer: the same codecs, WebSocket
// transport, backoff and stale detection as any Cableway client.
package bridge
