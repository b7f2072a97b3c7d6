//go:build unix

package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
)

var subscribedRE = regexp.MustCompile(`msg=subscribed`)

// lineRE matches a complete stdout line holding text.
func lineRE(text string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^(.*` + regexp.QuoteMeta(text) + `.*)\n`)
}

func perform(t *testing.T, ctx context.Context, env map[string]string, args ...string) *proc {
	t.Helper()
	p := start(t, env, append([]string{"perform"}, args...)...)
	if code := p.wait(t, ctx); code != exitOK {
		t.Fatalf("perform %v: exit %d\n%s", args, code, p.stderr.String())
	}
	return p
}

// TestListenPerformRails: "listen" prints what "perform" makes Rails
// broadcast, as one JSON line.
func TestListenPerformRails(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	l := start(t, nil, "listen", "--url", rails.CableURL(), "--channel", "ChatChannel", "--param", "room=lobby",
		"--header", "Authorization: Bearer secret-bob")
	l.stderr.waitFor(t, ctx, subscribedRE)

	// The credentials come from the environment this time.
	p := perform(t, ctx, map[string]string{"CABLEWAY_HEADER": "Authorization: Bearer secret-alice", "CABLEWAY_URL": rails.CableURL()},
		"--channel", "ChatChannel", "--param", "room=lobby", "--action", "speak", "--data", `{"text":"hi from perform"}`)

	line := l.stdout.waitFor(t, ctx, lineRE("hi from perform"))[1]
	var got map[string]string
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("listen printed %q: %v", line, err)
	}
	if want := map[string]string{"user": "alice", "text": "hi from perform", "room": "lobby"}; !equalMaps(got, want) {
		t.Fatalf("listen printed %v, want %v", got, want)
	}
	if n := strings.Count(l.stdout.String(), "\n"); n != 1 {
		t.Errorf("listen printed %d lines, want 1:\n%s", n, l.stdout.String())
	}
	// perform prints what its own subscription receives while it lingers,
	// here its own broadcast... unless Rails is slower than the linger.
	if out := p.stdout.String(); out != "" && !strings.Contains(out, "hi from perform") {
		t.Errorf("perform printed %q", out)
	}

	// Ctrl-C: listen exits 0.
	l.cancel()
	if code := l.wait(t, ctx); code != exitOK {
		t.Fatalf("listen exit %d", code)
	}
}

// TestListenMessagePackThroughBridge: listen --msgpack on the bridge's
// plain WebSocket proxy, which speaks MessagePack to the client and JSON
// to Rails; the message is printed as JSON with its key order.
func TestListenMessagePackThroughBridge(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, base := startBridge(t, ctx, "--upstream", rails.CableURL(), "--shutdown-timeout", "2s")

	l := start(t, nil, "listen", "--url", "ws"+strings.TrimPrefix(base, "http")+"/", "--msgpack",
		"--channel", "EchoChannel", "--param", "b=2", "--param", "a:=1", "--header", "Authorization: Bearer secret-carol")
	// EchoChannel transmits the params first, as decoded by Rails: their
	// order shows the identifier kept the order of --param.
	line := l.stdout.waitFor(t, ctx, lineRE(`"params"`))[1]
	if want := `{"params":{"b":"2","a":1}}`; line != want {
		t.Fatalf("listen printed %s, want %s", line, want)
	}
	l.stderr.waitFor(t, ctx, subscribedRE)
	if err := rails.Broadcast(ctx, "echo:carol", json.RawMessage(`{"z":1,"text":"via msgpack"}`)); err != nil {
		t.Fatal(err)
	}
	line = l.stdout.waitFor(t, ctx, lineRE("via msgpack"))[1]
	if want := `{"z":1,"text":"via msgpack"}`; line != want {
		t.Fatalf("listen printed %s, want %s", line, want)
	}
}

// TestClientRefusals: a rejected subscription and refused credentials
// exit 1.
func TestClientRefusals(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	p := start(t, nil, "perform", "--url", rails.CableURL(), "--channel", "RejectChannel", "--action", "x",
		"--header", "Authorization: Bearer secret-alice")
	if code := p.wait(t, ctx); code != exitFailure || !strings.Contains(p.stderr.String(), "rejected") {
		t.Fatalf("perform on RejectChannel: exit %d\n%s", code, p.stderr.String())
	}
	l := start(t, nil, "listen", "--url", rails.CableURL(), "--channel", "ChatChannel", "--param", "room=lobby")
	if code := l.wait(t, ctx); code != exitFailure || !strings.Contains(l.stderr.String(), "unauthorized") {
		t.Fatalf("listen without credentials: exit %d\n%s", code, l.stderr.String())
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
