//go:build !js

package bridgeconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxResponse bounds a response body read by HTTPDoer.
const maxResponse = 16 << 20

// HTTPDoer is the native Doer, on a *http.Client.
type HTTPDoer struct {
	Client *http.Client // nil: a client with no overall timeout
}

// Do performs one request.
func (d HTTPDoer) Do(ctx context.Context, method, url string, header map[string][]string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[http.CanonicalHeaderKey(k)] = v
	}
	client := d.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errCutShort, err)
	}
	if len(b) > maxResponse {
		return 0, nil, errors.New("bridge: response too large")
	}
	return resp.StatusCode, b, nil
}
