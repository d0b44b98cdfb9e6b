package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/starling-sync/starling", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/ipfs/go-ds-crdt", Version: "v0.6.8"},
			{Path: "github.com/libp2p/go-libp2p", Version: "v0.51.0"},
			{Path: "github.com/other/thing", Version: "v1.0.0"},
		},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}},
	}
	tests := []struct {
		name, ver, commit string
		want              string // String()
		wantCommit        string
	}{
		{"checkout", "", "", "devel+0123456789ab.dirty", "0123456789abcdef0123"},
		{"ldflags", "v1.2.0", "feedface", "v1.2.0", "feedface"},
		{"ldflags version only", "v1.2.0", "", "v1.2.0", "0123456789abcdef0123"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := fromBuildInfo(bi, tt.ver, tt.commit)
			if got := i.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if i.Commit != tt.wantCommit {
				t.Errorf("Commit = %q, want %q", i.Commit, tt.wantCommit)
			}
			if i.GoVersion != "go1.26.0" {
				t.Errorf("GoVersion = %q", i.GoVersion)
			}
			if i.Deps["github.com/ipfs/go-ds-crdt"] != "v0.6.8" || i.Deps["github.com/libp2p/go-libp2p"] != "v0.51.0" {
				t.Errorf("Deps = %v", i.Deps)
			}
			if _, ok := i.Deps["github.com/other/thing"]; ok {
				t.Errorf("Deps has an unreported module: %v", i.Deps)
			}
		})
	}
	// go install MODULE@v1.3.0 stamps the module version.
	bi.Main.Version = "v1.3.0"
	if got := fromBuildInfo(bi, "", "").Version; got != "v1.3.0" {
		t.Errorf("module version: got %q", got)
	}
	if got := fromBuildInfo(nil, "", "").Version; got != "devel" {
		t.Errorf("no build info: got %q", got)
	}
}
