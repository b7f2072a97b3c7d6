package transport_test

import (
	"strings"
	"testing"

	"github.com/cableway/cableway/sdk/transport"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"wss://example.com/cable", "wss://example.com/cable"},
		{"wss://user:pass@example.com/cable", "wss://example.com/cable"},
		{"wss://user@example.com:8443/cable?token=s3cret#frag", "wss://example.com:8443/cable"},
		{"https://example.com/cable-bridge?token=s3cret&x=1", "https://example.com/cable-bridge"},
		{"ws://127.0.0.1:3000/cable?", "ws://127.0.0.1:3000/cable"},
		{"://pass@host?token=s3cret", "<invalid URL>"},
	} {
		got := transport.RedactURL(tc.in)
		if got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "s3cret") || strings.Contains(got, "pass") {
			t.Errorf("RedactURL(%q) = %q keeps a secret", tc.in, got)
		}
	}
}
