package cable_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cableway/cableway/internal/cabletest"
	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

// The examples talk to an in-process ActionCable server (internal/
// cabletest) that welcomes each connection and confirms each subscription;
// where a server does more, the example says what it plays.

func ExampleDial() {
	srv := cabletest.New()
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
	srv := cabletest.New()
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
	conn, _ := srv.NextConn(ctx)
	conn.Broadcast(ctx, room, map[string]any{"user": "alice", "text": "hello"})

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
	srv := cabletest.New()
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
	cmd, _ := srv.NextCommand(ctx, cabletest.Is(protocol.CommandMessage, ""))
	fmt.Println(cmd.Command.Command, cmd.Data)
	// Output: message {"text":"hi","action":"speak"}
}

func ExampleWithHandler() {
	srv := cabletest.New()
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
	conn, _ := srv.NextConn(ctx)
	for n := range 3 {
		conn.Broadcast(ctx, room, n)
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
