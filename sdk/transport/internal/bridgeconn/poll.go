package bridgeconn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"time"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
)

// Poll is the long-poll downstream: GET /sessions/{sid}/poll in a loop,
// each request acknowledging what the previous one returned.
type Poll struct {
	// Timeout is how long the bridge may hold a poll open (default 25 s).
	Timeout time.Duration
}

// Name returns "longpoll".
func (Poll) Name() string { return transport.NameLongPoll }

// Poll answers are bounded in bytes: at first maxPollBytes, halved down
// to minPollBytes each time an answer arrives cut, so that a proxy that
// cuts responses past some size still lets every poll make progress (the
// bridge always includes at least one frame).
const (
	maxPollBytes = 64 << 10
	minPollBytes = 1 << 10
)

// errCutShort wraps a failure while reading a response body: the
// status arrived, the body did not (a connection cut in transit).
var errCutShort = errors.New("response cut short")

// Run polls until ctx is done or a poll fails.
func (p Poll) Run(ctx context.Context, s *Session, after uint64, emit func(uint64, []byte) error) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 25 * time.Second
	}
	var m protocol.Message
	q := url.Values{"timeout": {strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)}}
	for {
		limit := s.pollBytes.Load()
		q.Set("after", strconv.FormatUint(after, 10))
		q.Set("max_bytes", strconv.FormatInt(limit, 10))
		pctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
		status, body, err := s.doer.Do(pctx, "GET", s.URL("poll", q), nil, nil)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, errCutShort) && limit > minPollBytes {
				// Cut in transit: ask for less next time.
				s.pollBytes.CompareAndSwap(limit, max(limit/2, minPollBytes))
			}
			return fmt.Errorf("bridge: poll: %w", err)
		}
		if status != 200 {
			return statusError(status, body)
		}
		var pb bridgewire.Polled
		if err := json.Unmarshal(body, &pb); err != nil {
			if limit > minPollBytes {
				s.pollBytes.CompareAndSwap(limit, max(limit/2, minPollBytes))
			}
			return fmt.Errorf("bridge: poll: bad answer: %w", err)
		}
		if pb.Reset {
			return resetError(pb.Reason)
		}
		// Sequenced frames come first, numbered after+1…Next (after as the
		// bridge says, when the client acknowledged more elsewhere); pings
		// last.
		seq := max(after, pb.After)
		for _, f := range pb.Frames {
			if ping, _ := frameKind(&m, f); ping {
				if err := emit(0, f); err != nil {
					return err
				}
				continue
			}
			if seq == math.MaxUint64 {
				// A bridge's numbers cannot wrap to 0, which means "no
				// number" (a ping).
				return fmt.Errorf("%w: poll numbered a frame past %d", ErrReset, seq)
			}
			seq++
			if err := emit(seq, f); err != nil {
				return err
			}
		}
		if seq != pb.Next {
			return fmt.Errorf("%w: poll returned frames up to %d but next %d", ErrReset, seq, pb.Next)
		}
		after = pb.Next
		if pb.Ended {
			return resetError(bridgewire.ReasonEnded)
		}
	}
}

// frameKind decodes a frame's envelope with the protocol package, reusing
// m: ping reports an ActionCable ping; whole is false for a frame that is
// not complete JSON (cut in transit). A frame of an unknown type is whole
// and passes on, for the consumer to judge.
func frameKind(m *protocol.Message, f []byte) (ping, whole bool) {
	err := protocol.JSONCodec{}.DecodeMessage(f, m)
	return err == nil && m.Type == protocol.TypePing, !errors.Is(err, protocol.ErrMalformed)
}
