package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/redistest"
	"github.com/cableway/cableway/server/session"
)

// TestEventMissedDuringReconnect: a reader learns of news from the
// session's events without asking Redis; when its subscription drops and
// comes back (events may have been missed meanwhile), a waiting
// notification fires and a wait returns for a change whose event it
// never received.
func TestEventMissedDuringReconnect(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newStore(t, srv, "a", defaults), newStore(t, srv, "b", defaults)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := a.Create(ctx, "s", session.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := b.Open(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(ctx, []byte("1")); err != nil {
		t.Fatal(err)
	}
	if bt, err := r.Read(0, 0, 0, 10, 1<<20); err != nil || len(bt.Frames) != 1 {
		t.Fatalf("Read = %+v, %v", bt, err)
	}
	f, ch := fired()
	r.Notify(1, 0, f)
	waited := make(chan error, 1)
	go func() { waited <- r.Wait(ctx, 1, 0, nil) }()

	// A frame appended with no event published: what a reader whose
	// subscription was down at the time would have missed.
	rdb := a.Client()
	if err := rdb.RPush(ctx, "cableway:{s}:s", "2").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, "cableway:{s}:m", "n", 3, "b", 2, "pb", 1).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("notified with no event and no reconnection") // the test would prove nothing
	case <-time.After(50 * time.Millisecond):
	}
	// Every subscription connection drops; the stores resubscribe.
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	expectCall(t, ch, "after the resubscription")
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Wait still blocked")
	}
	bt, err := r.Read(1, 1, 0, 10, 1<<20)
	if err != nil || len(bt.Frames) != 1 || bt.Frames[0].Seq != 2 || string(bt.Frames[0].Data) != "2" {
		t.Fatalf("Read = %+v, %v", bt, err)
	}
}

// TestBadRecord: a session whose metadata record in Redis is not one the
// store wrote is refused with an error naming it, not a panic or a
// half-read session; a session whose record is gone is unknown.
func TestBadRecord(t *testing.T) {
	srv := redistest.Start(t)
	a := newStore(t, srv, "a", defaults)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Create(ctx, "s", session.Meta{Token: "t", Header: map[string][]string{"Authorization": {"Bearer x"}}}); err != nil {
		t.Fatal(err)
	}
	if m, err := a.Meta(ctx, "s"); err != nil || m.Token != "t" || m.Header["Authorization"][0] != "Bearer x" {
		t.Fatalf("Meta = %+v, %v", m, err)
	}
	rdb := a.Client()
	rdb.Set(ctx, "cableway:{s}:c", "{not json", 0)
	if _, err := a.Meta(ctx, "s"); err == nil || !strings.Contains(err.Error(), "bad record") {
		t.Fatalf("Meta of a bad record = %v", err)
	}
	if _, _, err := a.Open(ctx, "s"); err == nil || !strings.Contains(err.Error(), "bad record") {
		t.Fatalf("Open of a bad record = %v", err)
	}
	rdb.Del(ctx, "cableway:{s}:c")
	if _, err := a.Meta(ctx, "s"); !errors.Is(err, session.ErrUnknownSession) {
		t.Fatalf("Meta with no record = %v", err)
	}
}
