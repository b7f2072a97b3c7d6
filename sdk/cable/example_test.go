package cable_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

// The examples talk to fakeRails, an in-process ActionCable server defined
// below on the public API of net/http and github.com/coder/websocket: it
// welcomes each connection and confirms each subscription; where it does
// more, the example says what it plays. Against Rails, use its URL.

// fakeRails speaks just enough ActionCable (JSON) for the examples.
type fakeRails struct {
	srv      *httptest.Server
	URL      string       // ws://127.0.0.1:port/cable
	commands chan command // the commands clients sent, subscribes aside

	mu   sync.Mutex
	conn *websocket.Conn // the latest connection
}

type command struct{ Command, Identifier, Data string }

func startFakeRails() *fakeRails {
	r := &fakeRails{commands: make(chan command, 16)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = "ws" + strings.TrimPrefix(r.srv.URL, "http") + "/cable"
	return r
}

func (r *fakeRails) Close() { r.srv.Close() }

func (r *fakeRails) serve(w http.ResponseWriter, req *http.Request) {
	c, err := websocket.Accept(w, req, &websocket.AcceptOptions{Subprotocols: []string{"actioncable-v1-json"}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := req.Context()
	r.mu.Lock()
	r.conn = c
	r.mu.Unlock()
	r.send(ctx, c, map[string]any{"type": "welcome"})
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		var cmd command
		if json.Unmarshal(data, &cmd) != nil {
			continue
		}
		if cmd.Command == "subscribe" {
			r.send(ctx, c, map[string]any{"type": "confirm_subscription", "identifier": cmd.Identifier})
			continue
		}
		r.commands <- cmd
	}
}

func (r *fakeRails) send(ctx context.Context, c *websocket.Conn, frame map[string]any) {
	b, _ := json.Marshal(frame)
	c.Write(ctx, websocket.MessageText, b)
}

// broadcast sends message to the subscribers of identifier, as
// ChannelName.broadcast_to does.
func (r *fakeRails) broadcast(ctx context.Context, identifier string, message any) {
	r.mu.Lock()
	c := r.conn
	r.mu.Unlock()
	r.send(ctx, c, map[string]any{"identifier": identifier, "message": message})
}

func ExampleDial() {
	srv := startFakeRails()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// e.g. "wss://example.com/cable"; Dial returns once the server has
	// welcomed the connection.
	c, err := cable.Dial(ctx, srv.URL,
		cable.WithHeader("Authorization", "Bearer secret"),
	)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()
	fmt.Println("connected:", c.Connected())
	// Output: connected: true
}

func ExampleConsumer_Subscribe() {
	srv := startFakeRails()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := cable.Dial(ctx, srv.URL)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()

	room := protocol.MustIdentifier("ChatChannel", "room", "lobby")
	sub, err := c.Subscribe(ctx, room)
	if err != nil {
		fmt.Println("subscribe:", err)
		return
	}

	// The server plays Rails: ChatChannel.broadcast_to("lobby", …).
	srv.broadcast(ctx, room, map[string]any{"user": "alice", "text": "hello"})

	var msg struct {
		User string `json:"user"`
		Text string `json:"text"`
	}
	select {
	case p := <-sub.Messages():
		if err := p.Decode(&msg); err != nil {
			fmt.Println("decode:", err)
			return
		}
		fmt.Printf("%s: %s\n", msg.User, msg.Text)
	case <-ctx.Done():
		fmt.Println("no message")
	}
	// Output: alice: hello
}

func ExampleSubscription_Perform() {
	srv := startFakeRails()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := cable.Dial(ctx, srv.URL)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel", "room", "lobby"))
	if err != nil {
		fmt.Println("subscribe:", err)
		return
	}

	// Calls ChatChannel#speak(data) on the server, data["text"] == "hi".
	if err := sub.Perform(ctx, "speak", map[string]string{"text": "hi"}); err != nil {
		fmt.Println("perform:", err)
		return
	}

	// What the server received:
	cmd := <-srv.commands
	fmt.Println(cmd.Command, cmd.Data)
	// Output: message {"text":"hi","action":"speak"}
}

func ExampleWithHandler() {
	srv := startFakeRails()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := cable.Dial(ctx, srv.URL)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}

	room := protocol.MustIdentifier("NumbersChannel")
	lastReceived, ended := make(chan struct{}), make(chan struct{})
	// The callbacks run in order on one goroutine of the subscription.
	_, err = c.Subscribe(ctx, room, cable.WithHandler(cable.Handler{
		Connected: func(reconnected bool) {
			fmt.Println("connected, reconnected:", reconnected)
		},
		Received: func(p protocol.Payload) {
			var n int
			p.Decode(&n)
			fmt.Println("received", n)
			if n == 2 {
				close(lastReceived)
			}
		},
		Disconnected: func(willReconnect bool) {
			fmt.Println("disconnected, will reconnect:", willReconnect)
			close(ended)
		},
	}))
	if err != nil {
		fmt.Println("subscribe:", err)
		return
	}

	// The server plays Rails: NumbersChannel.broadcast(…) three times.
	for n := range 3 {
		srv.broadcast(ctx, room, n)
	}

	<-lastReceived
	c.Close() // ends the subscription: Disconnected(false)
	<-ended
	// Output:
	// connected, reconnected: false
	// received 0
	// received 1
	// received 2
	// disconnected, will reconnect: false
}
