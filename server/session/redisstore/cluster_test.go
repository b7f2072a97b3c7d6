package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/server/session"
	"github.com/cableway/cableway/server/session/redisstore"
)

// TestTakeoverContinuesTheLog: the owner's process stops renewing (it
// died); a process serving the session takes the lease once it expired,
// is told so, and appends after the frames already there; the old owner's
// late writes are refused (fencing).
func TestTakeoverContinuesTheLog(t *testing.T) {
	srv := redistest.Start(t)
	lease := redisstore.WithLease(600 * time.Millisecond)
	a := newStore(t, srv, "a", defaults, lease)
	b := newStore(t, srv, "b", defaults, lease)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := a.Create(ctx, "s", session.Meta{Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"1", "2"} {
		if _, err := w.Append(ctx, []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	r, _, err := b.Open(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	owned := make(chan bool, 4)
	r.OnOwnership(func(o bool) { owned <- o })
	detach := r.AttachFunc(0, func() {}) // b serves a downstream: it wants the lease
	defer detach()
	if o, _ := r.Owner(ctx); o != "a" {
		t.Fatalf("owner %q, want a", o)
	}
	a.Close() // a dies: no more renewals

	select {
	case o := <-owned:
		if !o {
			t.Fatal("told of a loss, want a gain")
		}
	case <-ctx.Done():
		t.Fatal("no takeover within 30 s")
	}
	if o, _ := r.Owner(ctx); o != "b" || !r.Owned() {
		t.Fatalf("owner %q (owned %v), want b", o, r.Owned())
	}
	if seq, err := r.Append(ctx, []byte("3")); err != nil || seq != 3 {
		t.Fatalf("Append after takeover = %d, %v; want seq 3", seq, err)
	}
	bt, err := r.Read(0, 0, 0, 10, 1<<20)
	if err != nil || len(bt.Frames) != 3 || string(bt.Frames[0].Data) != "1" || string(bt.Frames[2].Data) != "3" {
		t.Fatalf("Read = %+v, %v", bt, err)
	}

	// A process that is not the owner cannot write.
	c := newStore(t, srv, "c", defaults, lease)
	x, _, err := c.Open(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Append(ctx, []byte("late")); !errors.Is(err, session.ErrNotOwner) {
		t.Fatalf("Append by a non-owner = %v, want ErrNotOwner", err)
	}
}

// TestForward: a request reaches the named process and its answer comes
// back; a process nobody runs is ErrNoOwner at once.
// TestMeta: what Create records is what another process reads, and
// SetAcked and SetState replace their parts only.
func TestMeta(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newStore(t, srv, "a", defaults), newStore(t, srv, "b", defaults)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := session.Meta{Token: "tok", Epoch: 3, IP: "10.0.0.1", Upstream: "ws://rails/cable",
		Header: map[string][]string{"Cookie": {"a=b"}}, Acked: 4, State: []byte(`{"x":1}`)}
	w, err := a.Create(ctx, "m1", want)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := a.SetAcked(ctx, "m1", 9); err != nil {
		t.Fatal(err)
	}
	if err := a.SetState(ctx, "m1", []byte(`{"x":2}`)); err != nil {
		t.Fatal(err)
	}
	got, err := b.Meta(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	want.Acked, want.State = 9, []byte(`{"x":2}`)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Meta = %+v, want %+v", got, want)
	}
	if _, err := b.Meta(ctx, "none"); !errors.Is(err, session.ErrUnknownSession) {
		t.Fatalf("Meta of no session = %v", err)
	}
}

func TestForward(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newStore(t, srv, "a", defaults), newStore(t, srv, "b", defaults)
	b.Serve(func(_ context.Context, req []byte) []byte { return append([]byte("b:"), req...) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ans, err := a.Forward(ctx, "b", []byte("hello"))
	if err != nil || string(ans) != "b:hello" {
		t.Fatalf("Forward = %q, %v", ans, err)
	}
	if _, err := a.Forward(ctx, "nobody", []byte("x")); !errors.Is(err, session.ErrNoOwner) {
		t.Fatalf("Forward to nobody = %v", err)
	}
}

// TestRedisGone: with Redis gone, reads and appends fail with an error
// (the bridge's client retries at its cursor), Wait returns, and nothing
// hangs or panics; Open of an unknown session says so.
func TestRedisGone(t *testing.T) {
	srv := redistest.Start(t)
	a := newStore(t, srv, "a", defaults)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := a.Open(ctx, "nope"); !errors.Is(err, session.ErrUnknownSession) {
		t.Fatalf("Open of an unknown session = %v", err)
	}
	w, err := a.Create(ctx, "s", session.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	w.Append(ctx, []byte("1"))
	srv.Kill()
	if _, err := w.Append(ctx, []byte("2")); err == nil {
		t.Fatal("Append with Redis gone: no error")
	}
	if _, err := w.Read(0, 0, 0, 10, 1<<20); err == nil || errors.Is(err, session.ErrEnded) {
		t.Fatalf("Read with Redis gone = %v, want the Redis error", err)
	}
	if err := w.Wait(ctx, 0, 0, nil); err != nil {
		t.Fatalf("Wait with Redis gone = %v", err)
	}
	if _, err := redisstore.New(ctx, srv.URL(0)); err == nil {
		t.Fatal("New on a dead Redis: no error")
	}
	if _, err := redisstore.New(ctx, "http://x"); err == nil {
		t.Fatal("New with a bad URL: no error")
	}
}

var _ = redistest.Start
