package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestStoreFlags: --store takes redis:// and rediss:// URLs only (or
// nothing: memory), and says which flag is wrong; its password is not
// echoed; --lease has a floor; the environment sets them too.
func TestStoreFlags(t *testing.T) {
	cfg, err := parseBridgeFlags([]string{"--store", "redis://127.0.0.1:6379/2", "--node", "b1", "--lease", "2s"}, mapEnv(nil), io.Discard)
	if err != nil || cfg.store.url != "redis://127.0.0.1:6379/2" || cfg.store.node != "b1" || cfg.store.lease != 2*time.Second {
		t.Fatalf("parse: %+v, %v", cfg.store, err)
	}
	cfg, err = parseBridgeFlags(nil, mapEnv(map[string]string{"CABLEWAY_STORE": "rediss://h:6380/0"}), io.Discard)
	if err != nil || cfg.store.url != "rediss://h:6380/0" {
		t.Fatalf("from the environment: %+v, %v", cfg.store, err)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "http://h:1"}, "--store"},
		{[]string{"--store", "redis://"}, "--store"},
		{[]string{"--store", "memcache://user:secret@h:1"}, "--store"},
		{[]string{"--store", "redis://h:1/0", "--lease", "10ms"}, "--lease"},
	} {
		_, err := parseBridgeFlags(bad.args, mapEnv(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%v: err = %v, want one naming %s without the password", bad.args, err, bad.want)
		}
	}
}
