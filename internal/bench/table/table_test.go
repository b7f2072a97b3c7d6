package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-rounds", "0"},
		{"-n", "1"},
		{"-rate", "0"},
		{"-rate", "2e6"},
		{"-echoes", "-1"},
		{"-nonsense"},
		{"extra"},
	} {
		var out, errs bytes.Buffer
		if code := run(args, &out, &errs); code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage)", args, code)
		}
		if out.Len() > 0 || errs.Len() == 0 {
			t.Errorf("%q: stdout %q, stderr %q; want the complaint on stderr only", args, out.String(), errs.String())
		}
	}
	var out, errs bytes.Buffer
	if code := run([]string{"-h"}, &out, &errs); code != 0 || !strings.Contains(errs.String(), "-rounds") {
		t.Errorf("-h: exit %d, %q", code, errs.String())
	}
	out.Reset()
	errs.Reset()
	if code := run([]string{"-root", t.TempDir()}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "not the repository root") {
		t.Errorf("-root elsewhere: exit %d, %q", code, errs.String())
	}
}

// TestSmallRun: one small round of everything but the browser, against
// the real feeder, bridge, Go clients and Node's official client.
func TestSmallRun(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed")
	}
	root, _ := filepath.Abs("../../..")
	if _, err := os.Stat(filepath.Join(root, "node_modules", "@rails", "actioncable")); err != nil {
		t.Skip("npm dev dependencies missing (npm ci)")
	}
	var out, errs bytes.Buffer
	code := run([]string{"-root", root, "-rounds", "1", "-n", "3000", "-paced-n", "200", "-rate", "2000", "-browser=false", "-hooks=false"}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	table := out.String()
	for _, want := range []string{
		"## `make bench` — " + time.Now().UTC().Format("2006-01-02"),
		"| raw coder/websocket, no decode (the limit) | ",
		"| **Cableway `sdk/cable`, JSON, `msg.Decode` into a struct** | ",
		"| `@rails/actioncable` 8.",
		" | 1.00× | ", // the official client against itself
		"| **added by the bridge** | ",
		"Paced: 200 messages at 2000/s",
		"Peak RSS: the client process's own peak (`VmHWM`",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "failed") || strings.Contains(table, "| — |") {
		t.Errorf("a figure is missing:\n%s", table)
	}
}

func TestHooks(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "js", "bench"), 0o755)
	os.WriteFile(filepath.Join(root, "js", "bench", "startup.mjs"), []byte(`console.log("cold 123 ms, feed " + process.env.CABLEWAY_BENCH_FEED + ", rounds " + process.env.BENCH_ROUNDS)`), 0o644)
	os.WriteFile(filepath.Join(root, "js", "bench", "rtt.mjs"), []byte(`process.exit(3)`), 0o644)
	hooks := runHooks(root, node, "ws://feed", 4, time.Minute, t.Logf)
	if len(hooks) != 2 {
		t.Fatalf("%d hooks ran, want 2", len(hooks))
	}
	if h := hooks[0]; h.script != "startup.mjs" || h.err != nil || strings.TrimSpace(h.out) != "cold 123 ms, feed ws://feed, rounds 4" {
		t.Errorf("startup.mjs: %+v", h)
	}
	if h := hooks[1]; h.script != "rtt.mjs" || h.err == nil {
		t.Errorf("rtt.mjs failing: %+v, want its error", h)
	}
	os.Remove(filepath.Join(root, "js", "bench", "rtt.mjs"))
	if hooks := runHooks(root, node, "ws://feed", 4, time.Minute, t.Logf); len(hooks) != 1 {
		t.Errorf("without rtt.mjs: %d hooks ran, want 1", len(hooks))
	}
}
