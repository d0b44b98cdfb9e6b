package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/starling-sync/starling/internal/version"
)

func TestVersionCommand(t *testing.T) {
	want := version.Get()
	r := runApp(t, "", "version")
	if r.code != 0 {
		t.Fatalf("version: %+v", r)
	}
	for _, s := range []string{"version", want.Version, want.GoVersion, "github.com/ipfs/go-ds-crdt", "github.com/libp2p/go-libp2p"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("version lacks %q:\n%s", s, r.stdout)
		}
	}
	r = runApp(t, "", "version", "--json")
	var got version.Info
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil {
		t.Fatalf("version --json: %+v", r)
	}
	if got.Version != want.Version || got.GoVersion != want.GoVersion || got.Deps["github.com/ipfs/go-ds-crdt"] == "" {
		t.Errorf("version --json = %+v, want %+v", got, want)
	}
	if r := runApp(t, "", "version", "extra"); r.code != exitUsage {
		t.Errorf("version extra: exit %d, want %d", r.code, exitUsage)
	}
}
