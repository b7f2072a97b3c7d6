module github.com/cableway/cableway

go 1.26.0

require (
	github.com/coder/websocket v1.8.15
	github.com/r3labs/sse/v2 v2.10.0
	github.com/vmihailenco/msgpack/v5 v5.4.1
	go.uber.org/goleak v1.3.0
	gopkg.in/cenkalti/backoff.v1 v1.1.0
)

require (
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	golang.org/x/net v0.59.0 // indirect
)
