//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/cableway/cableway/server/bridge"
)

// serveBridge is -serve-bridge: server/bridge at its defaults (as
// "cableway bridge" without flags, minus /metrics; queue > 0 sets the
// queue's frame bound as --queue-size does), logging at info to
// stderr like the binary, plus two routes for the benchmark:
//
//	POST /bench/cpuprofile/start   start a CPU profile in memory
//	POST /bench/cpuprofile/stop    stop it and answer the profile
//	GET  /bench/allocs             the allocation profile so far
//
// The cableway binary has no profiling endpoint; this is how the benchmark
// gets a CPU profile of the bridge in a process of its own.
func serveBridge(ctx context.Context, listen, upstream string, queue int, stderr io.Writer) error {
	if upstream == "" {
		return errors.New("-upstream is required")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	b := bridge.New(upstream, bridge.WithLogger(logger), bridge.WithQueue(queue, 0))
	var (
		mu  sync.Mutex
		buf *bytes.Buffer
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /bench/cpuprofile/start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if buf != nil {
			http.Error(w, "a profile is running", http.StatusConflict)
			return
		}
		buf = new(bytes.Buffer)
		if err := pprof.StartCPUProfile(buf); err != nil {
			buf = nil
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /bench/cpuprofile/stop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if buf == nil {
			http.Error(w, "no profile is running", http.StatusConflict)
			return
		}
		pprof.StopCPUProfile()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(buf.Bytes())
		buf = nil
	})
	mux.HandleFunc("GET /bench/allocs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		pprof.Lookup("allocs").WriteTo(w, 0)
	})
	mux.Handle("/", b)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("bridge listening", "addr", ln.Addr().String())
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.Close(sctx)
	srv.Close()
	return nil
}

func profileStart(b *bridgeProc) error {
	resp, err := http.Post(b.base+"/bench/cpuprofile/start", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("start CPU profile: HTTP %d", resp.StatusCode)
	}
	return nil
}

// profileStop fetches the profile into path and prints its top functions
// (go tool pprof -top) to w.
func profileStop(b *bridgeProc, path string, w io.Writer) error {
	resp, err := http.Post(b.base+"/bench/cpuprofile/stop", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stop CPU profile: HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	for _, mode := range []string{"-top", "-top -cum"} {
		args := append([]string{"tool", "pprof"}, append(strings.Fields(mode), "-nodecount=30", path)...)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof: %w\n%s", err, out)
		}
		fmt.Fprintf(w, "== %s (%s)\n%s\n", path, mode, out)
	}
	return nil
}

// fetchAllocs saves the bridge's allocation profile so far to path (go
// tool pprof -diff_base of two says what a phase allocated).
func fetchAllocs(b *bridgeProc, path string) error {
	resp, err := http.Get(b.base + "/bench/allocs")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("allocation profile: HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
