package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/server/bridge"
	"github.com/cableway/cableway/server/session/redisstore"
)

// lookupEnv is os.LookupEnv; tests pass a map's.
type lookupEnv func(string) (string, bool)

// flagSpec is what --help shows of a flag besides what the flag package
// keeps (name, usage, default): its value's placeholder and its variable.
type flagSpec struct {
	name string
	arg  string // placeholder for the value ("" for booleans)
	env  string // environment variable, "" for none
	// envByHand: the command reads env itself (parse does not apply it).
	envByHand bool
}

// command is a subcommand's flags: a flag.FlagSet plus what --help shows
// and which environment variable sets which flag.
type command struct {
	fs    *flag.FlagSet
	name  string
	intro string // paragraph shown under the usage line
	outro string // shown after the flags: exit codes, examples
	specs []flagSpec
}

func newCommand(name, intro string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed by parse
	return &command{fs: fs, name: name, intro: intro}
}

// envName is the environment variable of a flag: CABLEWAY_ and the name
// in upper case with dashes as underscores.
func envName(flagName string) string {
	return "CABLEWAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// add registers v as flag name. withEnv gives it a CABLEWAY_* variable.
func (c *command) add(v flag.Value, name, arg, usage string, withEnv bool) {
	c.fs.Var(v, name, usage)
	c.note(name, arg, withEnv)
}

// str and boolean register the flag package's own string and bool flags.
func (c *command) str(p *string, name, arg, usage string, withEnv bool) {
	c.fs.StringVar(p, name, *p, usage)
	c.note(name, arg, withEnv)
}

func (c *command) boolean(p *bool, name, usage string, withEnv bool) {
	c.fs.BoolVar(p, name, *p, usage)
	c.note(name, "", withEnv)
}

func (c *command) note(name, arg string, withEnv bool) {
	spec := flagSpec{name: name, arg: arg}
	if withEnv {
		spec.env = envName(name)
	}
	c.specs = append(c.specs, spec)
}

// envReadByHand names the environment variable of the last flag added,
// which the command reads itself.
func (c *command) envReadByHand(env string) {
	c.specs[len(c.specs)-1].env = env
	c.specs[len(c.specs)-1].envByHand = true
}

// parse applies the environment, then args (so a flag wins over its
// variable). On --help it prints the usage to stdout and returns
// flag.ErrHelp. Positional arguments are refused.
func (c *command) parse(args []string, env lookupEnv, stdout io.Writer) error {
	for _, s := range c.specs {
		if v, ok := env(s.env); ok && v != "" && !s.envByHand {
			if err := c.fs.Set(s.name, v); err != nil {
				return fmt.Errorf("invalid value %q for $%s: %v", v, s.env, err)
			}
		}
	}
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(stdout)
		}
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	return nil
}

// usage prints the command's help: one line per flag with its default and
// environment variable.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: cableway %s [flags]\n\n%s\n\nFlags:\n", c.name, c.intro)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range c.specs {
		f := c.fs.Lookup(s.name)
		left := "  --" + s.name
		if s.arg != "" {
			left += " " + s.arg
		}
		var notes []string
		if f.DefValue != "" {
			notes = append(notes, "default "+f.DefValue)
		}
		if s.env != "" {
			notes = append(notes, "env "+s.env)
		}
		line := f.Usage
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, "; ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\n", left, line)
	}
	tw.Flush()
	if c.outro != "" {
		fmt.Fprintf(w, "\n%s\n", c.outro)
	}
}

// Flag values the flag package lacks: positive numbers and durations with
// plain errors, sizes, lists, repeated flags, log levels.

// value is a flag.Value of a T parsed and shown by two functions.
type value[T any] struct {
	p      *T
	parse  func(string) (T, error)
	format func(T) string
}

func (v value[T]) String() string {
	if v.p == nil {
		return ""
	}
	return v.format(*v.p)
}

func (v value[T]) Set(s string) error {
	x, err := v.parse(strings.TrimSpace(s))
	if err == nil {
		*v.p = x
	}
	return err
}

func positive[T int | float64 | time.Duration](x T, err error, what string) (T, error) {
	switch {
	case err != nil:
		return 0, errors.New(what)
	case x <= 0:
		return 0, errors.New("must be positive")
	}
	return x, nil
}

func intValue(p *int) value[int] {
	return value[int]{p, func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		return positive(n, err, "not an integer")
	}, strconv.Itoa}
}

func floatValue(p *float64) value[float64] {
	return value[float64]{p, func(s string) (float64, error) {
		f, err := strconv.ParseFloat(s, 64)
		if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			err = errors.New("not finite")
		}
		return positive(f, err, "not a number")
	}, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }}
}

// countValue and rateValue are intValue and floatValue that take 0 too
// (for limits where 0 means off).
func countValue(p *int) value[int] {
	v := intValue(p)
	v.parse = func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		return notNegative(n, err, "not an integer")
	}
	return v
}

func rateValue(p *float64) value[float64] {
	v := floatValue(p)
	v.parse = func(s string) (float64, error) {
		f, err := strconv.ParseFloat(s, 64)
		if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			err = errors.New("not finite")
		}
		return notNegative(f, err, "not a number")
	}
	return v
}

func notNegative[T int | float64](x T, err error, what string) (T, error) {
	switch {
	case err != nil:
		return 0, errors.New(what)
	case x < 0:
		return 0, errors.New("must be 0 or more")
	}
	return x, nil
}

// durationValue takes Go durations ("30s", "1m30s"), positive only.
func durationValue(p *time.Duration) value[time.Duration] {
	return value[time.Duration]{p, func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		return positive(d, err, "not a duration (e.g. 30s, 1m30s, 500ms)")
	}, formatDuration}
}

func byteSizeValue(p *byteSize) value[byteSize] {
	return value[byteSize]{p, parseByteSize, byteSize.String}
}

// listValue is a comma separated list; each use of the flag replaces it.
func listValue(p *[]string) value[[]string] {
	return value[[]string]{p, func(s string) ([]string, error) {
		var out []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
		return out, nil
	}, func(l []string) string { return strings.Join(l, ",") }}
}

// repeatedValue collects every use of a repeatable flag, in order.
type repeatedValue struct{ p *[]string }

func (v repeatedValue) String() string { return "" }
func (v repeatedValue) Set(s string) error {
	*v.p = append(*v.p, s)
	return nil
}

// levelValue is a slog level: debug, info, warn or error.
func levelValue(p *slog.Level) value[slog.Level] {
	return value[slog.Level]{p, func(s string) (slog.Level, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return 0, errors.New("want debug, info, warn or error")
		}
		return l, nil
	}, func(l slog.Level) string { return strings.ToLower(l.String()) }}
}

// formatDuration writes d the short way: "1m", not "1m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// byteSize is a size in bytes, written as an integer with an optional
// binary suffix: 65536, 64KiB (or 64K, 64k), 1MiB (1M), 1GiB (1G).
type byteSize int64

func (s byteSize) String() string {
	switch {
	case s >= 1<<30 && s%(1<<30) == 0:
		return strconv.FormatInt(int64(s>>30), 10) + "GiB"
	case s >= 1<<20 && s%(1<<20) == 0:
		return strconv.FormatInt(int64(s>>20), 10) + "MiB"
	case s >= 1<<10 && s%(1<<10) == 0:
		return strconv.FormatInt(int64(s>>10), 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10)
}

func parseByteSize(raw string) (byteSize, error) {
	s := strings.TrimSpace(raw)
	mult := int64(1)
	lower := strings.ToLower(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(lower, u.suffix) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("not a size (an integer with an optional KiB, MiB or GiB suffix)")
	}
	if n <= 0 {
		return 0, errors.New("must be positive")
	}
	if n > (1<<62)/mult {
		return 0, errors.New("too large")
	}
	return byteSize(n * mult), nil
}

// storeConfig is what --store, --node and --lease say: where sessions are
// kept when several bridges share them.
type storeConfig struct {
	url   string        // "" (this process's memory) or redis:// / rediss://
	node  string        // this process's name among those sharing the store
	lease time.Duration // the owner lease
}

func defaultStoreConfig() storeConfig { return storeConfig{lease: redisstore.DefaultLease} }

// addStoreFlags registers the store's flags on the bridge command.
func addStoreFlags(c *command, sc *storeConfig) {
	c.str(&sc.url, "store", "URL", `where sessions are kept: "" for this process's memory, or redis://[user:password@]host:port/db (rediss:// for TLS) to share them with other bridges behind a load balancer without sticky sessions (server/SCALEOUT.md)`, true)
	c.str(&sc.node, "node", "NAME", "this bridge's name among those sharing --store, unique (default: host name and process id)", true)
	c.add(durationValue(&sc.lease), "lease", "DURATION", "with --store: how long a dead bridge's sessions wait before another bridge takes them over", true)
}

// check validates the store's flags.
func (sc *storeConfig) check() error {
	if sc.url == "" {
		return nil
	}
	u, err := url.Parse(sc.url)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return fmt.Errorf("--store %q: want redis://host:port/db or rediss://…", transport.RedactURL(sc.url))
	}
	if sc.lease < 300*time.Millisecond {
		return fmt.Errorf("--lease %v: want 300ms or more", sc.lease)
	}
	return nil
}

// openStore connects to --store; nil without one (the in-memory default).
// The session TTL of keys in Redis outlives --session-ttl.
func openStore(ctx context.Context, cfg *bridgeConfig, logger *slog.Logger) (*redisstore.Store, error) {
	sc := cfg.store
	if sc.url == "" {
		return nil, nil
	}
	// go-redis logs through a logger of its own: into ours, at debug level.
	redis.SetLogger(redisLogger{logger})
	node := sc.node
	if node == "" {
		host, _ := os.Hostname()
		node = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := redisstore.New(cctx, sc.url,
		redisstore.WithNode(node),
		redisstore.WithLease(sc.lease),
		redisstore.WithTTL(max(2*cfg.sessionTTL, redisstore.DefaultTTL)),
		redisstore.WithLimits(cfg.queueFrames, int(min(int64(cfg.queueBytes), math.MaxInt)), int(min(int64(cfg.resumeWindow), math.MaxInt))),
		redisstore.WithLogger(logger),
	)
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	logger.Info("session store", "store", transport.RedactURL(sc.url), "node", node, "lease", sc.lease)
	return st, nil
}

// redisLogger passes go-redis's log lines to slog at debug level.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Debug("redis: " + fmt.Sprintf(format, v...))
}

// storeCollectors are the metrics of a bridge sharing st (none without).
func storeCollectors(b *bridge.Bridge, st *redisstore.Store) []prometheus.Collector {
	if st == nil {
		return nil
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, f)
	}
	return []prometheus.Collector{
		gauge("store_remote_sessions", "Sessions this bridge serves from --store while another bridge owns them.",
			func() float64 { return float64(b.Stats().RemoteSessions) }),
		counter("store_forwarded_total", "Client commands this bridge forwarded to the owning bridge through --store.",
			func() float64 { return float64(b.Stats().Forwarded) }),
		counter("store_takeovers_total", "Sessions this bridge took over from a dead owner (upstream redialled).",
			func() float64 { return float64(b.Stats().Takeovers) }),
		counter("store_leases_lost_total", "Session leases this bridge lost to another bridge.",
			func() float64 { return float64(b.Stats().LeasesLost) }),
		counter("store_errors_total", "Redis errors met by the store's background work (lease renewal, figures).",
			func() float64 { return float64(st.Stats().Errors) }),
	}
}
