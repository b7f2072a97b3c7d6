//go:build !js

package bridgeconn

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cableway/cableway/sdk/transport"
)

// CreateFor passes the ActionCable URL's query (browsers' tokens) on to
// POST /sessions, which forwards it to Rails.
func TestCreateForPassesTheQuery(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/bridge/sessions" {
			http.NotFound(w, r)
			return
		}
		got <- r.URL.RawQuery + " " + r.Header.Get("Authorization")
		w.WriteHeader(201)
		w.Write([]byte(`{"sid":"s","token":"t","epoch":1}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct{ url, want string }{
		{"wss://app.example/cable?token=secret&x=1", "token=secret&x=1 Bearer b"},
		{"wss://app.example/cable", " Bearer b"},
	} {
		req := &transport.Request{URL: tc.url, Header: map[string][]string{"Authorization": {"Bearer b"}}}
		if _, err := CreateFor(ctx, HTTPDoer{}, srv.URL+"/bridge/", req); err != nil {
			t.Fatal(err)
		}
		if q := <-got; q != tc.want {
			t.Errorf("%s: POST /sessions got %q, want %q", tc.url, q, tc.want)
		}
	}
}
