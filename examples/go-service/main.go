// Command go-service is a Go service consuming a Rails ActionCable app: it
// joins a chat room, answers what others say there (naming the transport
// it is connected over), says something itself every -every, and prints
// what arrives, until Ctrl-C. With -bridge it falls back to SSE, then
// long-polling, through a Cableway bridge when WebSockets fail.
//
//	go run ./examples/go-service -url ws://127.0.0.1:3000/cable -token secret-gopher
//	go run ./examples/go-service -url ws://127.0.0.1:3000/cable -bridge http://127.0.0.1:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport/fallback"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:3000/cable", "ActionCable endpoint")
	bridge := flag.String("bridge", "", "a Cableway bridge's base URL (http://…): fall back to SSE and long-polling through it")
	token := flag.String("token", "secret-gopher", "access token, sent as Authorization: Bearer")
	room := flag.String("room", "lobby", "chat room to join")
	every := flag.Duration("every", 3*time.Second, "how often to speak in the room (0: only once)")
	reply := flag.Bool("reply", true, "answer what others say in the room")
	verbose := flag.Bool("v", false, "log the consumer's debug output")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := service{url: *url, bridge: *bridge, token: *token, room: *room, every: *every, reply: *reply, verbose: *verbose}
	if err := s.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "go-service:", err)
		os.Exit(1)
	}
}

type service struct {
	url, bridge, token, room string
	every                    time.Duration
	reply, verbose           bool
	transport                atomic.Value // string: the transport of the live connection
}

// replyPrefix starts every answer; answers are not answered, so that two
// services in one room do not talk to each other forever.
const replyPrefix = "heard "

func (s *service) run(ctx context.Context) error {
	s.transport.Store("")
	opts := []cable.Option{
		cable.WithHeader("Authorization", "Bearer "+s.token),
		cable.WithEventHandler(func(e cable.Event) {
			if e.Kind == cable.EventConnected || e.Kind == cable.EventTransportChanged {
				s.transport.Store(e.Transport)
			}
			fmt.Println("event:", e)
		}),
	}
	if s.bridge != "" {
		opts = append(opts, cable.WithTransport(fallback.Bridged(s.bridge)))
	}
	if s.verbose {
		opts = append(opts, cable.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	dialCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	consumer, err := cable.Dial(dialCtx, s.url, opts...)
	if err != nil {
		return err
	}
	defer consumer.Close()

	id := protocol.MustIdentifier("ChatChannel", "room", s.room)
	sub, err := consumer.Subscribe(dialCtx, id)
	if err != nil {
		return err
	}
	fmt.Printf("subscribed to %s over %s\n", id, s.transport.Load())

	var tick <-chan time.Time
	if s.every > 0 {
		t := time.NewTicker(s.every)
		defer t.Stop()
		tick = t.C
	}
	n := 1
	say := func(text string) {
		err := sub.Perform(ctx, "speak", map[string]any{"text": text})
		switch {
		case err == nil:
		case errors.Is(err, cable.ErrNotConnected):
			fmt.Println("not connected; said nothing")
		default:
			fmt.Println("perform:", err)
		}
	}
	hello := func() {
		say(fmt.Sprintf("hello #%d from Go (over %s)", n, s.transport.Load()))
		n++
	}
	me := strings.TrimPrefix(s.token, "secret-") // the example app's user for this token
	hello()
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
			if s.reply && line.User != me && !strings.HasPrefix(line.Text, replyPrefix) {
				say(fmt.Sprintf("%s%s say %q (Go, over %s)", replyPrefix, line.User, line.Text, s.transport.Load()))
			}
		case <-tick:
			hello()
		case <-ctx.Done():
			fmt.Println("bye")
			return nil
		}
	}
}
