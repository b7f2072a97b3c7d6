package fallback_test

import (
	"context"
	"testing"
	"time"

	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/fallback"
)

// hanging is a transport whose Dial waits for its context, and says when
// that ends.
type hanging struct{ cancelled chan struct{} }

func (hanging) Name() string { return "hanging" }

func (h hanging) Dial(ctx context.Context, _ *transport.Request) (transport.Conn, error) {
	<-ctx.Done()
	close(h.cancelled)
	return nil, ctx.Err()
}

// welcoming is a transport whose connections open with a welcome.
type welcoming struct{}

func (welcoming) Name() string { return "welcoming" }

func (welcoming) Dial(context.Context, *transport.Request) (transport.Conn, error) {
	return &welcomeConn{closed: make(chan struct{})}, nil
}

type welcomeConn struct {
	sent   bool
	closed chan struct{}
}

func (*welcomeConn) Subprotocol() string { return "actioncable-v1-json" }

func (c *welcomeConn) ReadFrame(ctx context.Context, buf []byte) ([]byte, error) {
	if !c.sent {
		c.sent = true
		return append(buf[:0], `{"type":"welcome"}`...), nil
	}
	select {
	case <-c.closed:
		return buf[:0], transport.ErrClosed
	case <-ctx.Done():
		return buf[:0], ctx.Err()
	}
}

func (*welcomeConn) WriteFrame(context.Context, []byte) error { return nil }

func (c *welcomeConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

// An attempt still hanging when another wins is stopped at once, not when
// the Dial's context ends (for a consumer, that is the connection's life).
func TestOutracedAttemptIsStopped(t *testing.T) {
	h := hanging{cancelled: make(chan struct{})}
	var changes []fallback.Change
	tr := fallback.New([]transport.Transport{h, welcoming{}},
		fallback.WithHeadStart(10*time.Millisecond),
		fallback.WithOnChange(func(c fallback.Change) { changes = append(changes, c) }))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // the Dial's context stays live during the test
	c, err := tr.Dial(ctx, &transport.Request{URL: "ws://example.test/cable"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d, ok := c.(transport.Describer); !ok || d.TransportName() != "welcoming" {
		t.Fatalf("connected via %v", c)
	}
	select {
	case <-h.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the outraced attempt is still running")
	}
	if len(changes) != 1 || changes[0].From != "hanging" || changes[0].To != "welcoming" {
		t.Fatalf("changes %+v", changes)
	}
}
