// Package ratelimit is the token bucket the Cableway server limits rates
// with: commands per session, sessions created per client.
package ratelimit

import "time"

// Bucket holds up to burst tokens and refills at rate tokens per second.
// It is a value its owner guards: not safe for concurrent use.
type Bucket struct {
	tokens float64
	at     time.Time
}

// Full returns a bucket holding burst tokens at now.
func Full(burst float64, now time.Time) Bucket { return Bucket{tokens: burst, at: now} }

// Take refills the bucket for the time since its last use and takes n
// tokens if it holds them. Otherwise it takes none and returns how long
// until it will hold n (at rate; zero rate waits forever: a negative wait).
func (b *Bucket) Take(n, rate, burst float64, now time.Time) (ok bool, wait time.Duration) {
	b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens < n {
		if rate <= 0 {
			return false, -1
		}
		return false, time.Duration((n - b.tokens) / rate * float64(time.Second))
	}
	b.tokens -= n
	return true, 0
}

// IsFull reports whether the bucket would hold burst tokens at now: a
// full bucket carries no state and may be dropped.
func (b *Bucket) IsFull(rate, burst float64, now time.Time) bool {
	return b.tokens+now.Sub(b.at).Seconds()*rate >= burst
}
