//go:build !js

package bridgeconn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cableway/cableway/internal/bridgewire"
	"github.com/cableway/cableway/sdk/transport"
)

// Fuzz targets of the bridge client's parsers of what a bridge (or
// whatever answers in its place) sends. Run one with, e.g.:
//
//	go test -run='^$' -fuzz='^FuzzPollAnswer$' -fuzztime=3m -parallel=1 ./sdk/transport/internal/bridgeconn/

// answerDoer answers the first request with status and body and fails
// every later one, after noting its URL.
type answerDoer struct {
	status int
	body   []byte
	calls  int
	urls   []string
}

var errNoMore = errors.New("fuzz: no more answers")

func (d *answerDoer) Do(_ context.Context, _, u string, _ map[string][]string, _ []byte) (int, []byte, error) {
	d.calls++
	d.urls = append(d.urls, u)
	if d.calls > 1 {
		return 0, nil, errNoMore
	}
	return d.status, d.body, nil
}

// checkErrorText: errors a user sees are readable and bounded, whatever
// the bridge said. (A quoted body of 120 control bytes alone is 480.)
func checkErrorText(t *testing.T, what string, err error) {
	t.Helper()
	if msg := err.Error(); !utf8.ValidString(msg) || len(msg) > 700 {
		t.Fatalf("%s: error of %d bytes, valid UTF-8 %v: %.200q", what, len(msg), utf8.ValidString(msg), msg)
	}
}

func FuzzCreateAnswer(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{201, `{"sid":"s1","token":"t","epoch":7,"ttl":30,"max_body":65536}`},
		{201, `{"sid":"s1","token":"t"}`},
		{201, `{"sid":"","token":"t","epoch":7}`},
		{201, `{"sid":"a/b?c#d","token":"t&u=v","epoch":4294967295}`},
		{201, `{"sid":"s1","token":"t","epoch":4294967296}`},
		{201, `{"sid":"s1","token":"t","epoch":-1}`},
		{201, `null`}, {201, ``}, {201, `<html>`}, {200, `{"sid":"s1","token":"t","epoch":7}`},
		{403, `{"error":"origin_not_allowed","detail":"https://evil.example"}`},
		{502, "<html><body>Bad Gateway\xff</body></html>"},
		{429, `{"error":"create_rate_limited","detail":"` + strings.Repeat("x", 5000) + `"}`},
		{401, `{"error":"unauthorized","detail":"\u0000\r\n\u001b[31m"}`},
	} {
		f.Add(s.status, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		d := &answerDoer{status: status, body: body}
		s, err := Create(context.Background(), d, "http://127.0.0.1:1/", nil)
		if err != nil {
			checkErrorText(t, "create", err)
			var he *transport.HandshakeError
			if status != 201 && (!errors.As(err, &he) || he.StatusCode != status) {
				t.Fatalf("create answered %d: %v, want a HandshakeError with the status", status, err)
			}
			return
		}
		var c bridgewire.Created
		if status != 201 || json.Unmarshal(body, &c) != nil || s.SID != c.SID || s.Token != c.Token || s.Epoch != c.Epoch || s.SID == "" || s.Token == "" {
			t.Fatalf("create answered %d %q: session %+v", status, body, s)
		}
		// The session's URLs carry the sid as one path segment and the
		// token as the token parameter, whatever their characters.
		u, err := url.Parse(s.URL("poll", url.Values{"after": {"3"}}))
		if err != nil {
			t.Fatalf("URL of sid %q token %q: %v", s.SID, s.Token, err)
		}
		if u.Query().Get("token") != s.Token || u.Query().Get("after") != "3" {
			t.Fatalf("URL %s: token %q after %q", u, u.Query().Get("token"), u.Query().Get("after"))
		}
		if want := "/sessions/" + s.SID + "/poll"; u.Path != want {
			t.Fatalf("URL %s: path %q, want %q", u, u.Path, want)
		}
	})
}

func FuzzPollAnswer(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
		after  uint64
	}{
		{200, `{"epoch":7,"frames":[{"type":"welcome"},{"identifier":"x","message":{"n":1}}],"next":2}`, 0},
		{200, `{"epoch":7,"frames":[{"type":"ping","message":1}],"next":5}`, 5},
		{200, `{"epoch":7,"frames":[{"message":1},{"type":"ping","message":1}],"next":6}`, 5},
		{200, `{"epoch":7,"frames":[{"message":1}],"next":11,"after":10}`, 5},
		{200, `{"epoch":7,"frames":[{"message":1}],"next":6,"after":3}`, 5},
		{200, `{"epoch":7,"frames":[],"next":5,"ended":true}`, 5},
		{200, `{"epoch":7,"frames":[],"next":5,"reset":true,"reason":"evicted"}`, 5},
		{200, `{"epoch":7,"frames":[],"reset":true,"reason":"` + strings.Repeat("z", 3000) + `"}`, 5},
		{200, `{"epoch":7,"frames":[{"message":1}],"next":9}`, 5},
		{200, `{"epoch":7,"frames":[{"message":1}],"next":3}`, 5},
		{200, `{"epoch":7,"frames":[null,1,"x",{"type":"ping"}],"next":8}`, 5},
		{200, `{"epoch":7,"frames":[{"message":1}],"next":0}`, 18446744073709551615},
		{200, `{"frames":[{"mess`, 0}, {200, `null`, 0}, {200, ``, 0}, {200, `[]`, 0},
		{404, `{"error":"unknown_session"}`, 0}, {502, `<html>bad gateway</html>`, 0},
	} {
		f.Add(s.status, []byte(s.body), s.after)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte, after uint64) {
		d := &answerDoer{status: status, body: body}
		s := &Session{Base: "http://127.0.0.1:1", SID: "s1", Token: "t", Epoch: 7, doer: d}
		s.pollBytes.Store(maxPollBytes)
		type emitted struct {
			seq   uint64
			frame []byte
		}
		var got []emitted
		err := Poll{Timeout: time.Second}.Run(context.Background(), s, after, func(seq uint64, frame []byte) error {
			got = append(got, emitted{seq, frame})
			return nil
		})
		if err == nil {
			t.Fatalf("poll of %d %q ended without an error", status, body)
		}
		checkErrorText(t, "poll", err)
		var pb bridgewire.Polled
		okAnswer := status == 200 && json.Unmarshal(body, &pb) == nil
		if !okAnswer && len(got) > 0 {
			t.Fatalf("poll of %d %q: %d frames emitted from an answer that is not one", status, body, len(got))
		}
		// Sequenced frames are numbered one by one from the cursor (or
		// the bridge's later "after"); pings carry 0.
		next := max(after, pb.After)
		for _, e := range got {
			if e.seq == 0 {
				continue
			}
			next++
			if e.seq != next {
				t.Fatalf("poll of %q after %d: frame %q numbered %d, want %d", body, after, e.frame, e.seq, next)
			}
		}
		// A second request happens only after an answer that held
		// together: its cursor is the answer's next.
		if d.calls > 1 {
			if !errors.Is(err, errNoMore) || !okAnswer || pb.Reset || pb.Ended || next != pb.Next {
				t.Fatalf("poll of %q: polled again (err %v)", body, err)
			}
			u, _ := url.Parse(d.urls[1])
			if u.Query().Get("after") != strconv.FormatUint(pb.Next, 10) {
				t.Fatalf("poll of %q: next poll %s, want after=%d", body, d.urls[1], pb.Next)
			}
		}
		if okAnswer && pb.Reset && !errors.Is(err, ErrReset) {
			t.Fatalf("poll of %q: %v, want ErrReset", body, err)
		}
	})
}

// bodyTransport answers every request with one SSE body and no network.
type bodyTransport struct{ body []byte }

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"text/event-stream"}},
		Body:    io.NopCloser(bytes.NewReader(b.body)),
		Request: r,
	}, nil
}

type sseEmit struct {
	seq   uint64
	frame []byte
}

// runSSE reads one SSE body through the SSE downstream.
func runSSE(t *testing.T, body []byte) ([]sseEmit, error) {
	t.Helper()
	s := &Session{Base: "http://127.0.0.1:1", SID: "s1", Token: "t", Epoch: 7}
	var got []sseEmit
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := SSE{Client: &http.Client{Transport: bodyTransport{body}}, MaxFrame: 64 << 10}.Run(ctx, s, 0, func(seq uint64, frame []byte) error {
		got = append(got, sseEmit{seq, bytes.Clone(frame)})
		return nil
	})
	if ctx.Err() != nil {
		t.Fatalf("SSE body %q: not done in 10 s", body)
	}
	return got, err
}

// FuzzSSEStream: any body read as an event stream ends the run with an
// error (a clean end is errStreamEnded), and what it emits is whole JSON
// frames, numbered by ids of this session's epoch.
func FuzzSSEStream(f *testing.F) {
	for _, s := range []string{
		"retry: 1000\n\nid: 7:1\ndata: {\"type\":\"welcome\"}\n\n",
		"id: 7:1\ndata: {\"a\":\ndata: 1}\n\nid: 7:2\r\ndata: {\"b\":2}\r\n\r\n",
		"id: 7:1\rdata: {\"a\":1}\r\r",
		"data: {\"type\":\"ping\",\"message\":1}\n\n",
		"id: 8:1\ndata: {\"a\":1}\n\n",
		"id: 7:\ndata: {\"a\":1}\n\n",
		"event: reset\ndata: {\"reason\":\"evicted\"}\n\n",
		"event: reset\ndata: not json\n\n",
		"event: other\ndata: {}\n\n",
		"id: 7:1\ndata: {\"a\":",
		": comment\n\n",
		"data:{\"a\":1}\n\n",
		"\xef\xbb\xbfid: 7:1\ndata: {\"a\":1}\n\n",
		"id: 7:1\ndata: {\"a\":\"\r\"}\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := runSSE(t, body)
		if err == nil {
			t.Fatalf("SSE body %q: run ended without an error", body)
		}
		checkErrorText(t, "sse", err)
		for _, e := range got {
			if !json.Valid(e.frame) {
				t.Fatalf("SSE body %q: emitted %q, not a whole JSON frame", body, e.frame)
			}
		}
	})
}

// FuzzSSERoundTrip: frames written by the bridge's writer (bridgewire)
// are read back by the client whole, in order, with their numbers: the
// only change an event stream may make is a line end inside the JSON
// text turned into LF.
func FuzzSSERoundTrip(f *testing.F) {
	f.Add("hello", " ", uint64(1))
	f.Add("a\x00b\x00c", "\r\n", uint64(41))
	f.Add("x\ry\nz", "\r", uint64(1<<40))
	f.Add("", "\n\n", uint64(1))
	f.Add("\u2028é\xff", "\t", uint64(9))
	f.Fuzz(func(t *testing.T, text, ws string, first uint64) {
		if strings.Trim(ws, " \t\r\n") != "" || first == 0 || first > 1<<62 {
			return // ws is JSON whitespace put between tokens
		}
		parts := strings.Split(text, "\x00")
		if len(parts) > 50 {
			parts = parts[:50]
		}
		var body []byte
		var frames [][]byte
		for i, p := range parts {
			msg, _ := json.Marshal(p)
			frame := []byte(`{` + ws + `"identifier":"x",` + ws + `"message":` + ws + `{"text":` + string(msg) + `}` + ws + `}`)
			frames = append(frames, frame)
			body = bridgewire.AppendEventID(body, 7, first+uint64(i))
			body = bridgewire.AppendData(body, frame)
		}
		got, err := runSSE(t, body)
		if !errors.Is(err, errStreamEnded) {
			t.Fatalf("SSE body %q: %v, want the stream's clean end", body, err)
		}
		if len(got) != len(frames) {
			t.Fatalf("SSE body %q: %d frames, want %d", body, len(got), len(frames))
		}
		for i, e := range got {
			var a, b bytes.Buffer
			json.Compact(&a, e.frame)
			json.Compact(&b, frames[i])
			if e.seq != first+uint64(i) || a.String() != b.String() {
				t.Fatalf("SSE body %q: frame %d = %d %q, want %d %q", body, i, e.seq, e.frame, first+uint64(i), frames[i])
			}
		}
	})
}

// TestBridgeErrorBounded: a refusal's detail was copied whole into the
// error (5 kB here, as much as the body holds in general); it is cut now
// (found by FuzzCreateAnswer, testdata/fuzz/FuzzCreateAnswer/long-detail).
func TestBridgeErrorBounded(t *testing.T) {
	body := `{"error":"create_rate_limited","detail":"` + strings.Repeat("é", 3000) + `"}`
	_, err := Create(context.Background(), &answerDoer{status: 429, body: []byte(body)}, "http://127.0.0.1:1", nil)
	if err == nil || len(err.Error()) > 600 || !utf8.ValidString(err.Error()) || !strings.Contains(err.Error(), "create_rate_limited: éé") {
		t.Fatalf("error %d bytes: %.120q", len(err.Error()), err)
	}
}

// TestPollSeqDoesNotWrap: a frame after cursor 2⁶⁴−1 was numbered 0 (no
// number, as a ping) and the cursor went back to 0; it is a reset now
// (found by FuzzPollAnswer, testdata/fuzz/FuzzPollAnswer/seq-wraps).
func TestPollSeqDoesNotWrap(t *testing.T) {
	d := &answerDoer{status: 200, body: []byte(`{"epoch":7,"frames":[{"message":1}],"next":0}`)}
	s := &Session{Base: "http://127.0.0.1:1", SID: "s1", Token: "t", Epoch: 7, doer: d}
	s.pollBytes.Store(maxPollBytes)
	n := 0
	err := Poll{}.Run(context.Background(), s, 1<<64-1, func(uint64, []byte) error { n++; return nil })
	if !errors.Is(err, ErrReset) || n != 0 {
		t.Fatalf("%d frames emitted, %v; want none and ErrReset", n, err)
	}
}
