package bridgeconn

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/websocket"
)

// WebSocket is the downstream that re-attaches the session over a
// WebSocket (GET /sessions/{sid}/ws?after=…). Sequenced frames are all the
// non-ping frames, in order, so the cursor is counted here.
type WebSocket struct {
	Transport *websocket.Transport // nil: websocket.New()
}

// Name returns "websocket".
func (WebSocket) Name() string { return transport.NameWebSocket }

// Run reads the re-attached socket until it fails.
func (w WebSocket) Run(ctx context.Context, s *Session, after uint64, emit func(uint64, []byte) error) error {
	t := w.Transport
	if t == nil {
		t = websocket.New()
	}
	u := s.URL("ws", url.Values{"after": {strconv.FormatUint(after, 10)}})
	u = "ws" + strings.TrimPrefix(u, "http")
	conn, err := t.Dial(ctx, &transport.Request{URL: u, Subprotocols: []string{protocol.SubprotocolJSON}})
	if err != nil {
		return err
	}
	defer conn.Close()
	var (
		buf []byte
		m   protocol.Message
	)
	seq := after
	for {
		buf, err = conn.ReadFrame(ctx, buf)
		if err != nil {
			var ce *transport.CloseError
			if errors.As(err, &ce) && strings.HasPrefix(ce.Reason, "reset") {
				return resetError(strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(ce.Reason, "reset"), ":")))
			}
			return err
		}
		if ping, _ := frameKind(&m, buf); ping {
			err = emit(0, buf)
		} else {
			seq++
			err = emit(seq, buf)
		}
		if err != nil {
			return err
		}
	}
}
