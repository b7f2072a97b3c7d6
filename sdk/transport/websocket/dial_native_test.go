//go:build !js

package websocket_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/cableway/cableway/sdk/transport/websocket"
)

// A server may send its first frames in the same segment as the 101 (an
// ActionCable server's welcome often is): the bytes the dial read past the
// handshake answer are the connection's first, and none is lost.
func TestDialKeepsFramesSentWithTheHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	frames := []string{`{"type":"welcome"}`, `{"type":"ping","message":1}`}
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		out := []byte("HTTP/1.1 101 Switching Protocols\r\n" +
			"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\n" +
			"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n")
		for _, f := range frames {
			out = append(out, 0x81, byte(len(f))) // FIN, text, unmasked, short length
			out = append(out, f...)
		}
		c.Write(out) // one write: the frames ride with the 101
		c.Read(make([]byte, 1))
	})
	c, err := websocket.New().Dial(testCtx(t), jsonReq("ws://"+ln.Addr().String()+"/cable"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, want := range frames {
		got, err := c.ReadFrame(testCtx(t), nil)
		if err != nil || string(got) != want {
			t.Fatalf("ReadFrame = %q, %v; want %q", got, err, want)
		}
	}
}
