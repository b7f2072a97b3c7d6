package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
	"github.com/cableway/cableway/sdk/transport"
	"github.com/cableway/cableway/sdk/transport/fallback"
	"github.com/cableway/cableway/sdk/transport/longpoll"
	"github.com/cableway/cableway/sdk/transport/sse"
)

// clientConfig is what the listen and perform commands share.
type clientConfig struct {
	url       string
	channel   string
	params    []string // "key=value" or "key:=json", in order
	headers   []string // "Name: value"
	msgpack   bool
	timeout   time.Duration
	logLevel  slog.Level
	transport string // auto, websocket, sse or longpoll
	bridge    string // a Cableway bridge's base URL, http(s)://
	output    string // auto, json or text
	terminal  bool   // stdout is a terminal (set by clientSetup)

	// perform only
	action string
	data   string
	linger time.Duration
}

func defaultClientConfig() clientConfig {
	return clientConfig{timeout: 10 * time.Second, logLevel: slog.LevelInfo, data: "{}", linger: 500 * time.Millisecond,
		transport: "auto", output: "auto"}
}

const listenIntro = `Connects to an ActionCable endpoint (Rails itself, or a Cableway bridge's
plain WebSocket proxy on its root URL), subscribes to one channel and prints
each message it receives on stdout until interrupted (Ctrl-C). Reconnects
and resubscribes by itself; status (which transport carries the connection,
reconnects, errors) goes to stderr.

Output: on a terminal, one line per message with the time
("15:04:05.000  {...}"); otherwise (a pipe or file) each message as one
line of JSON, exactly as the server sent it. --output overrides.

Transports: --transport auto (the default) uses a WebSocket to --url and,
with --bridge, falls back to SSE and then long-polling through the bridge
as a browser would; websocket, sse and longpoll use that transport only
(sse and longpoll need --bridge), to check which ones get through a proxy.`

const clientExitCodes = `Exit codes:
  0    listen: stopped by Ctrl-C or SIGTERM after subscribing; perform: the action was sent
  1    the server refused (unauthorized, subscription rejected), no connection or no
       confirmation within --timeout, or the subscription ended
  2    usage: bad flags, a malformed --url or --bridge
  130  interrupted (Ctrl-C or SIGTERM) before subscribing, or before performing`

const listenExamples = `Examples:
  # a chat room on a local Rails app, authenticated by a header
  cableway listen --url ws://127.0.0.1:3000/cable --channel ChatChannel --param room=lobby \
      --header 'Authorization: Bearer secret-alice'

  # the same room through a Cableway bridge over SSE only (does the proxy pass SSE?)
  cableway listen --url 'ws://127.0.0.1:3000/cable?token=secret-alice' --channel ChatChannel \
      --param room=lobby --bridge http://127.0.0.1:8080 --transport sse

  # as a browser would: WebSocket first, then SSE, then long-polling; JSON lines to jq
  cableway listen --url wss://app.example.com/cable --bridge https://app.example.com/cable-bridge \
      --channel ChatChannel --param room=lobby | jq .text`

const performIntro = `Connects to an ActionCable endpoint, subscribes to one channel, performs one
action and exits 0 once it was sent (ActionCable sends no acknowledgement).
Messages the subscription receives meanwhile are printed on stdout as
listen prints them. The connection stays open --linger after the action,
since ActionCable handles an action and a closing socket concurrently and
could drop the action otherwise. --transport and --bridge work as for listen.`

const performExamples = `Examples:
  cableway perform --url ws://127.0.0.1:3000/cable --header 'Authorization: Bearer secret-bob' \
      --channel ChatChannel --param room=lobby --action speak --data '{"text":"hi"}'

  # the same through a Cableway bridge, over long-polling
  cableway perform --url 'ws://127.0.0.1:3000/cable?token=secret-bob' --bridge http://127.0.0.1:8080 \
      --transport longpoll --channel ChatChannel --param room=lobby --action speak --data '{"text":"hi"}'`

func clientCommand(name, intro string, cfg *clientConfig) *command {
	c := newCommand(name, intro)
	c.str(&cfg.url, "url", "URL", "ActionCable endpoint, ws:// or wss://, e.g. ws://127.0.0.1:3000/cable; its query (?token=…) reaches Rails, also through --bridge", true)
	c.str(&cfg.channel, "channel", "NAME", "channel class, e.g. ChatChannel", false)
	c.add(repeatedValue{&cfg.params}, "param", "KEY=VALUE", "identifier param, repeatable, order kept; KEY:=JSON for a non-string value (id:=42)", false)
	c.add(repeatedValue{&cfg.headers}, "header", "'NAME: VALUE'", "handshake header, repeatable, e.g. 'Authorization: Bearer …'", false)
	c.envReadByHand("CABLEWAY_HEADER: one header a line, keeps secrets out of ps")
	c.str(&cfg.transport, "transport", "MODE", "auto, websocket, sse or longpoll (sse and longpoll go through --bridge)", true)
	c.str(&cfg.bridge, "bridge", "URL", "a Cableway bridge's base URL, http:// or https://, for auto's fallback and for sse and longpoll", true)
	c.str(&cfg.output, "output", "MODE", "auto, json (one line of JSON per message) or text (time and message); auto: text on a terminal, json otherwise", true)
	c.boolean(&cfg.msgpack, "msgpack", "speak actioncable-v1-msgpack on a WebSocket (a Cableway bridge offers it; Rails does not)", true)
	c.add(durationValue(&cfg.timeout), "timeout", "DURATION", "deadline to connect and get the subscription confirmed", true)
	c.add(levelValue(&cfg.logLevel), "log-level", "LEVEL", "debug, info, warn or error; logs go to stderr", true)
	if name == "perform" {
		c.str(&cfg.action, "action", "NAME", "action to perform, e.g. speak", false)
		c.str(&cfg.data, "data", "JSON", "the action's data, a JSON object; \"action\" is added", false)
		c.add(durationValue(&cfg.linger), "linger", "DURATION", "how long to keep the socket open after performing", true)
	}
	c.outro = clientExitCodes + "\n\n" + listenExamples
	if name == "perform" {
		c.outro = clientExitCodes + "\n\n" + performExamples
	}
	return c
}

// parseClientFlags reads the environment and args of listen or perform.
func parseClientFlags(name string, args []string, env lookupEnv, stdout io.Writer) (clientConfig, error) {
	cfg := defaultClientConfig()
	intro := listenIntro
	if name == "perform" {
		intro = performIntro
	}
	if err := clientCommand(name, intro, &cfg).parse(args, env, stdout); err != nil {
		return cfg, err
	}
	// CABLEWAY_HEADER: headers from the environment come first.
	if v, ok := env("CABLEWAY_HEADER"); ok {
		var fromEnv []string
		for _, line := range strings.Split(v, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				fromEnv = append(fromEnv, line)
			}
		}
		cfg.headers = append(fromEnv, cfg.headers...)
	}
	switch {
	case cfg.url == "":
		return cfg, errors.New("--url is required")
	}
	if err := checkURL("--url", cfg.url, "ws", "wss"); err != nil {
		return cfg, err
	}
	if cfg.bridge != "" {
		if err := checkURL("--bridge", cfg.bridge, "http", "https"); err != nil {
			return cfg, err
		}
	}
	switch cfg.transport {
	case "auto":
	case "websocket":
		if cfg.bridge != "" {
			return cfg, errors.New("--bridge is for --transport auto, sse or longpoll; for a WebSocket through a bridge, point --url at it (ws://bridge-host/)")
		}
	case "sse", "longpoll":
		if cfg.bridge == "" {
			return cfg, fmt.Errorf("--transport %s needs --bridge URL (a Cableway bridge)", cfg.transport)
		}
		if cfg.msgpack {
			return cfg, fmt.Errorf("--msgpack applies to WebSockets only, not to --transport %s", cfg.transport)
		}
	default:
		return cfg, fmt.Errorf("--transport %q: want auto, websocket, sse or longpoll", cfg.transport)
	}
	switch cfg.output {
	case "auto", "json", "text":
	default:
		return cfg, fmt.Errorf("--output %q: want auto, json or text", cfg.output)
	}
	switch {
	case cfg.channel == "":
		return cfg, errors.New("--channel is required")
	case name == "perform" && cfg.action == "":
		return cfg, errors.New("--action is required")
	}
	if name == "perform" && !isJSONObject(cfg.data) {
		return cfg, fmt.Errorf("--data %q: want a JSON object", cfg.data)
	}
	return cfg, nil
}

// cutQuery drops a URL's query and fragment, where tokens travel.
func cutQuery(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		return raw[:i]
	}
	return raw
}

// checkURL refuses what cannot be dialled, so that a typo is a usage error
// at once rather than retries until --timeout.
func checkURL(flagName, raw string, schemes ...string) error {
	want := strings.Join(schemes, ":// or ") + "://"
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %q: not a URL: %v", flagName, cutQuery(raw), err)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("%s %q: want a %s URL", flagName, transport.RedactURL(raw), want)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%s %q: no host", flagName, transport.RedactURL(raw))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("%s %q: bad port %q", flagName, transport.RedactURL(raw), p)
		}
	}
	if u.User != nil {
		return fmt.Errorf("%s %q: credentials in the URL are not sent; use --header", flagName, transport.RedactURL(raw))
	}
	return nil
}

func isJSONObject(s string) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal([]byte(s), &m) == nil && m != nil
}

// identifier builds the subscription identifier: channel first, then the
// params in the order given.
func (cfg *clientConfig) identifier() (string, error) {
	kv := make([]any, 0, 2*len(cfg.params))
	for _, p := range cfg.params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || k == ":" {
			return "", fmt.Errorf("--param %q: want KEY=VALUE or KEY:=JSON", p)
		}
		if key, raw := strings.CutSuffix(k, ":"); raw {
			if !json.Valid([]byte(v)) {
				return "", fmt.Errorf("--param %q: %q is not JSON", p, v)
			}
			kv = append(kv, key, json.RawMessage(v))
			continue
		}
		kv = append(kv, k, v)
	}
	return protocol.NewIdentifier(cfg.channel, kv...)
}

// dialOptions turns the config into consumer options.
func (cfg *clientConfig) dialOptions(logger *slog.Logger) ([]cable.Option, error) {
	// The consumer logs its connects, losses and reconnects itself.
	opts := []cable.Option{cable.WithLogger(logger)}
	for _, h := range cfg.headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || !validHeaderName(name) {
			return nil, fmt.Errorf("--header %q: want 'Name: value'", redactHeader(h))
		}
		opts = append(opts, cable.WithHeader(textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value)))
	}
	if cfg.msgpack {
		opts = append(opts, cable.WithCodecs(protocol.MessagePackCodec{}))
	}
	switch cfg.transport {
	case "auto":
		if cfg.bridge != "" {
			opts = append(opts, cable.WithTransport(fallback.Bridged(cfg.bridge)))
		}
	case "sse":
		opts = append(opts, cable.WithTransport(sse.New(cfg.bridge)))
	case "longpoll":
		opts = append(opts, cable.WithTransport(longpoll.New(cfg.bridge)))
	}
	return opts, nil
}

// redactHeader keeps a header's name only, for error messages.
func redactHeader(h string) string {
	if name, _, ok := strings.Cut(h, ":"); ok {
		return name + ": …"
	}
	if len(h) > 20 {
		return h[:20] + "…"
	}
	return h
}

// subscribe connects and subscribes within cfg.timeout. On success the
// caller must Close the consumer. Its errors say what failed and what to
// check, in words (see explain); ctx ending is returned as ctx.Err().
func (cfg *clientConfig) subscribe(ctx context.Context, logger *slog.Logger) (*cable.Consumer, *cable.Subscription, error) {
	id, err := cfg.identifier()
	if err != nil {
		return nil, nil, err
	}
	opts, err := cfg.dialOptions(logger)
	if err != nil {
		return nil, nil, err
	}
	var current atomic.Value // the transport of the live connection
	current.Store("")
	opts = append(opts, cable.WithEventHandler(func(e cable.Event) {
		if e.Kind == cable.EventConnected || e.Kind == cable.EventTransportChanged {
			current.Store(e.Transport)
		}
	}))
	dctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	c, err := cable.Dial(dctx, cfg.url, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, cfg.explainDial(err)
	}
	sub, err := c.Subscribe(dctx, id)
	if err != nil {
		defer c.Close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, cfg.explainSubscribe(err, id, c)
	}
	logger.Info("subscribed", "url", transport.RedactURL(cfg.url), "identifier", id, "transport", current.Load())
	return c, sub, nil
}

// explainDial says why no connection was made.
func (cfg *clientConfig) explainDial(err error) error {
	var (
		he *transport.HandshakeError
		de *cable.DisconnectError
	)
	target := transport.RedactURL(cfg.url)
	if cfg.transport == "sse" || cfg.transport == "longpoll" {
		target = "the bridge " + transport.RedactURL(cfg.bridge)
	}
	switch {
	case errors.Is(err, cable.ErrUnauthorized) || errors.As(err, &he) && he.StatusCode == 401:
		return fmt.Errorf("%s refused the connection as unauthorized: send credentials with --header (e.g. 'Authorization: Bearer …'), or ?token=… in --url; through a bridge, headers other than Cookie and Authorization reach Rails only if the bridge names them in --pass-headers (%w)", target, err)
	case errors.As(err, &de):
		return fmt.Errorf("the server closed the connection: %w", err)
	case errors.As(err, &he) && he.StatusCode == 404:
		return fmt.Errorf("%s answered HTTP 404: not an ActionCable endpoint, or Rails refused the Origin (allowed_request_origins) (%w)", target, err)
	case errors.As(err, &he):
		return fmt.Errorf("%s answered HTTP %d: %w", target, he.StatusCode, err)
	case errors.Is(err, cable.ErrNoWelcome):
		return fmt.Errorf("%s accepted the connection but sent no ActionCable welcome: is it an ActionCable endpoint? (%w)", target, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no connection to %s within --timeout %s; last attempt: %w", target, formatDuration(cfg.timeout), lastCause(err))
	}
	return fmt.Errorf("connecting to %s: %w", target, err)
}

// explainSubscribe says why the subscription was not confirmed.
func (cfg *clientConfig) explainSubscribe(err error, id string, c *cable.Consumer) error {
	switch {
	case errors.Is(err, cable.ErrRejected):
		return fmt.Errorf("the server rejected the subscription %s: the channel refused it (check --channel and --param, and the user's rights) (%w)", id, err)
	case errors.Is(err, context.DeadlineExceeded):
		if c.Connected() {
			return fmt.Errorf("no confirmation of the subscription %s within --timeout %s: Rails answers nothing for an unknown channel class, so check --channel (the Ruby class name, e.g. ChatChannel) and --param", id, formatDuration(cfg.timeout))
		}
		return fmt.Errorf("the connection was lost before the subscription %s was confirmed, and not back within --timeout %s", id, formatDuration(cfg.timeout))
	}
	return fmt.Errorf("subscribing to %s: %w", id, err)
}

// lastCause returns the last failed attempt that cable.Dial joins to its
// context error, or says there was none.
func lastCause(err error) error {
	var causes []error
	if j, ok := errors.Unwrap(err).(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, context.DeadlineExceeded) && !errors.Is(e, context.Canceled) {
				causes = append(causes, e)
			}
		}
	}
	if len(causes) == 0 {
		return errors.New("none finished (does the server accept TCP but never answer?)")
	}
	return errors.Join(causes...)
}

// printer writes payloads: as JSON lines, or on a terminal (text) each
// prefixed with the time it arrived.
type printer struct {
	w    io.Writer
	text bool
	now  func() time.Time
	buf  bytes.Buffer
	raw  []byte
}

func (cfg *clientConfig) printer(w io.Writer) *printer {
	text := cfg.output == "text" || cfg.output == "auto" && cfg.terminal
	return &printer{w: w, text: text, now: time.Now}
}

func (p *printer) print(m protocol.Payload) error {
	var err error
	if p.raw, err = m.AppendJSON(p.raw[:0]); err != nil {
		return err
	}
	p.buf.Reset()
	if p.text {
		p.buf.WriteString(p.now().Format("15:04:05.000"))
		p.buf.WriteString("  ")
	}
	if err := json.Compact(&p.buf, p.raw); err != nil {
		return err
	}
	p.buf.WriteByte('\n')
	_, err = p.w.Write(p.buf.Bytes())
	return err
}

// failed reports a failure to subscribe: 130 when ctx ended (Ctrl-C or
// SIGTERM while connecting), else 1 with the reason.
func failed(ctx context.Context, logger *slog.Logger, what string, err error) int {
	if ctx.Err() != nil {
		logger.Warn("interrupted before " + what)
		return exitInterrupted
	}
	logger.Error(what+" failed", "err", err)
	return exitFailure
}

// runListen is "cableway listen".
func runListen(ctx context.Context, args []string, stdout, stderr io.Writer, env lookupEnv) int {
	cfg, code := clientSetup("listen", args, env, stdout, stderr)
	if code >= 0 {
		return code
	}
	logger := newLogger(stderr, cfg.logLevel)
	c, sub, err := cfg.subscribe(ctx, logger)
	if err != nil {
		return failed(ctx, logger, "subscribing", err)
	}
	defer c.Close()
	out := cfg.printer(stdout)
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case m, ok := <-sub.Messages():
			if !ok {
				if ctx.Err() != nil {
					return exitOK
				}
				logger.Error("the subscription ended", "err", sub.Err())
				return exitFailure
			}
			if err := out.print(m); err != nil {
				if errors.Is(err, protocol.ErrUnsupported) || errors.Is(err, protocol.ErrMalformed) {
					logger.Warn("message not representable as JSON; skipped", "err", err)
					continue
				}
				logger.Error("write", "err", err) // stdout closed: stop
				return exitFailure
			}
		}
	}
}

// runPerform is "cableway perform".
func runPerform(ctx context.Context, args []string, stdout, stderr io.Writer, env lookupEnv) int {
	cfg, code := clientSetup("perform", args, env, stdout, stderr)
	if code >= 0 {
		return code
	}
	logger := newLogger(stderr, cfg.logLevel)
	c, sub, err := cfg.subscribe(ctx, logger)
	if err != nil {
		return failed(ctx, logger, "subscribing", err)
	}
	defer c.Close()
	// --data as sent (its key order kept), unless it names an action of
	// its own, which --action replaces.
	var payload any = json.RawMessage(cfg.data)
	var data map[string]json.RawMessage
	json.Unmarshal([]byte(cfg.data), &data) // checked by parseClientFlags
	if _, has := data["action"]; has {
		delete(data, "action")
		payload = data
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := sub.Perform(pctx, cfg.action, payload); err != nil {
		return failed(ctx, logger, "performing", err)
	}
	logger.Info("performed", "action", cfg.action)

	out := cfg.printer(stdout)
	t := time.NewTimer(cfg.linger)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return exitOK
		case <-ctx.Done():
			return exitOK // the action was sent
		case m, ok := <-sub.Messages():
			if !ok {
				return exitOK
			}
			if err := out.print(m); err != nil {
				logger.Warn("message not printed", "err", err)
			}
		}
	}
}

// clientSetup parses flags; it returns -1 to go on or an exit code.
func clientSetup(name string, args []string, env lookupEnv, stdout, stderr io.Writer) (clientConfig, int) {
	cfg, err := parseClientFlags(name, args, env, stdout)
	cfg.terminal = isTerminal(stdout)
	switch {
	case err == nil:
		if _, err := cfg.identifier(); err != nil {
			usageError(stderr, name, err)
			return cfg, exitUsage
		}
		return cfg, -1
	case errors.Is(err, flag.ErrHelp):
		return cfg, exitOK
	default:
		usageError(stderr, name, err)
		return cfg, exitUsage
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
