// Package version says which build of Starling is running: its version,
// the commit it was built from, the Go release, and the versions of the
// libraries that decide what it can talk to (go-ds-crdt, go-libp2p).
//
// A release sets the version at link time:
//
//	go build -ldflags "-X github.com/starling-sync/starling/internal/version.Version=v1.2.0 \
//	  -X github.com/starling-sync/starling/internal/version.Commit=$(git rev-parse HEAD)" ./cmd/starling
//
// Without it the module version (set by `go install MODULE@VERSION`) and
// the VCS stamp of `go build` in a checkout are used, so a binary built
// from a clone still names its commit.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version and Commit are set with -ldflags -X; empty: taken from the
// build information.
var (
	Version = ""
	Commit  = ""
)

// Modules whose versions Info reports: they set the wire formats.
var reported = []string{
	"github.com/ipfs/go-ds-crdt",
	"github.com/libp2p/go-libp2p",
	"github.com/libp2p/go-libp2p-pubsub",
	"github.com/urfave/cli/v2",
}

// Info describes the running build.
type Info struct {
	// Version is the release ("v1.2.0"), the module's pseudo-version, or
	// "devel" for a build from a checkout without -X.
	Version string `json:"version"`
	// Commit is the VCS revision ("" when unknown); Modified, that the
	// checkout had uncommitted changes.
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	// Deps maps module paths to the versions built in.
	Deps map[string]string `json:"deps,omitempty"`
}

// Get returns the running build's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, Version, Commit)
}

// String is the short form used in status and cluster peers: the
// version, and for a devel build the commit's first 12 characters (a
// release names itself; a pseudo-version holds its commit already).
func (i Info) String() string {
	s := i.Version
	if i.Commit != "" && s == "devel" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += "+" + c
		if i.Modified {
			s += ".dirty"
		}
	}
	return s
}

// fromBuildInfo builds Info; ver and commit (from -X) win over bi.
func fromBuildInfo(bi *debug.BuildInfo, ver, commit string) Info {
	i := Info{Version: ver, Commit: commit, GoVersion: runtime.Version()}
	if bi == nil {
		if i.Version == "" {
			i.Version = "devel"
		}
		return i
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		i.Version = bi.Main.Version
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if i.Commit == "" {
				i.Commit = s.Value
			}
		case "vcs.modified":
			if commit == "" {
				i.Modified = s.Value == "true"
			}
		}
	}
	for _, d := range bi.Deps {
		for _, r := range reported {
			if d.Path == r {
				if i.Deps == nil {
					i.Deps = make(map[string]string)
				}
				v := d.Version
				if d.Replace != nil {
					v = d.Replace.Version + " (replaces " + d.Version + ")"
				}
				i.Deps[r] = v
			}
		}
	}
	return i
}
