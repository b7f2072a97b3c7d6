package bridgewire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// sseData parses one event's data the way the SSE specification does:
// CR, LF and CRLF end lines; data lines are joined with LF.
func sseData(t *testing.T, event []byte) string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(event))
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		for i, c := range data {
			switch c {
			case '\n':
				return i + 1, data[:i], nil
			case '\r':
				if i+1 < len(data) {
					if data[i+1] == '\n' {
						return i + 2, data[:i], nil
					}
					return i + 1, data[:i], nil
				}
				if atEOF {
					return i + 1, data[:i], nil
				}
				return 0, nil, nil
			}
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break // the event ends
		}
		v, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not a data line", line)
		}
		lines = append(lines, v)
	}
	return strings.Join(lines, "\n")
}

func TestAppendDataSplitsEveryLineEnd(t *testing.T) {
	for _, in := range []string{
		`{"a":1}`, "", "a\nb", "a\rb", "a\r\nb", "a\n\nb", "a\r\rb", "\r", "\n", "a\r", "x\r\n\ry\n",
	} {
		got := sseData(t, AppendData(nil, []byte(in)))
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(in)
		if got != want {
			t.Errorf("AppendData(%q) parses as %q, want %q", in, got, want)
		}
	}
}

func FuzzAppendData(f *testing.F) {
	f.Add([]byte("a\r\nb\rc\nd"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got := sseData(t, AppendData(nil, in))
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(in))
		if got != want {
			t.Fatalf("AppendData(%q) parses as %q, want %q", in, got, want)
		}
	})
}

func TestEventID(t *testing.T) {
	id := string(AppendEventID(nil, 7, 42))
	if id != "id: 7:42\n" {
		t.Fatalf("AppendEventID = %q", id)
	}
	if e, s, ok := ParseEventID("7:42"); !ok || e != 7 || s != 42 {
		t.Errorf("ParseEventID = %d %d %v", e, s, ok)
	}
	for _, bad := range []string{"", "7", ":1", "7:", "x:1", "1:x", "4294967296:1", "-1:2"} {
		if _, _, ok := ParseEventID(bad); ok {
			t.Errorf("ParseEventID(%q) accepted", bad)
		}
	}
	ev, ok := bytes.CutPrefix(AppendReset(nil, ReasonEvicted), []byte("event: reset\n"))
	if r := ParseReset([]byte(sseData(t, ev))); !ok || r != ReasonEvicted {
		t.Errorf("reset event %q: reason %q", ev, r)
	}
}

func TestSessionEvent(t *testing.T) {
	in := Created{SID: "s\nid", Token: "tok", Epoch: 7, TTL: 30, MaxBody: 1024}
	ev := AppendSession(nil, in)
	if !bytes.HasPrefix(ev, []byte("event: "+SessionEvent+"\n")) || !bytes.HasSuffix(ev, []byte("\n\n")) {
		t.Fatalf("event %q", ev)
	}
	got, err := ParseSession([]byte(sseData(t, bytes.TrimPrefix(ev, []byte("event: "+SessionEvent+"\n")))))
	if err != nil || got != in {
		t.Fatalf("ParseSession = %+v, %v; want %+v", got, err, in)
	}
	for _, bad := range []string{``, `{`, `{"sid":"a"}`, `{"token":"b"}`, `[]`} {
		if _, err := ParseSession([]byte(bad)); err == nil {
			t.Errorf("ParseSession(%q): no error", bad)
		}
	}
}

func TestValidText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"a":"é"}`, `{"a":"é"}`},
		{"{\"a\":\"\xff\xfe\"}", "{\"a\":\"\uFFFD\"}"},
		{"\xc0\xaf x \xed\xa0\x80", "\uFFFD x \uFFFD"}, // overlong, CESU surrogate
	} {
		if got := string(ValidText([]byte(c.in))); got != c.want {
			t.Errorf("ValidText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
