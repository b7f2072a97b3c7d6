// Command wsonly is a Go service that speaks to Rails over WebSocket only:
// TestWebSocketOnlyLinks checks what it links.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cable.Dial(ctx, "ws://127.0.0.1:3000/cable", cable.WithHeader("Authorization", "Bearer secret-alice"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, protocol.MustIdentifier("ChatChannel", "room", "lobby"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for m := range sub.Messages() {
		fmt.Println(m)
	}
}
