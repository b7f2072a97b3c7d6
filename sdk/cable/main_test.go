package cable_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: a
// closed Consumer must leave nothing running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
