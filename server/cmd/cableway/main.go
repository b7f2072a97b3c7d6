// Command cableway is the Cableway binary:
//
//	cableway bridge [flags]    serve ActionCable over SSE, long-polling and WebSocket (server/PROTOCOL.md)
//	cableway listen [flags]    subscribe to a channel and print each message as a JSON line
//	cableway perform [flags]   subscribe, perform one action, exit
//
// Run "cableway COMMAND --help" for the flags of each.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad flags or arguments
	// exitInterrupted: Ctrl-C or SIGTERM ended a listen or perform before it
	// had subscribed (or performed); as a shell reports SIGINT.
	exitInterrupted = 130
)

func main() {
	// SIGINT and SIGTERM end ctx: the bridge drains and exits, a listener
	// stops. A second signal kills the process the default way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const mainUsage = `Usage: cableway COMMAND [flags]

Commands:
  bridge    serve ActionCable over Server-Sent Events, long-polling and WebSocket
            in front of a Rails ActionCable endpoint (see server/PROTOCOL.md)
  listen    subscribe to a channel and print each message as one JSON line
  perform   subscribe to a channel, perform one action and exit
  version   print the version

Run "cableway COMMAND --help" for a command's flags, exit codes and examples.

Examples:
  cableway bridge --upstream ws://127.0.0.1:3000/cable --listen 127.0.0.1:8080
  cableway listen --url 'ws://127.0.0.1:3000/cable?token=secret-alice' --channel ChatChannel --param room=lobby
  cableway listen --url 'ws://127.0.0.1:3000/cable?token=secret-alice' --channel ChatChannel --param room=lobby \
      --bridge http://127.0.0.1:8080 --transport sse
  cableway perform --url 'ws://127.0.0.1:3000/cable?token=secret-bob' --channel ChatChannel --param room=lobby \
      --action speak --data '{"text":"hi"}'

Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted before
subscribing (listen and perform).
`

// run is the whole program: it returns the exit code. ctx ending is the
// signal to stop.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWithEnv(ctx, args, stdout, stderr, os.LookupEnv)
}

func runWithEnv(ctx context.Context, args []string, stdout, stderr io.Writer, env lookupEnv) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return exitUsage
	}
	var cmd func(context.Context, []string, io.Writer, io.Writer, lookupEnv) int
	switch args[0] {
	case "bridge":
		cmd = runBridge
	case "listen":
		cmd = runListen
	case "perform":
		cmd = runPerform
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "cableway", version())
		return exitOK
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return runWithEnv(ctx, []string{args[1], "--help"}, stdout, stderr, env)
		}
		fmt.Fprint(stdout, mainUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "cableway: unknown command %q\n\n%s", args[0], mainUsage)
		return exitUsage
	}
	return cmd(ctx, args[1:], stdout, stderr, env)
}

func usageError(stderr io.Writer, name string, err error) {
	fmt.Fprintf(stderr, "cableway %s: %v\nRun \"cableway %s --help\" for usage.\n", name, err, name)
}

// newLogger logs text lines to w at level and above.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "(devel)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
