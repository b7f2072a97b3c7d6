package ratelimit

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := Full(3, t0)
	for i := range 3 {
		if ok, _ := b.Take(1, 2, 3, t0); !ok {
			t.Fatalf("take %d of a full bucket of 3 refused", i+1)
		}
	}
	ok, wait := b.Take(1, 2, 3, t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("empty bucket: ok %v, wait %v; want refused, 500ms (rate 2/s)", ok, wait)
	}
	if ok, _ := b.Take(1, 2, 3, t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("refused after the refill time")
	}
	if ok, _ := b.Take(2, 2, 3, t0.Add(time.Second)); ok {
		t.Fatal("took 2 tokens when 1 had refilled")
	}
	if b.IsFull(2, 3, t0.Add(1900*time.Millisecond)) { // 1 token at 1 s, +1.8
		t.Fatal("full too early")
	}
	if !b.IsFull(2, 3, t0.Add(time.Hour)) {
		t.Fatal("not full after an hour")
	}
	if ok, _ := b.Take(10, 2, 3, t0.Add(time.Hour)); ok {
		t.Fatal("took more than the burst")
	}
	var z Bucket
	if ok, wait := z.Take(1, 0, 1, t0); ok || wait >= 0 {
		t.Fatalf("zero rate: ok %v wait %v, want refused forever", ok, wait)
	}
}
