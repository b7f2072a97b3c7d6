package fallback_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/transport/fallback"
)

// A consumer that tries a WebSocket to Rails first and falls back to SSE,
// then long-polling, through a Cableway bridge; it reports each move.
func ExampleBridged() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	consumer, err := cable.Dial(ctx, "wss://app.example.com/cable",
		cable.WithTransport(fallback.Bridged("https://app.example.com/cable-bridge",
			fallback.WithHeadStart(800*time.Millisecond),
			fallback.WithOnChange(func(c fallback.Change) {
				fmt.Printf("transport %s → %s (%v)\n", c.From, c.To, c.Reason)
			}),
		)),
	)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer consumer.Close()
}
