//go:build unix

package compat_test

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: a
// closed Handler (or the Bridge that mounts it), with its test servers
// closed, must leave nothing running — no consumer, subscription, janitor
// or listener.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// Not a leak: the default upstream transport dials through
		// http.DefaultClient, whose pool keeps the connection of a refused
		// (non-101) handshake idle for reuse.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
