//go:build !js

package bridgeconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
)

// SSE is the Server-Sent Events downstream: GET /sessions/{sid}/sse.
// Natively it uses r3labs/sse/v2's client with its own reconnection turned
// off (Conn's loop resumes from the cursor), its buffer sized to the frame
// limit, and the request bound to ctx.
type SSE struct {
	Client   *http.Client // nil: http.DefaultClient
	MaxFrame int          // largest event accepted (default 1 MiB)
}

// Name returns "sse".
func (SSE) Name() string { return transport.NameSSE }

// errStreamEnded is a clean end of the stream: resume from the cursor.
var errStreamEnded = errors.New("bridge: event stream ended")

// Run reads one SSE response until it ends.
func (d SSE) Run(ctx context.Context, s *Session, after uint64, emit func(uint64, []byte) error) error {
	return d.events(ctx, s.URL("sse", url.Values{"after": {strconv.FormatUint(after, 10)}}), nil, frameHandler(s, emit))
}

// events reads one SSE response of GET u (with header) until it ends,
// handing each event to on; an error of on ends it and is returned. A
// refusal is a *transport.HandshakeError with the bridge's reason.
func (d SSE) events(ctx context.Context, u string, header map[string]string, on func(*sse.Event) error) error {
	maxFrame := d.MaxFrame
	if maxFrame <= 0 {
		maxFrame = 1 << 20
	}
	c := sse.NewClient(u, sse.ClientMaxBufferSize(maxFrame+1024))
	if d.Client != nil {
		c.Connection = d.Client
	}
	for k, v := range header {
		c.Headers[k] = v
	}
	c.ReconnectStrategy = &backoff.StopBackOff{}
	c.ResponseValidator = func(_ *sse.Client, resp *http.Response) error {
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			return &backoff.PermanentError{Err: statusError(resp.StatusCode, body)}
		}
		return nil
	}
	var onErr error
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := c.SubscribeRawWithContext(sctx, func(ev *sse.Event) {
		if onErr != nil {
			return
		}
		if onErr = on(ev); onErr != nil {
			cancel()
		}
	})
	if onErr != nil {
		return onErr
	}
	var pe *backoff.PermanentError
	if errors.As(err, &pe) {
		return pe.Err
	}
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errStreamEnded
}

// frameHandler is the event handler of a stream of s's frames: it hands
// them to emit with their sequence numbers.
func frameHandler(s *Session, emit func(uint64, []byte) error) func(*sse.Event) error {
	var m protocol.Message
	return func(ev *sse.Event) error {
		switch string(ev.Event) {
		case "", "message":
		case bridgewire.ResetEvent:
			return resetError(bridgewire.ParseReset(ev.Data))
		default:
			return nil // unknown event types are for newer clients
		}
		if len(ev.Data) == 0 {
			return nil
		}
		// r3labs/sse hands over whatever it holds when the connection
		// drops, so the last "event" can be cut mid-frame. A complete
		// frame is complete JSON; anything else ends this stream, and the
		// resume from the cursor fetches the frame whole.
		ping, whole := frameKind(&m, ev.Data)
		if !whole {
			return errStreamEnded
		}
		var seq uint64
		if len(ev.ID) > 0 && !ping {
			var ok bool
			if seq, ok = parseEventID(string(ev.ID), s.Epoch); !ok {
				return fmt.Errorf("%w: event id %q is not of this session", ErrReset, ev.ID)
			}
		}
		return emit(seq, ev.Data)
	}
}
