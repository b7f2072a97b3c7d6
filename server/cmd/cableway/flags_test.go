package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func runSync(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	code = runWithEnv(context.Background(), args, &out, &errOut, mapEnv(env))
	return code, out.String(), errOut.String()
}

func TestBridgeFlagDefaults(t *testing.T) {
	cfg, err := parseBridgeFlags(nil, mapEnv(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := defaultBridgeConfig()
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
	if cfg.listen != "127.0.0.1:8080" || cfg.upstream != "ws://127.0.0.1:3000/cable" ||
		cfg.shutdownTimeout != 10*time.Second || !cfg.metrics || cfg.logLevel != slog.LevelInfo {
		t.Fatalf("unexpected defaults %+v", cfg)
	}
}

func TestBridgeFlagsAndEnv(t *testing.T) {
	env := map[string]string{
		"CABLEWAY_LISTEN":               "0.0.0.0:9000",
		"CABLEWAY_UPSTREAM":             "wss://rails.example.com/cable",
		"CABLEWAY_ALLOWED_ORIGINS":      "https://App.example.com/, https://admin.example.com",
		"CABLEWAY_SESSION_TTL":          "1m",
		"CABLEWAY_QUEUE_SIZE":           "64",
		"CABLEWAY_QUEUE_BYTES":          "256KiB",
		"CABLEWAY_MAX_SESSIONS":         "5",
		"CABLEWAY_MAX_SESSIONS_PER_IP":  "2",
		"CABLEWAY_MAX_BODY":             "1k",
		"CABLEWAY_MAX_FRAME":            "2M",
		"CABLEWAY_COMMANDS_PER_SECOND":  "2.5",
		"CABLEWAY_PASS_HEADERS":         "X-Tenant,X-Request-Id",
		"CABLEWAY_TRUSTED_PROXY_HEADER": "X-Forwarded-For",
		"CABLEWAY_SHUTDOWN_TIMEOUT":     "3s",
		"CABLEWAY_LOG_LEVEL":            "debug",
		"CABLEWAY_METRICS":              "false",
		"CABLEWAY_KEEP_ALIVE":           "5s",
		"CABLEWAY_CREATE_TIMEOUT":       "2s",
	}
	// Flags win over the environment.
	cfg, err := parseBridgeFlags([]string{"--listen", "127.0.0.1:9001", "--queue-size=128", "--metrics"}, mapEnv(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := defaultBridgeConfig()
	want.listen = "127.0.0.1:9001"
	want.upstream = "wss://rails.example.com/cable"
	want.allowedOrigins = []string{"https://app.example.com", "https://admin.example.com"}
	want.sessionTTL = time.Minute
	want.queueFrames = 128
	want.queueBytes = 256 << 10
	want.maxSessions, want.maxSessionsPerIP = 5, 2
	want.maxBody, want.maxFrame = 1024, 2<<20
	want.commandsPerSecond = 2.5
	want.passHeaders = []string{"X-Tenant", "X-Request-Id"}
	want.trustedProxyHeader = "X-Forwarded-For"
	want.shutdownTimeout = 3 * time.Second
	want.logLevel = slog.LevelDebug
	want.metrics = true
	want.keepAlive, want.createTimeout = 5*time.Second, 2*time.Second
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestBridgeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--queue-size", "-1"}, want: "must be positive"},
		{args: []string{"--session-ttl", "soon"}, want: "not a duration"},
		{args: []string{"--max-body", "12XB"}, want: "not a size"},
		{args: []string{"--log-level", "loud"}, want: "want debug, info, warn or error"},
		{args: []string{"--upstream", "http://rails/cable"}, want: "want a ws:// or wss:// URL"},
		{args: []string{"--upstream-ca", "ca.pem"}, want: "needs a wss:// upstream"},
		{args: []string{"--tls-cert", "c.pem"}, want: "go together"},
		{args: []string{"--allowed-origins", "*"}, want: "wildcards are not supported"},
		{args: []string{"--allowed-origins", "https://a.example.com/path"}, want: "not an origin"},
		{args: []string{"--pass-headers", "X Bad"}, want: "not a header name"},
		{args: []string{"--listen", "8080"}, want: "want host:port"},
		{args: []string{"--compat-prefix", "/"}, want: "the root is the bridge's own"},
		{env: map[string]string{"CABLEWAY_COMPAT_PREFIX": "a b"}, want: "not a plain path"},
		{args: []string{"--no-such-flag"}, want: "flag provided but not defined"},
		{args: []string{"extra"}, want: `unexpected argument "extra"`},
		{env: map[string]string{"CABLEWAY_QUEUE_SIZE": "lots"}, want: `invalid value "lots" for $CABLEWAY_QUEUE_SIZE`},
		{env: map[string]string{"CABLEWAY_METRICS": "maybe"}, want: "$CABLEWAY_METRICS"},
	} {
		code, stdout, stderr := runSync(t, tc.env, append([]string{"bridge"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("bridge %v (env %v): exit %d, stderr %q; want exit 2 with %q", tc.args, tc.env, code, stderr, tc.want)
		}
	}
}

func TestBridgeHelp(t *testing.T) {
	code, stdout, stderr := runSync(t, nil, "bridge", "--help")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	cfg := defaultBridgeConfig()
	for _, s := range bridgeCommand(&cfg).specs {
		var line string
		for _, l := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "--"+s.name+" ") || strings.TrimSpace(l) == "--"+s.name {
				line = l
			}
		}
		if line == "" {
			t.Errorf("--help has no line for --%s:\n%s", s.name, stdout)
			continue
		}
		if !strings.Contains(line, "env "+envName(s.name)+")") {
			t.Errorf("--%s line lacks its variable %s: %q", s.name, envName(s.name), line)
		}
	}
	for _, want := range []string{
		"--listen ADDR", "(default 127.0.0.1:8080; env CABLEWAY_LISTEN)",
		"(default ws://127.0.0.1:3000/cable; env CABLEWAY_UPSTREAM)",
		"(default 10s; env CABLEWAY_SHUTDOWN_TIMEOUT)", "(default 1MiB; env CABLEWAY_QUEUE_BYTES)",
		"(default 64KiB; env CABLEWAY_MAX_BODY)", "(default true; env CABLEWAY_METRICS)",
		"flag on the\ncommand line wins over its variable",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help lacks %q:\n%s", want, stdout)
		}
	}
	// "help bridge" and -h say the same.
	for _, args := range [][]string{{"help", "bridge"}, {"bridge", "-h"}} {
		if code, out, _ := runSync(t, nil, args...); code != exitOK || out != stdout {
			t.Errorf("%v: exit %d, output differs from bridge --help", args, code)
		}
	}
}

func TestClientHelpAndErrors(t *testing.T) {
	for _, name := range []string{"listen", "perform"} {
		code, stdout, _ := runSync(t, nil, name, "--help")
		if code != exitOK || !strings.Contains(stdout, "--url URL") || !strings.Contains(stdout, "CABLEWAY_URL") ||
			!strings.Contains(stdout, "--param KEY=VALUE") || !strings.Contains(stdout, "CABLEWAY_HEADER") {
			t.Errorf("%s --help: exit %d\n%s", name, code, stdout)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"listen", "--channel", "C"}, "--url is required"},
		{[]string{"listen", "--url", "http://x/cable", "--channel", "C"}, "want a ws:// or wss:// URL"},
		{[]string{"listen", "--url", "ws://x/cable"}, "--channel is required"},
		{[]string{"listen", "--url", "ws://x/cable", "--channel", "C", "--param", "room"}, "want KEY=VALUE"},
		{[]string{"listen", "--url", "ws://x/cable", "--channel", "C", "--param", "n:={"}, "is not JSON"},
		{[]string{"perform", "--url", "ws://x/cable", "--channel", "C"}, "--action is required"},
		{[]string{"perform", "--url", "ws://x/cable", "--channel", "C", "--action", "a", "--data", "[1]"}, "want a JSON object"},
	} {
		code, _, stderr := runSync(t, nil, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestMainUsage(t *testing.T) {
	if code, _, stderr := runSync(t, nil); code != exitUsage || !strings.Contains(stderr, "Commands:") {
		t.Errorf("no args: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runSync(t, nil, "frobnicate"); code != exitUsage || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
	if code, stdout, _ := runSync(t, nil, "--help"); code != exitOK || !strings.Contains(stdout, "bridge") {
		t.Errorf("--help: exit %d, %q", code, stdout)
	}
	if code, stdout, _ := runSync(t, nil, "version"); code != exitOK || !strings.HasPrefix(stdout, "cableway ") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
}

func TestClientParamsAndEnv(t *testing.T) {
	env := map[string]string{
		"CABLEWAY_URL":    "ws://127.0.0.1:3000/cable",
		"CABLEWAY_HEADER": "Authorization: Bearer secret-alice\n\nX-Tenant: t1\n",
	}
	cfg, err := parseClientFlags("listen", []string{
		"--channel", "ChatChannel", "--param", "room=lobby", "--param", "id:=42", "--param", "a=b=c",
		"--header", "X-Extra: 1",
	}, mapEnv(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	id, err := cfg.identifier()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"channel":"ChatChannel","room":"lobby","id":42,"a":"b=c"}`; id != want {
		t.Errorf("identifier %s, want %s (params in order)", id, want)
	}
	if want := []string{"Authorization: Bearer secret-alice", "X-Tenant: t1", "X-Extra: 1"}; !reflect.DeepEqual(cfg.headers, want) {
		t.Errorf("headers %q, want %q", cfg.headers, want)
	}
	cfg.headers = []string{"no colon here"}
	if _, err := cfg.dialOptions(slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a header without a colon was accepted")
	}
	if _, err := parseClientFlags("listen", []string{"--help"}, mapEnv(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]byteSize{"1": 1, "64KiB": 64 << 10, "64k": 64 << 10, "2 MiB": 2 << 20, "1G": 1 << 30, "10b": 10} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1KiB", "1.5MiB", "KiB", "99999999999GiB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) accepted", in)
		}
	}
	for s, want := range map[byteSize]string{1: "1", 1024: "1KiB", 1536: "1536", 1 << 20: "1MiB", 3 << 30: "3GiB"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int64(s), s.String(), want)
		}
	}
}

func TestForwardedClientIP(t *testing.T) {
	for _, tc := range []struct {
		header string
		values []string
		want   string
	}{
		{"X-Forwarded-For", []string{"203.0.113.9"}, "203.0.113.9"},
		// Only the address the proxy appended counts: the left ones are
		// the client's to forge.
		{"X-Forwarded-For", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"X-Forwarded-For", []string{"1.1.1.1", "198.51.100.7"}, "198.51.100.7"},
		{"X-Forwarded-For", []string{"2001:db8::1"}, "2001:db8::1"},
		{"X-Real-IP", []string{"[2001:db8::2]:443"}, "2001:db8::2"},
		{"X-Real-IP", []string{"203.0.113.9:5000"}, "203.0.113.9"},
		{"X-Real-IP", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"Forwarded", []string{`for=1.1.1.1, for="[2001:db8::3]:80";proto=https`}, "2001:db8::3"},
		{"Forwarded", []string{"for=203.0.113.4;by=10.0.0.1"}, "203.0.113.4"},
		// Nothing usable: the peer's address.
		{"X-Forwarded-For", nil, "192.0.2.1"},
		{"X-Forwarded-For", []string{"unknown"}, "192.0.2.1"},
		{"Forwarded", []string{"proto=https"}, "192.0.2.1"},
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.1:1234"
		for _, v := range tc.values {
			r.Header.Add(tc.header, v)
		}
		if got := forwardedClientIP(tc.header)(r); got != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.header, tc.values, got, tc.want)
		}
	}
}

func TestHTTPServerTimeouts(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), nil, slog.New(slog.DiscardHandler))
	if srv.WriteTimeout != 0 || srv.ReadTimeout != 0 {
		t.Errorf("WriteTimeout %v, ReadTimeout %v: both must be 0 for SSE and long-polls", srv.WriteTimeout, srv.ReadTimeout)
	}
	if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 || srv.ErrorLog == nil {
		t.Errorf("server limits missing: %+v", srv)
	}
}

func TestCompatPrefixFlag(t *testing.T) {
	cfg, err := parseBridgeFlags([]string{"--compat-prefix", "legacy/events"}, mapEnv(nil), io.Discard)
	if err != nil || cfg.compatPrefix != "legacy/events" {
		t.Fatalf("cfg.compatPrefix %q, err %v", cfg.compatPrefix, err)
	}
	cfg, err = parseBridgeFlags(nil, mapEnv(map[string]string{"CABLEWAY_COMPAT_PREFIX": "/seed/"}), io.Discard)
	if err != nil || cfg.compatPrefix != "/seed/" {
		t.Fatalf("from the environment: %q, %v", cfg.compatPrefix, err)
	}
	if def, _ := parseBridgeFlags(nil, mapEnv(nil), io.Discard); def.compatPrefix != "/events/" {
		t.Fatalf("default compat prefix %q, want /events/", def.compatPrefix)
	}
}
