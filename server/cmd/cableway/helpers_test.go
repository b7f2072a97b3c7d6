package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	ws "github.com/coder/websocket"
)

// output is an io.Writer that tests can wait on.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output matches re and returns the submatches of
// the first match, failing the test at ctx's deadline.
func (o *output) waitFor(t *testing.T, ctx context.Context, re *regexp.Regexp) []string {
	t.Helper()
	for {
		o.mu.Lock()
		m := re.FindStringSubmatch(o.buf.String())
		ch := o.changed
		o.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("output never matched %v; got:\n%s", re, o.String())
		}
	}
}

// proc is one run of the command in this process.
type proc struct {
	stdout, stderr *output
	done           chan int // receives the exit code
	cancel         context.CancelFunc
}

// start runs the command with args and an environment of env only (the
// machine's CABLEWAY_* variables do not leak in). Cancelling its context
// is the SIGTERM path; the run must have ended when the test ends.
func start(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{stdout: newOutput(), stderr: newOutput(), done: make(chan int, 1), cancel: cancel}
	go func() {
		p.done <- runWithEnv(ctx, args, p.stdout, p.stderr, mapEnv(env))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Errorf("%v did not stop within 30 s of cancellation", args)
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", args[0], p.stderr.String())
		}
	})
	return p
}

// wait returns the exit code, failing the test at ctx's deadline.
func (p *proc) wait(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case code := <-p.done:
		p.done <- code // for Cleanup
		return code
	case <-ctx.Done():
		t.Fatalf("no exit before the deadline; stderr:\n%s", p.stderr.String())
		return -1
	}
}

var listeningRE = regexp.MustCompile(`msg="bridge listening" addr=\S+ url=(\S+)`)

// startBridge runs "cableway bridge" on a free port and returns its URL.
func startBridge(t *testing.T, ctx context.Context, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, nil, append([]string{"bridge", "--listen", "127.0.0.1:0"}, args...)...)
	return p, p.stderr.waitFor(t, ctx, listeningRE)[1]
}

func mapEnv(m map[string]string) lookupEnv {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// readSSE parses events from r onto the returned channel, which is
// closed when the stream ends.
func readSSE(r io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				if len(data) > 0 || ev.event != "" {
					ev.data = strings.Join(data, "\n")
					ch <- ev
				}
				ev, data = sseEvent{}, nil
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.id = value
			case "event":
				ev.event = value
			case "data":
				data = append(data, value)
			}
		}
	}()
	return ch
}

// nextEvent returns the next event, or ok=false when the stream ended.
func nextEvent(t *testing.T, ctx context.Context, ch <-chan sseEvent) (sseEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-ctx.Done():
		t.Fatal("no SSE event before the deadline")
		return sseEvent{}, false
	}
}

// testCert writes a self-signed CA certificate for 127.0.0.1 and
// localhost, and its key, as PEM files in a temporary directory.
func testCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cableway test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// fakeCable is a minimal ActionCable endpoint: it welcomes every
// connection and then only reads. It is enough to open bridge sessions
// without Rails.
func fakeCable(w http.ResponseWriter, r *http.Request) {
	c, err := ws.Accept(w, r, &ws.AcceptOptions{Subprotocols: []string{"actioncable-v1-json"}, InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	if err := c.Write(r.Context(), ws.MessageText, []byte(`{"type":"welcome"}`)); err != nil {
		return
	}
	for {
		if _, _, err := c.Read(r.Context()); err != nil {
			return
		}
	}
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, ctx context.Context, client *http.Client, method, url string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, string(b)
}

// noKeepAlive is an HTTP client whose connections end with each request,
// so no idle connection outlives a test.
func noKeepAlive() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}
