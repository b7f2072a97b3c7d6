package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// lookupEnv is os.LookupEnv; tests pass a map's.
type lookupEnv func(string) (string, bool)

// flagSpec documents one flag for --help.
type flagSpec struct {
	name  string
	arg   string // placeholder for the value ("" for booleans)
	usage string // one line, without the default
	env   string // environment variable, "" for none
	def   string // default as shown, "" to show none
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
	spec := flagSpec{name: name, arg: arg, usage: usage, def: v.String()}
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
		if s.env == "" || s.envByHand {
			continue
		}
		if v, ok := env(s.env); ok && v != "" {
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
		left := "  --" + s.name
		if s.arg != "" {
			left += " " + s.arg
		}
		var notes []string
		if s.def != "" {
			notes = append(notes, "default "+s.def)
		}
		if s.env != "" {
			notes = append(notes, "env "+s.env)
		}
		line := s.usage
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

// Flag value types.

type stringValue struct{ p *string }

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v stringValue) Set(s string) error { *v.p = s; return nil }

type intValue struct{ p *int }

func (v intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not an integer")
	}
	if n <= 0 {
		return errors.New("must be positive")
	}
	*v.p = n
	return nil
}

type floatValue struct{ p *float64 }

func (v floatValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("not a number")
	}
	if f <= 0 {
		return errors.New("must be positive")
	}
	*v.p = f
	return nil
}

type boolValue struct{ p *bool }

func (v boolValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a boolean (true or false)")
	}
	*v.p = b
	return nil
}

// IsBoolFlag lets "--metrics" stand for "--metrics=true".
func (v boolValue) IsBoolFlag() bool { return true }

// durationValue takes Go durations ("30s", "1m30s"); zero and negative
// durations are refused.
type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return formatDuration(*v.p)
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a duration (e.g. 30s, 1m30s, 500ms)")
	}
	if d <= 0 {
		return errors.New("must be positive")
	}
	*v.p = d
	return nil
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

type byteSizeValue struct{ p *byteSize }

func (v byteSizeValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v byteSizeValue) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

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

// listValue is a comma separated list; each use of the flag replaces it.
type listValue struct{ p *[]string }

func (v listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func (v listValue) Set(s string) error {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	*v.p = out
	return nil
}

// repeatedValue collects every use of a repeatable flag, in order.
type repeatedValue struct{ p *[]string }

func (v repeatedValue) String() string { return "" }
func (v repeatedValue) Set(s string) error {
	*v.p = append(*v.p, s)
	return nil
}

// levelValue is a slog level: debug, info, warn or error.
type levelValue struct{ p *slog.Level }

func (v levelValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.ToLower(v.p.String())
}

func (v levelValue) Set(s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return errors.New("want debug, info, warn or error")
	}
	*v.p = l
	return nil
}
