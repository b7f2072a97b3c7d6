// Package backoff computes reconnect delays: exponential growth from a
// minimum to a cap, with jitter so that clients dropped together do not
// return together.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Default values of Policy; see Policy for what each means.
const (
	DefaultMin    = 500 * time.Millisecond
	DefaultMax    = 30 * time.Second
	DefaultFactor = 2.0
)

// Policy is a capped exponential backoff with "equal jitter": attempt n waits
// a random duration in [d/2, d], where d = min(Max, Min·Factorⁿ⁻¹).
// The zero Policy uses the defaults (500 ms, 30 s, ×2), so the first
// reconnect comes after 250–500 ms and delays stop growing at 15–30 s.
//
// A Policy is a value; Delay is safe for concurrent use.
type Policy struct {
	Min    time.Duration
	Max    time.Duration
	Factor float64
}

// Delay returns the wait before attempt n (n ≥ 1; smaller n counts as 1).
func (p Policy) Delay(n int) time.Duration {
	d := p.Ceiling(n)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// Ceiling returns the largest delay Delay can return for attempt n.
func (p Policy) Ceiling(n int) time.Duration {
	lo, hi, f := p.Min, p.Max, p.Factor
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	if hi < lo {
		hi = lo
	}
	if f < 1 {
		f = DefaultFactor
	}
	d := float64(lo)
	for i := 1; i < n && d < float64(hi); i++ {
		d *= f
	}
	if d > float64(hi) {
		return hi
	}
	return time.Duration(d)
}
