package cable

import (
	"net/textproto"
	"testing"
)

// canonicalHeaderKey must agree with net/textproto, which WithHeader and
// WithHeaderFunc used before.
func TestCanonicalHeaderKeyMatchesTextproto(t *testing.T) {
	for _, k := range []string{
		"", "a", "A", "-", "--", "a-", "-a", "user-agent", "USER-AGENT", "User-Agent", "x-cableway-TOKEN",
		"authorization", "Sec-WebSocket-Protocol", "x_y", "x.y-z", "1-a", "a-1b", "with space", "colon:", "tab\t",
		"ümlaut", "x-\xff", "a!#$%&'*+-.^_`|~z", "\x00", "a\x7f",
	} {
		if got, want := canonicalHeaderKey(k), textproto.CanonicalMIMEHeaderKey(k); got != want {
			t.Errorf("canonicalHeaderKey(%q) = %q, textproto says %q", k, got, want)
		}
	}
}

func FuzzCanonicalHeaderKey(f *testing.F) {
	for _, k := range []string{"user-agent", "X-FOO-bar", "with space", "ä-b", "a--b"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if got, want := canonicalHeaderKey(k), textproto.CanonicalMIMEHeaderKey(k); got != want {
			t.Errorf("canonicalHeaderKey(%q) = %q, textproto says %q", k, got, want)
		}
	})
}
