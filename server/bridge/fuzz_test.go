package bridge

import (
	"crypto/tls"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Fuzz targets of the bridge's parsers of request fields. Run one with, e.g.:
//
//	go test -run='^$' -fuzz='^FuzzCursor$' -fuzztime=3m -parallel=1 ./server/bridge/

// cursorRequest is a request carrying a cursor in its three forms;
// lastEventID "" sends no header.
func cursorRequest(after, epoch, lastEventID string) *http.Request {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if epoch != "" {
		q.Set("epoch", epoch)
	}
	r := &http.Request{URL: &url.URL{Path: "/sessions/x/poll", RawQuery: q.Encode()}, Header: http.Header{}}
	if lastEventID != "" {
		r.Header.Set("Last-Event-ID", lastEventID)
	}
	return r
}

var decimal = regexp.MustCompile(`^[0-9]+$`)

// refCursor is server/PROTOCOL.md's cursor rule written out: Last-Event-ID
// "<epoch>:<seq>" (both decimal, the epoch the session's) wins; else
// "after" (decimal, missing means 0) with an optional "epoch" that must be
// the session's.
func refCursor(after, epoch, lastEventID string, sessionEpoch uint32) (uint64, bool) {
	if lastEventID != "" {
		e, n, ok := strings.Cut(lastEventID, ":")
		if !ok || !decimal.MatchString(e) || !decimal.MatchString(n) {
			return 0, false
		}
		ev, err1 := strconv.ParseUint(e, 10, 64)
		nv, err2 := strconv.ParseUint(n, 10, 64)
		return nv, err1 == nil && err2 == nil && ev == uint64(sessionEpoch)
	}
	if epoch != "" && epoch != strconv.FormatUint(uint64(sessionEpoch), 10) {
		return 0, false
	}
	if after == "" {
		return 0, true
	}
	if !decimal.MatchString(after) {
		return 0, false
	}
	n, err := strconv.ParseUint(after, 10, 64)
	return n, err == nil
}

func FuzzCursor(f *testing.F) {
	for _, s := range []struct {
		after, epoch, id string
		e                uint32
	}{
		{"", "", "", 7}, {"5", "", "", 7}, {"5", "7", "", 7}, {"5", "8", "", 7},
		{"", "", "7:5", 7}, {"", "", "8:5", 7}, {"1", "7", "7:9", 7},
		{"", "", ":5", 7}, {"", "", "7:", 7}, {"", "", "7", 7}, {"", "", "7:5:1", 7},
		{"-1", "", "", 7}, {"+1", "", "", 7}, {"0x10", "", "", 7}, {" 1", "", "", 7},
		{"18446744073709551615", "", "", 7}, {"18446744073709551616", "", "", 7},
		{"", "", "07:5", 7}, {"1", "07", "", 7}, {"", "", "2147483647:1", 2147483647},
		{"", "", "4294967303:1", 7}, // 2³² + 7: no wrap to the session's epoch
		{"", "", "7:+5", 7}, {"", "", "+7:5", 7}, {"", "", " 7:5", 7}, {"1_0", "", "", 7},
	} {
		f.Add(s.after, s.epoch, s.id, s.e)
	}
	f.Fuzz(func(t *testing.T, after, epoch, lastEventID string, sessionEpoch uint32) {
		s := &session{epoch: sessionEpoch}
		n, ok := cursor(cursorRequest(after, epoch, lastEventID), s)
		wn, wok := refCursor(after, epoch, lastEventID, sessionEpoch)
		if ok != wok || (ok && n != wn) {
			t.Fatalf("cursor(after=%q epoch=%q Last-Event-ID=%q) on epoch %d = %d %v, want %d %v",
				after, epoch, lastEventID, sessionEpoch, n, ok, wn, wok)
		}
	})
}

// TestCursorLastEventIDNeedsBothParts: a Last-Event-ID without its epoch
// (":5") or its seq ("7:") does not have the documented form
// "<epoch>:<seq>" and is a bad cursor; before, ":5" resumed at 5 in any
// epoch and "7:" at 0 (found by FuzzCursor, testdata/fuzz/FuzzCursor).
func TestCursorLastEventIDNeedsBothParts(t *testing.T) {
	s := &session{epoch: 7}
	for _, id := range []string{":5", "7:", ":"} {
		if n, ok := cursor(cursorRequest("", "", id), s); ok {
			t.Errorf("Last-Event-ID %q: cursor %d accepted, want a bad cursor", id, n)
		}
	}
	if n, ok := cursor(cursorRequest("", "", "7:5"), s); !ok || n != 5 {
		t.Errorf("Last-Event-ID 7:5: %d %v, want 5", n, ok)
	}
}

// simpleOrigin matches an origin a browser serialises: scheme, a plain
// host name or IPv4 address or bracketed IPv6 address, an optional port.
var simpleOrigin = regexp.MustCompile(`^(?i)(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?/?$`)

// refOrigin is the origin's RFC 6454 tuple as one string, for the simple
// shapes only: lower case, the default port made explicit.
func refOrigin(s string) (string, bool) {
	m := simpleOrigin.FindStringSubmatch(s)
	if m == nil || m[2] == "" || strings.HasPrefix(m[2], ".") {
		return "", false
	}
	scheme, host, port := strings.ToLower(m[1]), strings.ToLower(m[2]), m[3]
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	// The port as written: a browser never writes "080", and the
	// bridge need not take it for 80.
	return scheme + "|" + host + "|" + port, true
}

func FuzzOrigin(f *testing.F) {
	for _, s := range []struct {
		origin, host string
		tls          bool
	}{
		{"http://example.com", "example.com", false},
		{"https://example.com", "example.com", false}, // scheme differs
		{"https://example.com", "example.com", true},
		{"HTTPS://Example.COM:443/", "example.com", true},
		{"http://example.com:80", "EXAMPLE.com:80", false},
		{"http://example.com:8080", "example.com", false},
		{"http://[::1]:80", "[::1]", false},
		{"http://127.0.0.1:3000", "127.0.0.1:3000", false},
		{"null", "example.com", false},
		{"http://user@example.com", "example.com", false},
		{"http://example.com/path", "example.com", false},
		{"http://example.com?q", "example.com", false},
		{"http://example.com#f", "example.com", false},
		{"ftp://example.com", "example.com", false},
		{"http://evil.com", "evil.com@example.com", false},
		{"http://example.com", "example.com/x", false},
		{"http://example.com:080", "example.com:80", false},
		{"http://example.com.", "example.com", false},
		{"http://exa%6Dple.com", "example.com", false},
		{"http://example.com:", "example.com", false},
		{"//example.com", "example.com", false},
	} {
		f.Add(s.origin, s.host, s.tls)
	}
	f.Fuzz(func(t *testing.T, origin, host string, isTLS bool) {
		got, ok := canonicalOrigin(origin)
		if ok {
			if again, ok2 := canonicalOrigin(got); !ok2 || again != got {
				t.Fatalf("canonicalOrigin(%q) = %q, which canonicalises to %q %v", origin, got, again, ok2)
			}
			rest, isHTTP := strings.CutPrefix(got, "http://")
			if !isHTTP {
				var isHTTPS bool
				if rest, isHTTPS = strings.CutPrefix(got, "https://"); !isHTTPS {
					t.Fatalf("canonicalOrigin(%q) = %q: not http(s)", origin, got)
				}
				if strings.HasSuffix(rest, ":443") {
					t.Fatalf("canonicalOrigin(%q) = %q keeps the default port", origin, got)
				}
			} else if strings.HasSuffix(rest, ":80") {
				t.Fatalf("canonicalOrigin(%q) = %q keeps the default port", origin, got)
			}
			if got != strings.ToLower(got) || rest == "" || strings.ContainsAny(rest, "/?#@ \t\r\n") {
				t.Fatalf("canonicalOrigin(%q) = %q: not a lower-case scheme://host[:port]", origin, got)
			}
		}
		b := &Bridge{cfg: defaultConfig()}
		r := &http.Request{Host: host, Header: http.Header{}}
		scheme := "http"
		if isTLS {
			r.TLS, scheme = &tls.ConnectionState{}, "https"
		}
		same := b.sameOrigin(r, origin)
		ro, rok := refOrigin(origin)
		rh, hok := refOrigin(scheme + "://" + host)
		if same && (!ok || (rok && hok && ro != rh) || (rok != hok)) {
			t.Fatalf("sameOrigin(Host %q, TLS %v, Origin %q) = true; the reference tuples %q %v, %q %v", host, isTLS, origin, ro, rok, rh, hok)
		}
		if rok && hok && ro == rh && !same {
			t.Fatalf("sameOrigin(Host %q, TLS %v, Origin %q) = false for the same origin %q", host, isTLS, origin, ro)
		}
		// A configured public origin decides alone.
		if pub, err := PublicOrigin(origin); err == nil && pub != "" {
			b.cfg.publicOrigin = pub
			if !b.sameOrigin(r, origin) {
				t.Fatalf("public origin %q: its own Origin %q refused", pub, origin)
			}
		}
	})
}

func FuzzClientKey(f *testing.F) {
	for _, s := range [][2]string{
		{"192.0.2.1", "192.0.2.1"}, {"192.0.2.1", "192.0.2.2"}, {"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8::1", "2001:db8::2"}, {"2001:db8:0:0:ffff::1", "2001:db8:0:1::1"},
		{"fe80::1%eth0", "fe80::2"}, {"2001:db8::/64", "2001:db8::1"}, {"", "x"},
		{"192.0.2.1:80", "192.0.2.1"}, {"[2001:db8::1]", "2001:db8::1"}, {"1.2.3.04", "1.2.3.4"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, kb := ClientKey(a), ClientKey(b)
		if ClientKey(ka) != ka {
			t.Fatalf("ClientKey(%q) = %q, whose key is %q", a, ka, ClientKey(ka))
		}
		pa, erra := netip.ParseAddr(a)
		pb, errb := netip.ParseAddr(b)
		if erra != nil {
			if ka != a {
				t.Fatalf("ClientKey(%q) of no address = %q, want it as given", a, ka)
			}
			return
		}
		pa = pa.Unmap()
		if pa.Is4() {
			if ka != pa.String() {
				t.Fatalf("ClientKey(%q) = %q, want %q", a, ka, pa)
			}
		} else if pfx, err := netip.ParsePrefix(ka); err != nil || pfx.Bits() != 64 || !pfx.Contains(pa.WithZone("")) {
			t.Fatalf("ClientKey(%q) = %q, want its /64", a, ka)
		}
		if errb != nil {
			return
		}
		pb = pb.Unmap()
		var same bool
		switch {
		case pa.Is4() != pb.Is4():
		case pa.Is4():
			same = pa == pb
		default:
			x, y := pa.As16(), pb.As16()
			same = [8]byte(x[:8]) == [8]byte(y[:8])
		}
		if same != (ka == kb) {
			t.Fatalf("ClientKey(%q) = %q, ClientKey(%q) = %q: same client %v", a, ka, b, kb, same)
		}
	})
}

// FuzzPollTimeout: the long-poll timeout is a finite number of seconds ≥ 0
// (decimal allowed), capped at MaxPollTimeout; "" is the default.
func FuzzPollTimeout(f *testing.F) {
	for _, s := range []string{
		"", "0", "0.5", ".5", "25", "60", "61", "1e10", "1e400", "-1", "-0", "NaN", "Inf", "-Inf", "0x1p3", "1_0", " 1", "9223372036",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := pollTimeout(v)
		if v == "" {
			if !ok || d != DefaultPollTimeout {
				t.Fatalf("pollTimeout(\"\") = %v %v", d, ok)
			}
			return
		}
		n, err := strconv.ParseFloat(v, 64)
		want := err == nil && n >= 0 && !math.IsInf(n, 0) && !math.IsNaN(n)
		if ok != want {
			t.Fatalf("pollTimeout(%q) = %v %v, want accepted %v", v, d, ok, want)
		}
		if ok && (d < 0 || d > MaxPollTimeout || d != time.Duration(math.Min(n, 60)*float64(time.Second))) {
			t.Fatalf("pollTimeout(%q) = %v, want %v s capped at %v", v, d, n, MaxPollTimeout)
		}
	})
}

// FuzzUpstreamURL: the client's query reaches Rails added to the
// operator's upstream URL, never overriding or adding to a parameter the
// operator set; a client query that does not parse is an error.
func FuzzUpstreamURL(f *testing.F) {
	for _, s := range [][2]string{
		{"", ""}, {"", "token=bob"}, {"token=reject", "token=bob"}, {"token=reject", "%74oken=bob&x=1"},
		{"a=1&a=2", "a=3&b=4&b=5"}, {"", "a=1;b=2"}, {"", "%zz"}, {"", "a=%"}, {"", "&&&=&"}, {"x", "x=1"},
		{"token=a+b", "token=c"}, {"", "q=%0d%0aX-Injected:%201"}, {"", "a=1#frag"}, {"", "a b=c"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, operatorQuery, rawQuery string) {
		upstream := "ws://127.0.0.1:3000/cable"
		if operatorQuery != "" {
			upstream += "?" + operatorQuery
		}
		up, err := url.Parse(upstream)
		if err != nil || strings.Contains(operatorQuery, "#") {
			return // the operator's URL is checked when the bridge starts
		}
		operator, operr := url.ParseQuery(up.RawQuery)
		if operr != nil {
			return
		}
		b := &Bridge{upstream: upstream, cfg: defaultConfig()}
		got, err := b.upstreamURL(rawQuery)
		client, cerr := url.ParseQuery(rawQuery)
		if err != nil {
			if cerr == nil {
				t.Fatalf("upstreamURL(%q) on %q: %v, but the query parses", rawQuery, upstream, err)
			}
			return
		}
		if cerr != nil {
			t.Fatalf("upstreamURL(%q) on %q = %q, but the query does not parse: %v", rawQuery, upstream, got, cerr)
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "ws" || u.Host != "127.0.0.1:3000" || u.Path != "/cable" || u.Fragment != "" {
			t.Fatalf("upstreamURL(%q) on %q = %q (%v)", rawQuery, upstream, got, err)
		}
		if strings.ContainsAny(got, " \r\n\t") && !strings.ContainsAny(upstream, " \r\n\t") { // the operator's own may
			t.Fatalf("upstreamURL(%q) = %q holds whitespace", rawQuery, got)
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			t.Fatalf("upstreamURL(%q) on %q = %q: its query does not parse: %v", rawQuery, upstream, got, err)
		}
		for k, vs := range q {
			want, ok := operator[k]
			if !ok {
				want = client[k]
			}
			if strings.Join(vs, "\x00") != strings.Join(want, "\x00") || len(vs) != len(want) {
				t.Fatalf("upstreamURL(%q) on %q = %q: %s=%q, want %q", rawQuery, upstream, got, k, vs, want)
			}
		}
		for k := range operator {
			if _, ok := q[k]; !ok {
				t.Fatalf("upstreamURL(%q) on %q = %q lost the operator's %q", rawQuery, upstream, got, k)
			}
		}
		for k := range client {
			if _, ok := q[k]; !ok {
				t.Fatalf("upstreamURL(%q) on %q = %q lost the client's %q", rawQuery, upstream, got, k)
			}
		}
	})
}

// TestOriginEmptyQueryOrFragment: a Host "h#" (or "h?") passed for the
// origin http://h, url.Parse dropping the empty fragment; no origin holds
// '?' or '#' (found by FuzzOrigin, testdata/fuzz/FuzzOrigin/host-empty-fragment).
func TestOriginEmptyQueryOrFragment(t *testing.T) {
	b := &Bridge{cfg: defaultConfig()}
	for _, host := range []string{"example.com#", "example.com?"} {
		if b.sameOrigin(&http.Request{Host: host, Header: http.Header{}}, "http://example.com") {
			t.Errorf("Host %q: same origin as http://example.com", host)
		}
	}
	for _, o := range []string{"http://example.com#", "http://example.com?", "http://example.com/?"} {
		if c, ok := canonicalOrigin(o); ok {
			t.Errorf("canonicalOrigin(%q) = %q", o, c)
		}
	}
	if c, ok := canonicalOrigin("http://Example.com:80/"); !ok || c != "http://example.com" {
		t.Errorf("canonicalOrigin(http://Example.com:80/) = %q %v", c, ok)
	}
}
