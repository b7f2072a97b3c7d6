package main

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzForwardedIP: the client IP read from a trusted proxy's header is a
// canonical address (no zone, IPv4 not IPv6-mapped), taken only from the
// last value's last element — what the proxy itself appended — so nothing
// a client puts before it changes the answer. Run with:
//
//	go test -run='^$' -fuzz='^FuzzForwardedIP$' -fuzztime=3m -parallel=1 ./server/cmd/cableway/
func FuzzForwardedIP(f *testing.F) {
	for _, s := range []struct {
		earlier, last string
		forwarded     bool
	}{
		{"", "192.0.2.1", false},
		{"10.0.0.1, 10.0.0.2", "192.0.2.1", false},
		{"", "192.0.2.1:4711", false},
		{"", "[2001:db8::1]:4711", false},
		{"", "2001:db8::1", false},
		{"", "[2001:db8::1]", false},
		{"", "::ffff:192.0.2.1", false},
		{"", "fe80::1%eth0", false},
		{"", "[fe80::1%eth0]:80", false},
		{"", "unknown", false},
		{"", "", false},
		{"", "for=192.0.2.60;proto=http;by=203.0.113.43", true},
		{"for=1.1.1.1", `for="[2001:db8:cafe::17]:4711"`, true},
		{"", `For="_gazonk"`, true},
		{"", "proto=https", true},
		{"", `for="192.0.2.1`, true},
		{"", "for=unknown", true},
		{"", `for="[fe80::1%25eth0]:1"`, true},
	} {
		f.Add(s.earlier, s.last, s.forwarded)
	}
	f.Fuzz(func(t *testing.T, earlier, last string, forwarded bool) {
		ip, ok := lastForwardedIP([]string{last}, forwarded)
		if ok {
			a, err := netip.ParseAddr(ip)
			if err != nil || a.String() != ip || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("lastForwardedIP(%q, %v) = %q: not a canonical address without zone", last, forwarded, ip)
			}
		} else if ip != "" {
			t.Fatalf("lastForwardedIP(%q, %v) = %q, false", last, forwarded, ip)
		}
		if strings.Contains(last, ",") {
			return
		}
		// A client's own values and list elements before the proxy's
		// change nothing.
		for _, values := range [][]string{{earlier, last}, {earlier + "," + last}, {earlier + ", " + last}} {
			if ip2, ok2 := lastForwardedIP(values, forwarded); ip2 != ip || ok2 != ok {
				t.Fatalf("lastForwardedIP(%q, %v) = %q %v, but of %q alone %q %v", values, forwarded, ip2, ok2, last, ip, ok)
			}
		}
	})
}

// TestForwardedIPDropsZoneWithPort: "[fe80::1%eth0]:80" gave
// "fe80::1%eth0" while "[fe80::1%eth0]" gave "fe80::1": the zone is no
// part of a client's address (found by FuzzForwardedIP,
// testdata/fuzz/FuzzForwardedIP/addrport-zone).
func TestForwardedIPDropsZoneWithPort(t *testing.T) {
	for _, v := range []string{"[fe80::1%eth0]:80", "[fe80::1%eth0]", "fe80::1%eth0"} {
		if ip, ok := lastForwardedIP([]string{v}, false); !ok || ip != "fe80::1" {
			t.Errorf("lastForwardedIP(%q) = %q %v, want fe80::1", v, ip, ok)
		}
	}
}
