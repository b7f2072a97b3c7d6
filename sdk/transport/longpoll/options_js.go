//go:build js

package longpoll

import (
	"time"

	"github.com/cableway/cableway/sdk/transport/internal/bridgeconn"
)

type options struct {
	timeout time.Duration
}

func (o *options) doer() bridgeconn.Doer { return bridgeconn.FetchDoer{} }
