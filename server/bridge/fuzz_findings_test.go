//go:build unix

package bridge_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// The fuzzers' findings seen through the HTTP API (the parsers' own tests
// are FuzzParseSend's seeds in internal/bridgewire and FuzzCursor here).

// TestSendRefusesNonArrayBody: PROTOCOL.md's /send body is a JSON array;
// "null" used to pass as an empty batch (200).
func TestSendRefusesNonArrayBody(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "alice")
	path := "/sessions/" + s.SID + "/send?token=" + s.Token
	for _, body := range []string{"null", " null", "{}", "", `"[]"`} {
		resp, b := e.do(ctx, "POST", path, nil, body)
		var ae struct{ Error, Detail string }
		json.Unmarshal(b, &ae)
		if resp.StatusCode != http.StatusBadRequest || ae.Error != "bad_body" || ae.Detail == "" {
			t.Errorf("/send %q: %d %s, want 400 bad_body with a detail", body, resp.StatusCode, b)
		}
	}
	if resp, b := e.do(ctx, "POST", path, nil, "[]"); resp.StatusCode != http.StatusOK {
		t.Errorf("/send []: %d %s, want 200", resp.StatusCode, b)
	}
}

// TestPollLastEventIDNeedsEpoch: a Last-Event-ID without its epoch or its
// seq is a bad cursor (reset), not a resume at 5 or at 0.
func TestPollLastEventIDNeedsEpoch(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "alice")
	for _, id := range []string{":1", "1:"} {
		resp, b := e.do(ctx, "GET", "/sessions/"+s.SID+"/poll?timeout=0&token="+s.Token, http.Header{"Last-Event-ID": {id}}, "")
		var p pollResult
		if err := json.Unmarshal(b, &p); err != nil || resp.StatusCode != http.StatusOK || !p.Reset || p.Reason != "bad_cursor" {
			t.Errorf("poll with Last-Event-ID %q: %d %s, want a bad_cursor reset", id, resp.StatusCode, b)
		}
	}
}
