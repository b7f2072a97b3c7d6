//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cableway/cableway/internal/railstest"
)

const lobby = `{"channel":"ChatChannel","room":"lobby"}`

type sessionInfo struct {
	SID   string `json:"sid"`
	Token string `json:"token"`
	Epoch uint32 `json:"epoch"`
}

func createSession(t *testing.T, ctx context.Context, base, user string) sessionInfo {
	t.Helper()
	resp, body := do(t, ctx, noKeepAlive(), "POST", base+"/sessions", http.Header{"Authorization": {"Bearer secret-" + user}}, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /sessions: %d %s", resp.StatusCode, body)
	}
	var s sessionInfo
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.SID == "" || s.Token == "" {
		t.Fatalf("POST /sessions body %s: %v", body, err)
	}
	return s
}

// metricValue finds one sample in a Prometheus text exposition.
func metricValue(t *testing.T, exposition, sample string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(exposition)
	if m == nil {
		t.Fatalf("metrics lack %s:\n%s", sample, exposition)
	}
	return m[1]
}

// TestBridgeRails runs "cableway bridge" in front of the real Rails app:
// sessions, /healthz, /metrics, then the SIGTERM path with an SSE client
// attached.
func TestBridgeRails(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const shutdownTimeout = 5 * time.Second
	p, base := startBridge(t, ctx, "--upstream", rails.CableURL(), "--shutdown-timeout", shutdownTimeout.String(), "--log-level", "debug")
	client := noKeepAlive()

	if resp, body := do(t, ctx, client, "GET", base+"/healthz", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	// Rails refuses a session without credentials: 401, counted.
	if resp, body := do(t, ctx, client, "POST", base+"/sessions", nil, ""); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"error":"unauthorized"`) {
		t.Fatalf("POST /sessions without credentials: %d %s", resp.StatusCode, body)
	}
	s := createSession(t, ctx, base, "alice")

	// An SSE client attached to the session.
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/sessions/%s/sse?token=%s", base, s.SID, s.Token), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("sse: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readSSE(resp.Body)
	ev, ok := nextEvent(t, ctx, events)
	if !ok || ev.id != fmt.Sprintf("%d:1", s.Epoch) || ev.data != `{"type":"welcome"}` {
		t.Fatalf("first SSE event %+v, want the welcome as %d:1", ev, s.Epoch)
	}
	// Subscribe through the bridge and see the confirmation on the stream.
	frame, _ := json.Marshal(map[string]string{"command": "subscribe", "identifier": lobby})
	batch := fmt.Sprintf(`[{"cseq":1,"frame":%s}]`, frame)
	if resp, body := do(t, ctx, client, "POST", fmt.Sprintf("%s/sessions/%s/send?token=%s", base, s.SID, s.Token), nil, batch); resp.StatusCode != 200 || !strings.Contains(body, `"acked":1`) {
		t.Fatalf("send: %d %s", resp.StatusCode, body)
	}
	for ev.data == "" || !strings.Contains(ev.data, "confirm_subscription") {
		if ev, ok = nextEvent(t, ctx, events); !ok {
			t.Fatal("SSE stream ended before the confirmation")
		}
	}

	// /metrics: every bridge metric, and the session counted.
	resp2, metrics := do(t, ctx, client, "GET", base+"/metrics", nil, "")
	if resp2.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp2.StatusCode)
	}
	for _, name := range []string{
		"cableway_bridge_sessions", "cableway_bridge_sessions_created_total", "cableway_bridge_frames_in_total",
		"cableway_bridge_frames_out_total", "cableway_bridge_frames_evicted_total", "cableway_bridge_commands_total",
		"cableway_bridge_upstream_reconnects_total", "cableway_bridge_refusals_total", "go_goroutines",
	} {
		if !strings.Contains(metrics, "\n# TYPE "+name+" ") {
			t.Errorf("metrics lack %s", name)
		}
	}
	if v := metricValue(t, metrics, "cableway_bridge_sessions_created_total"); v != "1" {
		t.Errorf("sessions_created_total %s, want 1", v)
	}
	if v := metricValue(t, metrics, "cableway_bridge_sessions"); v != "1" {
		t.Errorf("sessions %s, want 1", v)
	}
	if v := metricValue(t, metrics, "cableway_bridge_commands_total"); v != "1" {
		t.Errorf("commands_total %s, want 1", v)
	}
	if v := metricValue(t, metrics, `cableway_bridge_refusals_total{reason="unauthorized"}`); v != "1" {
		t.Errorf("unauthorized refusals %s, want 1", v)
	}

	// SIGTERM: the attached client gets a server_restart disconnect as a
	// sequenced frame, then its stream ends, and the process exits in time.
	stopped := time.Now()
	p.cancel()
	var restart sseEvent
	for {
		ev, ok := nextEvent(t, ctx, events)
		if !ok {
			break
		}
		if strings.Contains(ev.data, `"type":"disconnect"`) {
			restart = ev
		}
	}
	var frameBody struct {
		Type      string `json:"type"`
		Reason    string `json:"reason"`
		Reconnect bool   `json:"reconnect"`
	}
	if err := json.Unmarshal([]byte(restart.data), &frameBody); err != nil || frameBody.Reason != "server_restart" || !frameBody.Reconnect {
		t.Fatalf("last frame %+v, want a server_restart disconnect with reconnect", restart)
	}
	if !strings.HasPrefix(restart.id, fmt.Sprintf("%d:", s.Epoch)) {
		t.Errorf("server_restart event id %q, want a sequenced id", restart.id)
	}
	if code := p.wait(t, ctx); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if took := time.Since(stopped); took > shutdownTimeout+time.Second {
		t.Fatalf("shutdown took %v, more than --shutdown-timeout %v", took, shutdownTimeout)
	}
	// The upstream socket is gone too.
	if _, err := rails.WaitStats(ctx, func(st railstest.Stats) bool { return st.Connections == 0 }); err != nil {
		t.Fatal(err)
	}
}

// TestBridgeShutdownIdleSessions: sessions with no client attached do not
// hold the process past --shutdown-timeout, and their upstream sockets
// close.
func TestBridgeShutdownIdleSessions(t *testing.T) {
	rails := railstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const shutdownTimeout = 3 * time.Second
	p, base := startBridge(t, ctx, "--upstream", rails.CableURL(), "--shutdown-timeout", shutdownTimeout.String())
	for _, u := range []string{"a", "b", "c"} {
		createSession(t, ctx, base, u)
	}
	stopped := time.Now()
	p.cancel()
	if code := p.wait(t, ctx); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if took := time.Since(stopped); took > shutdownTimeout+time.Second {
		t.Fatalf("shutdown took %v with idle sessions, more than %v", took, shutdownTimeout)
	}
	if _, err := rails.WaitStats(ctx, func(st railstest.Stats) bool { return st.Connections == 0 }); err != nil {
		t.Fatal(err)
	}
}
