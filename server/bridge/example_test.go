package bridge_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

// Mount the bridge under a prefix of an existing Go server. Rails stays
// where it is; browsers behind proxies reach it through /cable-bridge/.
func ExampleNew() {
	b := bridge.New("ws://127.0.0.1:3000/cable",
		bridge.WithAllowedOrigins("https://app.example.com"),
		bridge.WithSessionTTL(30*time.Second),
	)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Close(ctx) // every client is told to reconnect
	}()

	mux := http.NewServeMux()
	mux.Handle("/cable-bridge/", http.StripPrefix("/cable-bridge", b))
	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
