//go:build unix

package bridge_test

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test or benchmark leaves a goroutine
// behind: a closed Bridge, with its test servers closed, must leave
// nothing running. It also serves as the benchmarks' peer process (see
// bench_test.go) when started with CABLEWAY_BENCH_PEER set.
func TestMain(m *testing.M) {
	if os.Getenv(peerEnv) != "" {
		os.Exit(runPeer())
	}
	code := m.Run()
	if code == 0 {
		// Not a leak: the bridge's default upstream transport dials through
		// http.DefaultClient, whose pool keeps the connection of a refused
		// (non-101) handshake idle for reuse. Nothing else is excused.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
