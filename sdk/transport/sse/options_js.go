//go:build js

package sse

import "github.com/cableway/cableway/sdk/transport/internal/bridgeconn"

type options struct {
	maxFrame int
}

func (o *options) doer() bridgeconn.Doer { return bridgeconn.FetchDoer{} }

func (o *options) downstream() bridgeconn.Downstream { return bridgeconn.SSE{MaxFrame: o.maxFrame} }
