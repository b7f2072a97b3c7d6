package session

import (
	"context"
	"testing"
	"time"
)

// fired returns a notification callback and the channel it reports on.
func fired() (func(), chan struct{}) {
	ch := make(chan struct{}, 4)
	return func() { ch <- struct{}{} }, ch
}

func expectCall(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no notification", what)
	}
}

func expectNoCall(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: notified", what)
	default:
	}
}

// TestNotify: a notification fires once, on a goroutine of its own, for
// a frame, a ping or the end; at once when there is news already; never
// once stopped.
func TestNotify(t *testing.T) {
	ctx := context.Background()
	l := NewLog()
	f, ch := fired()
	l.Notify(0, 0, f)
	expectNoCall(t, ch, "empty log")
	l.Append(ctx, []byte("a"))
	expectCall(t, ch, "append")
	l.Append(ctx, []byte("b"))
	expectNoCall(t, ch, "a second append: one call per Notify")

	l.Notify(0, 0, f) // frames after 0 exist: at once
	expectCall(t, ch, "news already")

	stop := l.Notify(2, 0, f)
	l.SetPing([]byte("p"))
	expectCall(t, ch, "ping")
	if stop() {
		t.Error("stop after the call reported true")
	}

	stop = l.Notify(2, 1, f)
	if !stop() {
		t.Error("stop before the call reported false")
	}
	l.Append(ctx, []byte("c"))
	expectNoCall(t, ch, "stopped")

	l.Notify(3, 1, f)
	l.End(nil)
	expectCall(t, ch, "end")
	l.Notify(3, 1, f)
	expectCall(t, ch, "ended already")
}

// TestAttachFuncKicksThePrevious: a second downstream of a kind kicks the
// first; a detached one is never kicked; other kinds are left alone.
func TestAttachFuncKicksThePrevious(t *testing.T) {
	l := NewLog()
	k1, ch1 := fired()
	k2, ch2 := fired()
	k3, ch3 := fired()
	d1 := l.AttachFunc(0, k1)
	dOther := l.AttachFunc(1, k3)
	if l.Idle(time.Now().Add(time.Hour)) != 0 {
		t.Error("idle while attached")
	}
	d2 := l.AttachFunc(0, k2)
	expectCall(t, ch1, "replaced")
	d1()
	d2()
	l.AttachFunc(0, k1)()
	expectNoCall(t, ch2, "detached before the next attach")
	expectNoCall(t, ch3, "another kind")
	dOther()
	if l.Idle(time.Now().Add(time.Hour)) == 0 {
		t.Error("not idle once every downstream detached")
	}
}
