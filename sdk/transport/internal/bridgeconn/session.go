// Package bridgeconn is the client side of the Cableway bridge protocol
// (server/PROTOCOL.md), shared by the SSE and long-poll transports: it
// creates a bridge session, sends commands with idempotent sequence
// numbers, and turns a downstream (an SSE stream, long-polls, or a
// WebSocket re-attached at a cursor) into a transport.Conn.
package bridgeconn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/backoff"
	"github.com/cableway/cableway/sdk/transport"
)

// Doer performs one HTTP request and reads the whole response body (up to
// a bound). Natively it is net/http; under GOOS=js, fetch.
type Doer interface {
	Do(ctx context.Context, method, url string, header map[string][]string, body []byte) (status int, respBody []byte, err error)
}

// ErrReset is transport.ErrSessionReset: the bridge no longer has the
// frames after the client's cursor (evicted, or the session is gone), so
// the connection is over and the consumer must start again (new session,
// resubscribe).
var ErrReset = transport.ErrSessionReset

// resetError is ErrReset with the bridge's reason in words.
func resetError(reason string) error {
	switch reason {
	case bridgewire.ReasonEvicted:
		return fmt.Errorf("%w: frames this client was sent but had not acknowledged were trimmed from the bridge's resume window", ErrReset)
	case bridgewire.ReasonEnded:
		return fmt.Errorf("%w: the session ended on the bridge", ErrReset)
	case bridgewire.ReasonBadCursor:
		return fmt.Errorf("%w: the client's cursor is not of this session", ErrReset)
	case "":
		return ErrReset
	}
	return fmt.Errorf("%w: %.100s", ErrReset, reason)
}

// Session is a bridge session seen from the client.
type Session struct {
	Base  string // the bridge's base URL, without a trailing slash
	SID   string
	Token string
	Epoch uint32

	doer Doer

	sendMu sync.Mutex
	cseq   uint64

	// pollBytes is the largest poll answer asked for; halved each time an
	// answer arrives cut (a proxy that limits response sizes).
	pollBytes atomic.Int64
}

// statusError turns a refusal into a transport.HandshakeError, with the
// bridge's reason in it. An answer that is not the bridge's JSON error
// says so: the URL probably does not point at a Cableway bridge.
func statusError(status int, body []byte) error {
	var e bridgewire.Error
	msg := ""
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		// Bounded: the body is whatever answered, and ends up in logs.
		msg = clip(e.Error, 100)
		if e.Detail != "" {
			msg += ": " + clip(e.Detail, 300)
		}
	} else {
		text := strings.ToValidUTF8(strings.TrimSpace(string(body)), "?")
		text = clip(text, 120)
		msg = "the answer is not from a Cableway bridge (is the bridge URL right?)"
		if text != "" {
			msg += fmt.Sprintf("; it said %q", text)
		}
	}
	return &transport.HandshakeError{StatusCode: status, Err: errors.New("bridge: " + msg)}
}

// clip is s cut to at most n bytes on a rune boundary, "…" marking a cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// bridgeError returns the error code of a bridge's JSON error body.
func bridgeError(body []byte) string {
	var e bridgewire.Error
	json.Unmarshal(body, &e)
	return e.Error
}

// Create opens a session on the bridge at base. header carries the
// credentials Rails expects (Cookie, Authorization); under GOOS=js the
// browser sends cookies itself.
func Create(ctx context.Context, doer Doer, base string, header map[string][]string) (*Session, error) {
	return create(ctx, doer, base, "", header)
}

// CreateFor opens a session on the bridge at base for the connection
// req asks for: with req's headers, and with the query of req.URL (the
// ActionCable URL), which POST /sessions passes on to Rails. Browsers
// cannot set Authorization on a WebSocket, so their tokens travel there
// (wss://host/cable?token=…).
func CreateFor(ctx context.Context, doer Doer, base string, req *transport.Request) (*Session, error) {
	var query string
	if u, err := url.Parse(req.URL); err == nil {
		query = u.RawQuery
	}
	return create(ctx, doer, base, query, req.Header)
}

func create(ctx context.Context, doer Doer, base, query string, header map[string][]string) (*Session, error) {
	base = strings.TrimRight(base, "/")
	u := base + "/sessions"
	if query != "" {
		u += "?" + query
	}
	status, body, err := doer.Do(ctx, "POST", u, header, nil)
	if err != nil {
		return nil, fmt.Errorf("bridge: create session: %w", err)
	}
	if status != 201 {
		return nil, statusError(status, body)
	}
	var c bridgewire.Created
	if err := json.Unmarshal(body, &c); err != nil || c.SID == "" || c.Token == "" {
		return nil, fmt.Errorf("bridge: create session: unexpected answer %.100q", body)
	}
	ses := &Session{Base: base, SID: c.SID, Token: c.Token, Epoch: c.Epoch, doer: doer}
	ses.pollBytes.Store(maxPollBytes)
	return ses, nil
}

// URL returns the URL of one of the session's endpoints ("sse", "poll",
// "send", "ws") with the token and extra query parameters.
func (s *Session) URL(endpoint string, query url.Values) string {
	if query == nil {
		query = url.Values{}
	}
	query.Set("token", s.Token)
	u := s.Base + "/sessions/" + url.PathEscape(s.SID)
	if endpoint != "" {
		u += "/" + endpoint
	}
	return u + "?" + query.Encode()
}

// sendRetry is how long Send waits before attempt n+1 while the network
// or a proxy fails.
func sendRetry(attempt int) time.Duration {
	return backoff.Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second}.Delay(attempt)
}

// Send delivers one command frame (JSON) to Rails through the bridge.
// When an answer is lost or a proxy fails, it retries with the same
// sequence number, so a command is applied at most once however often it
// is sent. When the bridge refuses it (the session or its upstream is
// gone, the body is bad), Send fails at once with an error wrapping
// transport.ErrNotSent: the command was not applied. It also fails when
// ctx is done. Calls are serialised.
func (s *Session) Send(ctx context.Context, frame []byte) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	cseq := s.cseq + 1
	body := fmt.Appendf(nil, `[{"cseq":%d,"frame":%s}]`, cseq, frame)
	header := map[string][]string{"Content-Type": {"application/json"}}
	for attempt := 1; ; attempt++ {
		status, resp, err := s.doer.Do(ctx, "POST", s.URL("send", nil), header, body)
		switch {
		case err == nil && status == 200:
			s.cseq = cseq
			return nil
		case err == nil && status == 409:
			var e bridgewire.Error
			json.Unmarshal(resp, &e)
			if e.Acked >= cseq {
				s.cseq = cseq
				return nil
			}
			return fmt.Errorf("bridge: send: %w: %w", transport.ErrNotSent, statusError(status, resp))
		case err == nil && (status == 429 || status >= 500 && bridgeError(resp) == ""):
			// Rate limited, or a proxy's failure: the same cseq again.
			err = statusError(status, resp)
		case err == nil:
			return fmt.Errorf("bridge: send: %w: %w", transport.ErrNotSent, statusError(status, resp))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("bridge: send: %w (last error: %v)", ctx.Err(), err)
		}
		t := time.NewTimer(sendRetry(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("bridge: send: %w (last error: %v)", ctx.Err(), err)
		}
	}
}

// ack tells the bridge that the client has every frame up to after.
func (s *Session) ack(ctx context.Context, after uint64) error {
	status, body, err := s.doer.Do(ctx, "POST", s.URL("ack", url.Values{"after": {strconv.FormatUint(after, 10)}}), nil, nil)
	if err == nil && status != 204 {
		err = statusError(status, body)
	}
	return err
}

// Delete ends the session on the bridge (best effort).
func (s *Session) Delete(ctx context.Context) {
	s.doer.Do(ctx, "DELETE", s.URL("", nil), nil, nil)
}

// parseEventID reads an SSE id "<epoch>:<seq>" of this session's epoch.
func parseEventID(id string, epoch uint32) (uint64, bool) {
	e, seq, ok := bridgewire.ParseEventID(id)
	return seq, ok && e == epoch
}
