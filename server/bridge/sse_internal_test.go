package bridge

import (
	"strings"
	"testing"
)

// browserData parses one SSE event as a browser does (a line ends at CR,
// LF or CRLF; data lines are joined with LF) and returns its data.
func browserData(event string) (string, bool) {
	var data []string
	for len(event) > 0 {
		i := strings.IndexAny(event, "\r\n")
		if i < 0 {
			return "", false // every line of an event ends
		}
		line := event[:i]
		if event[i] == '\r' && i+1 < len(event) && event[i+1] == '\n' {
			i++
		}
		event = event[i+1:]
		if line == "" {
			return strings.Join(data, "\n"), event == ""
		}
		v, ok := strings.CutPrefix(line, "data:")
		if !ok {
			return "", false
		}
		data = append(data, strings.TrimPrefix(v, " "))
	}
	return "", false
}

// FuzzSSEData: whatever line ends a frame holds, a browser reads it back
// with each of them as LF, in exactly one event.
func FuzzSSEData(f *testing.F) {
	for _, s := range []string{"", "{}", "a\nb", "a\rb", "a\r\nb", "\r", "\n\n", "\r\r\n\n", "x\r", " lead", "data: x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := browserData(string(appendSSEData(nil, data)))
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))
		if !ok || got != want {
			t.Fatalf("%q: a browser reads %q (one event: %v), want %q", data, got, ok, want)
		}
	})
}
