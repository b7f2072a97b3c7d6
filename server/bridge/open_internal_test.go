package bridge

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// splitSubscribe takes the subscribe parameters out of a query, decoded
// and in order, and leaves every other parameter as the client wrote it.
func TestSplitSubscribe(t *testing.T) {
	for _, c := range []struct {
		in, rest string
		idents   []string
	}{
		{"", "", nil},
		{"token=a%20b", "token=a%20b", nil},
		{"subscribe=%7B%22channel%22%3A%22C%22%7D", "", []string{`{"channel":"C"}`}},
		{"a=1&subscribe=x&b=x+y&subscribe=z&&c", "a=1&b=x+y&c", []string{"x", "z"}},
		{"sub%73cribe=x&subscriber=y", "subscriber=y", []string{"x"}},
	} {
		idents, rest, err := splitSubscribe(c.in)
		if err != nil || rest != c.rest || !slices.Equal(idents, c.idents) {
			t.Errorf("splitSubscribe(%q) = %q, %q, %v; want %q, %q", c.in, idents, rest, err, c.idents, c.rest)
		}
	}
	for _, bad := range []string{"subscribe=%zz", "%zz=1"} {
		if _, _, err := splitSubscribe(bad); err == nil {
			t.Errorf("splitSubscribe(%q): no error", bad)
		}
	}
}

// An upstream consumer's info records (a session's connection opening and
// closing) log at debug; its warnings stay warnings.
func TestDemoteInfo(t *testing.T) {
	var buf strings.Builder
	log := slog.New(demoteInfo{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	log.Info("cable: connected")
	log.With("session", "s").Warn("cable: frame error")
	if got := buf.String(); strings.Contains(got, "connected") || !strings.Contains(got, "level=WARN msg=\"cable: frame error\" session=s") {
		t.Errorf("at info level: %q, want the warning only", got)
	}
	buf.Reset()
	log = slog.New(demoteInfo{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})})
	log.Info("cable: connected")
	if got := buf.String(); !strings.Contains(got, "level=DEBUG msg=\"cable: connected\"") {
		t.Errorf("at debug level: %q, want the record at debug", got)
	}
}
