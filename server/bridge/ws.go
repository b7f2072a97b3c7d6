package bridge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/protocol"
)

// writeTimeout cuts off a downstream that cannot take a batch in time, so
// a slow client never holds frames back from others (it resumes at its
// cursor).
const writeTimeout = 10 * time.Second

// proxy serves a plain ActionCable WebSocket on the bridge's root: a
// session of its own, ended when the socket closes. The client may speak
// actioncable-v1-msgpack; Rails hears JSON. The request's query goes on
// to Rails as for POST /sessions.
func (b *Bridge) proxy(w http.ResponseWriter, r *http.Request) {
	// A handshake the upgrade would refuse is refused before Rails is
	// dialled: Rails must not authenticate a connection that cannot be.
	if status, detail := checkUpgrade(r); status != 0 {
		if status == http.StatusUpgradeRequired || status == http.StatusBadRequest {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		if status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodGet)
		}
		b.writeError(w, status, "bad_handshake", detail)
		return
	}
	s, ok := b.openSessionQuery(w, r, r.URL.RawQuery)
	if !ok {
		return
	}
	defer b.removeSession(s)
	b.serveWebSocket(w, r, s, 0, false)
}

// reattach serves an existing session over a WebSocket from a cursor, so
// a client can move from SSE or long-poll to a WebSocket with no gap and
// no duplicate. Sequenced frames follow in order from after+1; pings are
// interleaved, so the client computes its cursor by counting non-ping
// frames.
func (b *Bridge) reattach(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r)
	if s == nil {
		return
	}
	after, ok := cursor(r, s)
	if !ok {
		b.writeError(w, http.StatusConflict, "reset", "the cursor is from another session epoch")
		return
	}
	if !s.log.Has(after) {
		b.writeError(w, http.StatusConflict, "reset", "frames after the cursor were trimmed unacknowledged; create a new session")
		return
	}
	b.serveWebSocket(w, r, s, after, true)
}

// serveWebSocket relays the session's frames after the cursor. With
// retain, frames written are not acknowledged (only the cursor is), so
// that the client can resume elsewhere from the last frame it received
// when the socket breaks; the proxy's session ends with its socket.
func (b *Bridge) serveWebSocket(w http.ResponseWriter, r *http.Request, s *session, after uint64, retain bool) {
	c, err := ws.Accept(w, r, &ws.AcceptOptions{
		Subprotocols: []string{protocol.SubprotocolMessagePack, protocol.SubprotocolJSON},
		// The origin policy ran before the handler (withOrigin).
		InsecureSkipVerify: true,
		CompressionMode:    ws.CompressionNoContextTakeover,
	})
	if err != nil {
		return // Accept has answered the request
	}
	defer c.CloseNow()
	c.SetReadLimit(b.cfg.maxFrameBytes)
	codec, _ := protocol.CodecFor(c.Subprotocol())
	typ := ws.MessageText
	if codec.Binary() {
		typ = ws.MessageBinary
	}

	ctx, detach := s.attach(r.Context(), downWS)
	defer detach()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		cancel(b.readCommands(ctx, c, s, codec))
	}()

	var (
		pingSeen uint64
		m        protocol.Message
		out      []byte
	)
	ack := after
	for {
		if !retain {
			ack = after
		}
		bt, err := s.readFrom(ack, after, pingSeen, maxBatch, maxBatchBytes)
		if storeFailed(err) {
			c.Close(ws.StatusTryAgainLater, "session store unavailable: re-attach at your cursor")
			return
		}
		if errors.Is(err, errReset) {
			c.Close(ws.StatusPolicyViolation, bridgewire.WebSocketResetPrefix+": "+resetReason(err))
			return
		}
		if bt.From != after {
			// The client acknowledged frames past this socket's position
			// elsewhere; it counts frames here, so it must re-attach.
			c.Close(ws.StatusTryAgainLater, "behind: re-attach at your cursor")
			return
		}
		frames := bt.Frames
		for i := 0; i <= len(frames); i++ {
			var data []byte
			switch {
			case i < len(frames):
				data = frames[i].Data
			case bt.Ping != nil:
				data = bt.Ping
			default:
				continue
			}
			if _, isJSON := codec.(protocol.JSONCodec); !isJSON {
				if derr := (protocol.JSONCodec{}).DecodeMessage(data, &m); derr != nil {
					b.cfg.logger.Warn("bridge: frame not re-encodable; skipped", "session", s.id, "err", derr)
					continue
				}
				var eerr error
				if out, eerr = codec.AppendMessage(out[:0], &m); eerr != nil {
					b.cfg.logger.Warn("bridge: frame not re-encodable; skipped", "session", s.id, "err", eerr)
					continue
				}
				data = out
			}
			// Not ctx: a write cancelled by it would drop the socket
			// without the close frame that says why (readCommands'
			// cause, below).
			wctx, wcancel := context.WithTimeout(r.Context(), writeTimeout)
			werr := c.Write(wctx, typ, data)
			wcancel()
			if werr != nil {
				return
			}
			b.stats.framesOut.Add(1)
			if i < len(frames) {
				after = frames[i].Seq
			}
		}
		pingSeen = bt.PingN
		if err != nil { // the session ended and all is delivered
			c.Close(ws.StatusNormalClosure, "session ended")
			return
		}
		if bt.More {
			continue
		}
		if s.wait(ctx, after, pingSeen, nil) != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				code := ws.StatusPolicyViolation
				var ce *closeError
				if errors.As(cause, &ce) {
					code = ce.code
				}
				c.Close(code, closeReason(cause.Error()))
			}
			return
		}
	}
}

// readCommands relays the client's commands upstream until the socket
// fails. A malformed command or a flood closes the socket with a reason.
func (b *Bridge) readCommands(ctx context.Context, c *ws.Conn, s *session, codec protocol.Codec) error {
	var cmd protocol.Command
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return context.Canceled
		}
		if err := codec.DecodeCommand(data, &cmd); err != nil {
			b.countRefusal("bad_command")
			return fmt.Errorf("malformed command: %w", err)
		}
		if err := protocol.ValidateCommand(&cmd); err != nil {
			// Never forwarded: Rails would close the whole upstream
			// connection on it. Close as RFC 6455 says for bad text.
			b.countRefusal("invalid_utf8")
			return &closeError{ws.StatusInvalidFramePayloadData, fmt.Errorf("command refused: %w", err)}
		}
		if !s.allowCommands(1) {
			b.countRefusal("rate_limited")
			return errors.New("rate limited")
		}
		if err := b.sendCommand(ctx, s, &cmd); err != nil {
			// The upstream is gone: like a WebSocket to Rails itself, the
			// command is lost, and the client learns of the loss from the
			// session's last frame (Rails' disconnect or upstream_lost).
			b.cfg.logger.Info("bridge: command dropped while upstream is down", "session", s.id, "err", err)
			b.countRefusal("upstream_unavailable")
			continue
		}
		b.stats.commands.Add(1)
		s.touch()
	}
}

// closeError is a reason to close a client's socket with a status other
// than 1008 (policy violation).
type closeError struct {
	code ws.StatusCode
	err  error
}

func (e *closeError) Error() string { return e.err.Error() }
func (e *closeError) Unwrap() error { return e.err }

// closeReason fits reason into a close frame (at most 123 bytes), cut at
// a rune boundary.
func closeReason(reason string) string {
	const max = 123
	if len(reason) <= max {
		return reason
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// checkUpgrade checks a WebSocket opening handshake (RFC 6455 §4.2.1) as
// the upgrade will, and says why it would fail: status 0 when it would
// not.
func checkUpgrade(r *http.Request) (status int, detail string) {
	switch {
	case !r.ProtoAtLeast(1, 1):
		return http.StatusUpgradeRequired, "a WebSocket handshake needs HTTP/1.1"
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return http.StatusUpgradeRequired, `a WebSocket handshake needs "Connection: Upgrade"`
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return http.StatusUpgradeRequired, `a WebSocket handshake needs "Upgrade: websocket"`
	case r.Method != http.MethodGet:
		return http.StatusMethodNotAllowed, "a WebSocket handshake is a GET"
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return http.StatusBadRequest, "unsupported Sec-WebSocket-Version; this server speaks 13"
	}
	key := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64"
	}
	return 0, ""
}

// headerHasToken reports whether the comma-separated values of header
// name hold token, ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
