//go:build unix

package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/protocol"
)

// A command with invalid UTF-8 never reaches Rails (which would close the
// whole upstream connection with 1007): /send refuses it with 400
// invalid_utf8 and the session goes on.
func TestSendRefusesInvalidUTF8(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t, 30*time.Second)
	s := e.create(ctx, "alice")
	d := &pollDown{e: e, s: s}
	if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
		t.Fatalf("welcome: %v %v", f, err)
	}
	echo := identifier("EchoChannel", "test", "utf8")
	if code, body := e.send(ctx, s, 1, cmd("subscribe", echo, "")); code != 200 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	if _, err := nextMatch(ctx, d, nil, func(f tframe) bool { return f.kind() == "confirm_subscription" }); err != nil {
		t.Fatal(err)
	}
	idJSON, _ := json.Marshal(echo)
	bad := map[string]string{
		// The frame as an object: its bytes would go to Rails as they are.
		"object": `{"command":"message","identifier":` + string(idJSON) + `,"data":"{\"action\":\"echo\",\"text\":\"` + "\xff\xfe" + `\"}"}`,
		// The frame as a JSON string: encoding/json would make U+FFFD of it.
		"string": `"{\"command\":\"message\",\"identifier\":` + strings.ReplaceAll(string(idJSON), `"`, `\"`) + `,\"data\":\"{\\\"action\\\":\\\"echo\\\",\\\"text\\\":\\\"` + "\xc3" + `\\\"}\"}"`,
	}
	for name, frame := range bad {
		code, body := e.send(ctx, s, 2, frame)
		var ae struct{ Error, Detail string }
		json.Unmarshal(body, &ae)
		if code != http.StatusBadRequest || ae.Error != "invalid_utf8" || ae.Detail == "" {
			t.Fatalf("%s frame with invalid UTF-8: %d %s, want 400 invalid_utf8 with a detail", name, code, body)
		}
	}
	// Nothing was applied, and the session and its upstream are intact.
	if code, body := e.send(ctx, s, 2, cmd("message", echo, `{"action":"echo","text":"after"}`)); code != 200 || !bytes.Contains(body, []byte(`"acked":2`)) {
		t.Fatalf("valid command after the refusals: %d %s", code, body)
	}
	f, err := nextMatch(ctx, d, nil, notPing)
	if err != nil || f.kind() != "message" || !strings.Contains(string(f.Message), `"text":"after"`) {
		t.Fatalf("after the refusals: got %v %v, want the echo of \"after\"", f, err)
	}
}

// Through the WebSocket proxy, in JSON and in MessagePack, a command with
// invalid UTF-8 closes the client's socket with 1007 and a reason; it is
// not forwarded (Rails would otherwise end the session its own way).
func TestProxyRefusesInvalidUTF8(t *testing.T) {
	e := newEnv(t)
	for _, sub := range []string{protocol.SubprotocolJSON, protocol.SubprotocolMessagePack} {
		t.Run(sub, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			c, _, err := e.dialWS(ctx, "/", authHeader("alice"), sub)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			d, err := newWSDown(c)
			if err != nil {
				t.Fatal(err)
			}
			if f, err := nextMatch(ctx, d, nil, notPing); err != nil || f.kind() != "welcome" {
				t.Fatalf("welcome: %v %v", f, err)
			}
			codec, _ := protocol.CodecFor(sub)
			frame, err := codec.AppendCommand(nil, &protocol.Command{Command: "subscribe", Identifier: `{"channel":"EchoChannel","x":"` + "\xe2\x82" + `"}`})
			if err != nil {
				t.Fatal(err)
			}
			typ := ws.MessageText
			if codec.Binary() {
				typ = ws.MessageBinary
			}
			if err := c.Write(ctx, typ, frame); err != nil {
				t.Fatal(err)
			}
			err = readUntilClosed(ctx, d)
			if got := ws.CloseStatus(err); got != ws.StatusInvalidFramePayloadData {
				t.Fatalf("after a command with invalid UTF-8: %v (status %v), want close 1007", err, got)
			}
			var ce ws.CloseError
			if errors.As(err, &ce); !strings.Contains(ce.Reason, "UTF-8") {
				t.Errorf("close reason %q does not say what was wrong", ce.Reason)
			}
		})
	}
}

// readUntilClosed reads frames until the socket fails and returns why.
func readUntilClosed(ctx context.Context, d *wsDown) error {
	for {
		if _, err := d.next(ctx); err != nil {
			return err
		}
	}
}
