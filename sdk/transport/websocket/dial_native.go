//go:build !js

package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	ws "github.com/coder/websocket"

	"github.com/cableway/cableway/sdk/transport"
)

type options struct {
	readLimit  int64
	httpClient *http.Client
	compress   ws.CompressionMode
	threshold  int
}

// WithHTTPClient dials through client: its Transport's proxy, TLS
// configuration and dialer apply. The client's Timeout must be zero (it
// would cut live connections); a Dial's context bounds the handshake.
// Not available under GOOS=js, where the browser dials.
func WithHTTPClient(client *http.Client) Option {
	return func(o *options) { o.httpClient = client }
}

// WithCompression offers permessage-deflate. ws.CompressionNoContextTakeover
// costs little memory; ws.CompressionContextTakeover compresses small,
// similar frames (typical for ActionCable) much better at ~32 KiB more per
// connection. threshold is the smallest frame compressed, 0 for coder's
// default. Not available under GOOS=js, where the browser decides.
func WithCompression(mode ws.CompressionMode, threshold int) Option {
	return func(o *options) { o.compress, o.threshold = mode, threshold }
}

func (t *Transport) dial(ctx context.Context, req *transport.Request) (transport.Conn, error) {
	c, stream, err := t.dialWS(ctx, req)
	if err != nil {
		return nil, err
	}
	// coder/websocket's limit closes with 1009 on the byte after it; ours
	// reports the error first, so give it one byte of room.
	c.SetReadLimit(t.o.readLimit + 1)
	return &conn{ws: c, stream: stream, limit: t.o.readLimit, binary: isBinary(c.Subprotocol())}, nil
}

func (t *Transport) dialWS(ctx context.Context, req *transport.Request) (*ws.Conn, io.Closer, error) {
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		ck := http.CanonicalHeaderKey(k)
		h[ck] = append(h[ck], v...) // "cookie" and "Cookie" both count
	}
	if c := h["Cookie"]; len(c) > 1 {
		// One Cookie line, as RFC 6265 §5.4 asks of clients.
		h["Cookie"] = []string{strings.Join(c, "; ")}
	}
	if h.Get("Origin") == "" {
		if o := originFor(req.URL); o != "" {
			h.Set("Origin", o)
		}
	}
	client := t.o.httpClient
	var base http.RoundTripper
	if client == nil {
		client, base = http.DefaultClient, directUpgrade{}
	}
	hooked := *client
	hook := &upgradeHook{base: hooked.Transport, offered: req.Subprotocols}
	if base != nil {
		hook.base = base
	}
	if hook.base == nil {
		hook.base = http.DefaultTransport
	}
	hooked.Transport = hook
	c, resp, err := ws.Dial(ctx, req.URL, &ws.DialOptions{
		HTTPClient:           &hooked,
		HTTPHeader:           h,
		Subprotocols:         req.Subprotocols,
		CompressionMode:      t.o.compress,
		CompressionThreshold: t.o.threshold,
	})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
			if serr := checkSubprotocol(req.Subprotocols, resp.Header.Get("Sec-WebSocket-Protocol")); serr != nil {
				return nil, nil, serr
			}
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, nil, &transport.HandshakeError{StatusCode: resp.StatusCode, Err: err}
		}
		return nil, nil, redactURLError(err)
	}
	return c, hook.stream, nil
}

// upgradeHook wraps the HTTP client's RoundTripper for one dial. It refuses
// an unoffered subprotocol as soon as the 101 arrives (coder/websocket
// would first wait up to 3 s for the body of the failed handshake), and it
// keeps the upgraded stream, so that Close can cut a connection whose peer
// never answers the close frame (coder/websocket waits 5 s for it).
type upgradeHook struct {
	base    http.RoundTripper
	offered []string
	stream  io.Closer
}

func (h *upgradeHook) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, err
	}
	if err := checkSubprotocol(h.offered, resp.Header.Get("Sec-WebSocket-Protocol")); err != nil {
		resp.Body.Close()
		return nil, err
	}
	h.stream = resp.Body
	return resp, nil
}

// redactURLError rewrites the *url.Error that net/http puts in dial errors
// (Get "http://host/cable?token=…": connection refused), whose URL
// keeps the query, where tokens travel.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return &url.Error{Op: ue.Op, URL: transport.RedactURL(ue.URL), Err: ue.Err}
}

// directUpgrade is the RoundTripper of a dial without a custom HTTP
// client: it dials the server and writes the handshake request on the new
// connection itself, with the context's deadline, instead of going through
// http.DefaultTransport, whose connection pool and per-connection reader
// and writer goroutines a connection that is upgraded at once never uses
// (the bridge dials one per session). Requests that the environment sends
// through a proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) still go through
// http.DefaultTransport, and so does anything but http and https.
type directUpgrade struct{}

func (directUpgrade) RoundTrip(r *http.Request) (*http.Response, error) {
	secure := r.URL.Scheme == "https"
	if !secure && r.URL.Scheme != "http" {
		return http.DefaultTransport.RoundTrip(r)
	}
	if p, err := http.ProxyFromEnvironment(r); err != nil || p != nil {
		return http.DefaultTransport.RoundTrip(r)
	}
	host, port := r.URL.Hostname(), r.URL.Port()
	if port == "" {
		port = "80"
		if secure {
			port = "443"
		}
	}
	ctx := r.Context()
	// No TCP keep-alive probes: ActionCable pings every 3 s and the
	// consumer drops a connection that goes stale, which the probes (and
	// the four socket options that set them, on every dial) cannot better.
	d := net.Dialer{KeepAlive: -1}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	// The context bounds the handshake: its end unblocks the I/O below.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		nc.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	if secure {
		tc := tls.Client(nc, &tls.Config{ServerName: host, NextProtos: []string{"http/1.1"}})
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		nc = tc
	}
	// Request.Write wraps a writer that is not an io.ByteWriter in a new
	// 4 KiB bufio.Writer; a bytes.Buffer is one, sized to the request.
	req := bytes.NewBuffer(make([]byte, 0, 512))
	if err := r.Write(req); err != nil {
		return fail(err)
	}
	if _, err := nc.Write(req.Bytes()); err != nil {
		return fail(err)
	}
	// The answer's head is a few hundred bytes; the buffer is let go once
	// drained (see upgraded).
	br := bufio.NewReaderSize(nc, 1<<10)
	resp, err := http.ReadResponse(br, r)
	if err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(context.Cause(ctx)) // the deadline may have cut the response short
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &upgraded{br: br, Conn: nc}
	} else {
		resp.Body = &closeBoth{ReadCloser: resp.Body, c: nc}
	}
	return resp, nil
}

// upgraded is the stream of an upgraded connection: what the response's
// reader holds beyond the response, then the connection. The reader is let
// go once drained, so that an idle connection does not keep its buffer.
type upgraded struct {
	br *bufio.Reader // nil once drained
	net.Conn
}

func (u *upgraded) Read(p []byte) (int, error) {
	if u.br != nil {
		if u.br.Buffered() > 0 {
			return u.br.Read(p)
		}
		u.br = nil
	}
	return u.Conn.Read(p)
}

// closeBoth is the body of a refused handshake: closing it closes the
// connection.
type closeBoth struct {
	io.ReadCloser
	c net.Conn
}

func (b *closeBoth) Close() error {
	b.ReadCloser.Close()
	return b.c.Close()
}
