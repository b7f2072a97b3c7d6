package backoff

import (
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: time.Second, Factor: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		n := i + 1
		ceil := w * time.Millisecond
		if got := p.Ceiling(n); got != ceil {
			t.Fatalf("Ceiling(%d) = %v, want %v", n, got, ceil)
		}
		for range 200 {
			d := p.Delay(n)
			if d < ceil/2 || d > ceil {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", n, d, ceil/2, ceil)
			}
		}
	}
}

func TestZeroPolicyUsesDefaults(t *testing.T) {
	var p Policy
	if got := p.Ceiling(1); got != DefaultMin {
		t.Fatalf("Ceiling(1) = %v, want %v", got, DefaultMin)
	}
	if got := p.Ceiling(100); got != DefaultMax {
		t.Fatalf("Ceiling(100) = %v, want %v", got, DefaultMax)
	}
	if got := p.Ceiling(0); got != DefaultMin {
		t.Fatalf("Ceiling(0) = %v, want %v", got, DefaultMin)
	}
}

func TestJitterSpreads(t *testing.T) {
	p := Policy{Min: time.Second}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[p.Delay(1)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 delays gave only %d distinct values: no jitter", len(seen))
	}
}
