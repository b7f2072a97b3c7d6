package cable_test

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestWebSocketOnlyLinks: a program that dials Rails over WebSocket only
// (testdata/wsonly) links neither the bridge transports nor what they
// use: package cable names the fallback only through WithTransport.
func TestWebSocketOnlyLinks(t *testing.T) {
	if runtime.GOOS == "js" {
		t.Skip("no go command under GOOS=js")
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	out, err := exec.CommandContext(t.Context(), gocmd, "list", "-deps", "./testdata/wsonly").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !contains(deps, "github.com/cableway/cableway/sdk/transport/websocket") {
		t.Fatalf("go list -deps gave %d packages, without the WebSocket transport:\n%s", len(deps), out)
	}
	for _, d := range deps {
		for _, banned := range []string{
			"github.com/r3labs/sse",
			"gopkg.in/cenkalti/backoff",
			"github.com/cenkalti/backoff",
			"golang.org/x/net",
			"github.com/cableway/cableway/sdk/transport/fallback",
			"github.com/cableway/cableway/sdk/transport/sse",
			"github.com/cableway/cableway/sdk/transport/longpoll",
			"github.com/cableway/cableway/sdk/transport/internal/bridgeconn",
		} {
			if d == banned || strings.HasPrefix(d, banned+"/") || strings.HasPrefix(d, banned+".") {
				t.Errorf("a WebSocket-only program links %s", d)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestExamplesUsePublicAPI: the examples can be copied out of the module,
// so they import no internal package.
func TestExamplesUsePublicAPI(t *testing.T) {
	files, err := filepath.Glob("example*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example files: %v", err)
	}
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); strings.Contains("/"+path+"/", "/internal/") {
				t.Errorf("%s imports %s, which users cannot", name, path)
			}
		}
	}
}
