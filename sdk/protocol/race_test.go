//go:build race

package protocol

// raceEnabled is true when the tests run under the race detector, whose
// instrumentation makes allocation counts meaningless.
const raceEnabled = true
