// Command go-service is a Go service consuming a Rails ActionCable app: it
// subscribes to a chat room, says something there every few seconds, and
// prints what arrives, until Ctrl-C.
//
//	go run ./examples/go-service -url ws://127.0.0.1:3000/cable -token secret-gopher
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:3000/cable", "ActionCable endpoint")
	token := flag.String("token", "secret-gopher", "access token, sent as Authorization: Bearer")
	room := flag.String("room", "lobby", "chat room to join")
	every := flag.Duration("every", 3*time.Second, "how often to speak in the room (0: only once)")
	verbose := flag.Bool("v", false, "log the consumer's debug output")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *token, *room, *every, *verbose); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "go-service:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, token, room string, every time.Duration, verbose bool) error {
	opts := []cable.Option{
		cable.WithHeader("Authorization", "Bearer "+token),
		cable.WithEventHandler(func(e cable.Event) { fmt.Println("event:", e) }),
	}
	if verbose {
		opts = append(opts, cable.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	dialCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	consumer, err := cable.Dial(dialCtx, url, opts...)
	if err != nil {
		return err
	}
	defer consumer.Close()

	id := protocol.MustIdentifier("ChatChannel", "room", room)
	sub, err := consumer.Subscribe(dialCtx, id)
	if err != nil {
		return err
	}
	fmt.Printf("subscribed to %s\n", id)

	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	n := 1
	say := func() {
		err := sub.Perform(ctx, "speak", map[string]any{"text": fmt.Sprintf("hello #%d from Go", n)})
		switch {
		case err == nil:
			n++
		case errors.Is(err, cable.ErrNotConnected):
			fmt.Println("not connected; will say it next time")
		default:
			fmt.Println("perform:", err)
		}
	}
	say()
	for {
		select {
		case msg, ok := <-sub.Messages():
			if !ok {
				return sub.Err()
			}
			var line struct {
				User string `json:"user"`
				Text string `json:"text"`
			}
			if err := msg.Decode(&line); err != nil || line.User == "" {
				fmt.Println("received:", msg)
				continue
			}
			fmt.Printf("received: %s: %s\n", line.User, line.Text)
		case <-tick:
			say()
		case <-ctx.Done():
			fmt.Println("bye")
			return nil
		}
	}
}
