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
	"strings"
	"time"

	"github.com/cableway/cableway/sdk/cable"
	"github.com/cableway/cableway/sdk/protocol"
)

// clientConfig is what the listen and perform commands share.
type clientConfig struct {
	url      string
	channel  string
	params   []string // "key=value" or "key:=json", in order
	headers  []string // "Name: value"
	msgpack  bool
	timeout  time.Duration
	logLevel slog.Level

	// perform only
	action string
	data   string
	linger time.Duration
}

func defaultClientConfig() clientConfig {
	return clientConfig{timeout: 10 * time.Second, logLevel: slog.LevelInfo, data: "{}", linger: 500 * time.Millisecond}
}

const listenIntro = `Connects to an ActionCable endpoint (Rails itself, or a Cableway bridge's
plain WebSocket proxy on its root URL), subscribes to one channel and prints
each message it receives as one line of JSON on stdout until interrupted
(Ctrl-C). Reconnects and resubscribes by itself; status goes to stderr.
Exits 0 when interrupted, 1 when the server refuses the connection or the
subscription.`

const performIntro = `Connects to an ActionCable endpoint, subscribes to one channel, performs one
action and exits 0 once it was sent (ActionCable sends no acknowledgement).
Messages the subscription receives meanwhile are printed as JSON lines on
stdout. The socket stays open --linger after the action, since ActionCable
handles an action and a closing socket concurrently and could drop the
action otherwise.`

func clientCommand(name, intro string, cfg *clientConfig) *command {
	c := newCommand(name, intro)
	c.add(stringValue{&cfg.url}, "url", "URL", "ActionCable endpoint, ws:// or wss://, e.g. ws://127.0.0.1:3000/cable", true)
	c.add(stringValue{&cfg.channel}, "channel", "NAME", "channel class, e.g. ChatChannel", false)
	c.add(repeatedValue{&cfg.params}, "param", "KEY=VALUE", "identifier param, repeatable, order kept; KEY:=JSON for a non-string value (id:=42)", false)
	c.add(repeatedValue{&cfg.headers}, "header", "'NAME: VALUE'", "handshake header, repeatable, e.g. 'Authorization: Bearer …'", false)
	c.envReadByHand("CABLEWAY_HEADER: one header a line, keeps secrets out of ps")
	c.add(boolValue{&cfg.msgpack}, "msgpack", "", "speak actioncable-v1-msgpack (a Cableway bridge offers it; Rails does not)", true)
	c.add(durationValue{&cfg.timeout}, "timeout", "DURATION", "deadline to connect and get the subscription confirmed", true)
	c.add(levelValue{&cfg.logLevel}, "log-level", "LEVEL", "debug, info, warn or error; logs go to stderr", true)
	if name == "perform" {
		c.add(stringValue{&cfg.action}, "action", "NAME", "action to perform, e.g. speak", false)
		c.add(stringValue{&cfg.data}, "data", "JSON", "the action's data, a JSON object; \"action\" is added", false)
		c.add(durationValue{&cfg.linger}, "linger", "DURATION", "how long to keep the socket open after performing", true)
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
	case !strings.HasPrefix(cfg.url, "ws://") && !strings.HasPrefix(cfg.url, "wss://"):
		return cfg, fmt.Errorf("--url %q: want a ws:// or wss:// URL", redactURL(cfg.url))
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
// caller must Close the consumer.
func (cfg *clientConfig) subscribe(ctx context.Context, logger *slog.Logger) (*cable.Consumer, *cable.Subscription, error) {
	id, err := cfg.identifier()
	if err != nil {
		return nil, nil, err
	}
	opts, err := cfg.dialOptions(logger)
	if err != nil {
		return nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	c, err := cable.Dial(dctx, cfg.url, opts...)
	if err != nil {
		return nil, nil, err
	}
	sub, err := c.Subscribe(dctx, id)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	logger.Info("subscribed", "url", redactURL(cfg.url), "identifier", id)
	return c, sub, nil
}

// printer writes payloads as JSON lines.
type printer struct {
	w   io.Writer
	buf bytes.Buffer
	raw []byte
}

func (p *printer) print(m protocol.Payload) error {
	var err error
	if p.raw, err = m.AppendJSON(p.raw[:0]); err != nil {
		return err
	}
	p.buf.Reset()
	if err := json.Compact(&p.buf, p.raw); err != nil {
		return err
	}
	p.buf.WriteByte('\n')
	_, err = p.w.Write(p.buf.Bytes())
	return err
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
		if ctx.Err() != nil {
			return exitOK // interrupted while connecting
		}
		logger.Error("listen failed", "err", err)
		return exitFailure
	}
	defer c.Close()
	out := &printer{w: stdout}
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case m, ok := <-sub.Messages():
			if !ok {
				if ctx.Err() != nil {
					return exitOK
				}
				logger.Error("subscription ended", "err", sub.Err())
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
		logger.Error("perform failed", "err", err)
		return exitFailure
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
		logger.Error("perform failed", "err", err)
		return exitFailure
	}
	logger.Info("performed", "action", cfg.action)

	out := &printer{w: stdout}
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
