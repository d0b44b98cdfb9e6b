package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/httpapi"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/p2p"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type result struct {
	code           int
	stdout, stderr string
}

// runApp runs the CLI in-process.
func runApp(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := run(context.Background(), append([]string{"starling"}, args...), strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestUsageErrorsExit2(t *testing.T) {
	d := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		mention []string
	}{
		{"unknown global flag", []string{"--bogus"}, []string{"-bogus", "starling --help"}},
		{"unknown command flag", []string{"init", "--bogus"}, []string{"-bogus", "starling init --help"}},
		{"unknown subcommand flag", []string{"cluster", "add", "--bogus"}, []string{"-bogus", "starling cluster add --help"}},
		{"unknown command", []string{"frobnicate"}, []string{`"frobnicate"`}},
		{"init without data", []string{"init"}, []string{"--data"}},
		{"run without data", []string{"run"}, []string{"--data"}},
		{"local without data", []string{"local"}, []string{"--data"}},
		{"init with an argument", []string{"init", "--data", d, "extra"}, []string{"too many"}},
		{"get without key", []string{"kv", "get", "--data", d}, []string{"missing KEY"}},
		{"put without value", []string{"kv", "put", "--data", d, "k"}, []string{"missing KEY VALUE"}},
		{"get with two keys", []string{"kv", "get", "--data", d, "a", "b"}, []string{"too many"}},
		{"unknown flag after argument", []string{"kv", "get", "k", "--dat", d}, []string{"-dat", "did you mean --data?"}},
		{"unknown subcommand", []string{"kv", "gte", "k"}, []string{`"gte"`, "did you mean get?"}},
		{"mistyped command", []string{"stauts"}, []string{`"stauts"`, "did you mean status?"}},
		{"no node named", []string{"kv", "get", "k"}, []string{"--data DIR", "--api"}},
		{"unknown kv subcommand", []string{"kv", "frob"}, []string{`"frob"`, "get, put, del or ls"}},
		{"api without token", []string{"status", "--api", "127.0.0.1:1"}, []string{"--token"}},
		{"bad log level", []string{"--log-level", "loud", "status"}, []string{`"loud"`}},
		{"bad int", []string{"local", "--data", d, "--nodes", "three"}, []string{"three"}},
		{"zero nodes", []string{"local", "--data", d, "--nodes", "0"}, []string{"--nodes 0"}},
		{"overlapping ports", []string{"local", "--data", d, "--base-port", "7500"}, []string{"overlap"}},
		{"demo keys", []string{"demo", "--keys", "0"}, []string{"--keys 0"}},
		{"demo timeout", []string{"demo", "--timeout", "-1s"}, []string{"--timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runApp(t, "", tt.args...)
			if r.code != exitUsage {
				t.Fatalf("exit code %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "starling: ") {
				t.Errorf("stderr should start with 'starling: ': %q", r.stderr)
			}
			for _, m := range tt.mention {
				if !strings.Contains(r.stderr, m) {
					t.Errorf("stderr %q does not mention %q", r.stderr, m)
				}
			}
			if !strings.Contains(r.stderr, "--help") {
				t.Errorf("no hint to --help: %q", r.stderr)
			}
		})
	}
}

func TestInitBadInputExits1AndWritesNothing(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := testutil.PeerID(t).String()
	missingKey := filepath.Join(tmp, "missing.key")
	tests := []struct {
		name    string
		dir     string
		args    []string
		mention []string
	}{
		{"malformed peer", "", []string{"--peer", "/ip4/10.0.0.1/tcp/4001/p2p/" + pid, "--peer", "/ip4/10.0.0.2/tcp/port/p2p/" + pid},
			[]string{"--peer", "/ip4/10.0.0.2/tcp/port"}},
		{"peer without id", "", []string{"--peer", "/ip4/10.0.0.1/tcp/4001"}, []string{"--peer", "/p2p/<peer-id>"}},
		{"malformed listen", "", []string{"--listen", "0.0.0.0:4001"}, []string{"--listen", `"0.0.0.0:4001"`}},
		{"bad env and node id", "", []string{"--env", "Plant 1", "--node-id", "a/b"}, []string{"--env", "--node-id", "2 problems"}},
		{"bad api", "", []string{"--api", "localhost"}, []string{"--api", `"localhost"`}},
		{"missing psk file", "", []string{"--psk-file", missingKey}, []string{"--psk-file", missingKey}},
		{"psk file is a dir", "", []string{"--psk-file", tmp}, []string{"--psk-file", tmp}},
		{"psk and psk-file", "", []string{"--psk", "--psk-file", missingKey}, []string{"--psk-file"}},
		{"quic with psk", "", []string{"--psk", "--listen", "/ip4/0.0.0.0/udp/4001/quic-v1"}, []string{"--listen", "QUIC"}},
		{"bad compact every", "", []string{"--compact-every", "soon"}, []string{"--compact-every", "compact_every", `"soon"`}},
		{"data under a file", filepath.Join(file, "node"), nil, []string{filepath.Join(file, "node"), "--data", "not a directory"}},
		{"data is a file", file, nil, []string{file, "--data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if dir == "" {
				dir = filepath.Join(tmp, "node")
			}
			before := tree(t, tmp)
			for _, cmd := range []string{"init", "run"} {
				r := runApp(t, "", append([]string{cmd, "--data", dir}, tt.args...)...)
				if r.code != 1 {
					t.Fatalf("%s: exit code %d, want 1; stderr %q", cmd, r.code, r.stderr)
				}
				for _, m := range tt.mention {
					if !strings.Contains(r.stderr, m) {
						t.Errorf("%s: stderr %q does not mention %q", cmd, r.stderr, m)
					}
				}
				if after := tree(t, tmp); !slices.Equal(before, after) {
					t.Errorf("%s changed the disk: before %v, after %v", cmd, before, after)
				}
			}
		})
	}
}

// tree lists the paths under dir with their sizes.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d", p, fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("STARLING_PEER", "/ip4/10.0.0.9/tcp/x")
	dir := filepath.Join(t.TempDir(), "node")
	r := runApp(t, "", "init", "--data", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "/ip4/10.0.0.9/tcp/x") || !strings.Contains(r.stderr, "--peer") {
		t.Errorf("STARLING_PEER not used: %+v", r)
	}
	t.Setenv("STARLING_PEER", "")
	if r := runApp(t, "", "init", "--data", dir); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	t.Setenv("STARLING_DATA", dir)
	r = runApp(t, "", "kv", "get", "k")
	if r.code != 1 || !strings.Contains(r.stderr, "starling run --data "+dir) {
		t.Errorf("STARLING_DATA not used: %+v", r)
	}
}

// TestEnvVarsUnambiguous: an environment variable means one thing for
// every command that reads it (STARLING_PEER was a multiaddr for run and
// a peer ID for resync), and flags that destroy or expose data have none
// (STARLING_RECURSIVE=1 made every rm recursive) (issue 17).
func TestEnvVarsUnambiguous(t *testing.T) {
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	noEnv := map[string]bool{flagRecursive: true, flagForce: true, flagOpen: true}
	meaning := map[string]string{} // env var -> flag name and placeholder
	users := map[string]string{}
	check := func(where string, fs []cli.Flag) {
		for _, f := range fs {
			name := f.Names()[0]
			if name == "help" {
				continue
			}
			ev, _ := f.(interface{ GetEnvVars() []string })
			var envs []string
			if ev != nil {
				envs = ev.GetEnvVars()
			}
			if noEnv[name] {
				if len(envs) != 0 {
					t.Errorf("%s --%s: destructive, but read from %v", where, name, envs)
				}
				continue
			}
			if len(envs) != 1 || !strings.HasPrefix(envs[0], "STARLING_") {
				t.Errorf("%s --%s: environment variables %v, want one STARLING_...", where, name, envs)
				continue
			}
			placeholder := ""
			if u, ok := f.(interface{ GetUsage() string }); ok {
				if parts := strings.Split(u.GetUsage(), "`"); len(parts) >= 3 {
					placeholder = parts[1] // what urfave/cli shows as the value
				}
			}
			m := name + " " + placeholder
			if old, ok := meaning[envs[0]]; ok && old != m {
				t.Errorf("%s: %s is --%s there but %s in %s", where, envs[0], m, old, users[envs[0]])
			}
			meaning[envs[0]], users[envs[0]] = m, where
		}
	}
	check("starling", app.Flags)
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			if !c.Hidden {
				check(prefix+" "+c.Name, c.Flags)
				walk(prefix+" "+c.Name, c.Subcommands)
			}
		}
	}
	walk("starling", app.Commands)
	if meaning["STARLING_RESYNC_PEER"] == "" || meaning["STARLING_PEER"] == "" {
		t.Errorf("want STARLING_PEER (run) and STARLING_RESYNC_PEER: %v", meaning)
	}
}

func TestRmIgnoresRecursiveEnv(t *testing.T) {
	defer testutil.FailOnPanic(t)
	t.Setenv("STARLING_RECURSIVE", "1")
	t.Setenv("STARLING_FORCE", "1")
	dir, _ := startEntityNode(t, "node1")
	runSteps(t, []step{
		{args: []string{"create", "--data", dir, "--type", "site", "/F"}},
		{args: []string{"create", "--data", dir, "--type", "line", "/F/L"}},
		{args: []string{"rm", "--data", dir, "/F"}, code: 1, errHas: []string{"--recursive"}},
		{args: []string{"init", "--data", dir}, code: 1, errHas: []string{"--force"}},
	})
}

func TestEveryFlagHasEnvVarAndUsage(t *testing.T) {
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	check := func(where string, fs []cli.Flag) {
		for _, f := range fs {
			name := f.Names()[0]
			if name == "help" || name == flagRecursive || name == flagForce || name == flagOpen {
				continue // destructive: no environment variable (TestEnvVarsUnambiguous)
			}
			ev, ok := f.(interface{ GetEnvVars() []string })
			if !ok || len(ev.GetEnvVars()) == 0 || !strings.HasSuffix(ev.GetEnvVars()[0], strings.ToUpper(strings.ReplaceAll(name, "-", "_"))) {
				t.Errorf("%s --%s: no STARLING_[COMMAND_]%s", where, name, strings.ToUpper(name))
			}
			if u, ok := f.(interface{ GetUsage() string }); !ok || len(u.GetUsage()) < 10 {
				t.Errorf("%s --%s: no useful usage", where, name)
			}
		}
	}
	check("starling", app.Flags)
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := prefix + " " + c.Name
			if c.Hidden {
				// The chaos suite's adversary: the harness drives it with
				// flags only.
				continue
			}
			check(name, c.Flags)
			if c.Usage == "" || c.UsageText == "" || !strings.Contains(c.Description+c.UsageText, name) {
				t.Errorf("%s: needs Usage, UsageText and an example", name)
			}
			walk(name, c.Subcommands)
		}
	}
	walk("starling", app.Commands)
}

// TestReorderArgs: flags go anywhere, as with kubectl (issue 17).
func TestReorderArgs(t *testing.T) {
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	for _, tt := range []struct{ in, want string }{
		{"get /F --data D", "get --data D /F"},
		{"get /F temp --json --data=D", "get --json --data=D /F temp"},
		{"status --log-level debug --data D", "--log-level debug status --data D"},
		{"--data D status", "status --data D"},
		{"cluster add /ip4/1 --wait 3s --data D --log-level info", "--log-level info cluster add --wait 3s --data D /ip4/1"},
		{"set /F temp -5 --data D", "set --data D /F temp -5"},
		{"set /F note --data D -- -x", "set --data D -- /F note -x"},
		{"lead --group g --data D -- /bin/x --flag y", "lead --group g --data D -- /bin/x --flag y"},
		{"rm -r /F -d D", "rm -r -d D /F"},
		{"set /F help 1 --data D", "set --data D /F help 1"},
		{"help cluster add", "cluster add --help"},
		{"help", "--help"},
		{"kv get k --bogus", "kv get --bogus k"},
		{"lead --group g sh -c echo --data D", "lead --group g -- sh -c echo --data D"},
	} {
		got := strings.Join(reorderArgs(app, append([]string{"starling"}, strings.Fields(tt.in)...))[1:], " ")
		if got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestFlagsAnywhere: the same command with its flags before and after
// its arguments, and global flags after the command (issue 17).
func TestFlagsAnywhere(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir, _ := startEntityNode(t, "node1")
	runSteps(t, []step{
		{args: []string{"create", "/F", "--type", "site", "--data", dir}, has: []string{"created /F"}},
		{args: []string{"set", "/F", "n", "-5", "--data", dir, "--log-level", "debug"}, has: []string{"n = -5 (int)"}},
		{args: []string{"--data", dir, "get", "/F", "n", "--json"}, has: []string{`"int"`}},
		{args: []string{"set", "/F", "note", "--data", dir, "--", "-x"}, has: []string{"note = -x (string)"}},
		{args: []string{"help", "cluster", "add"}, has: []string{"starling cluster add"}},
	})
}

func TestHelp(t *testing.T) {
	r := runApp(t, "", "--help")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, c := range []string{"init", "run", "local", "demo", "kv", "create", "get", "set", "ls", "mv", "rename", "rm", "restore",
		"schema", "watch", "entity", "field", "status", "cluster"} {
		if !strings.Contains(r.stdout, "  "+c+" ") {
			t.Errorf("help does not list %s", c)
		}
	}
	r = runApp(t, "", "run", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "STARLING_DATA") {
		t.Errorf("run --help: %+v", r)
	}
	if r := runApp(t, ""); r.code != 0 || !strings.Contains(r.stdout, "COMMANDS") {
		t.Errorf("no arguments should print help: %+v", r)
	}
}

// fakeNode is an in-memory backend for the API that the client commands talk to.
type fakeNode struct {
	mu    sync.Mutex
	kv    map[string][]byte
	peers map[peer.ID]bool
}

func (f *fakeNode) Get(_ context.Context, k string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.kv[k]
	if !ok {
		return nil, api.ErrNotFound
	}
	return v, nil
}

func (f *fakeNode) List(_ context.Context, prefix string) ([]api.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Entry
	for k, v := range f.kv {
		if prefix == "" || strings.HasPrefix(k, prefix+"/") {
			out = append(out, api.Entry{Key: k, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b api.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (f *fakeNode) Put(_ context.Context, k string, v []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kv[k] = v
	return nil
}

func (f *fakeNode) Delete(_ context.Context, k string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.kv, k)
	return nil
}

func (f *fakeNode) Peers(context.Context) ([]api.PeerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.PeerStatus
	for id := range f.peers {
		out = append(out, api.PeerStatus{ID: id.String(), Connected: true, Static: true, Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}})
	}
	return out, nil
}

func (f *fakeNode) AddPeer(_ context.Context, ai peer.AddrInfo) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers[ai.ID] = true
	return nil
}

func (f *fakeNode) RemovePeer(_ context.Context, id peer.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.peers[id] {
		return api.ErrNotFound
	}
	delete(f.peers, id)
	return nil
}

func (f *fakeNode) Status(context.Context) (api.StatusInfo, error) {
	return api.StatusInfo{NodeID: "fake1", PeerID: "12D3KooWfake", Env: "test", APIAddr: "x", Store: api.StoreStatus{MaxHeight: 3}}, nil
}

const fakeToken = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

// fakeDataDir starts an API server on a fake backend and returns a data
// dir pointing at it (api.json, api.token), the backend, and the address.
func fakeDataDir(t *testing.T) (string, *fakeNode, string) {
	t.Helper()
	f := &fakeNode{kv: map[string][]byte{}, peers: map[peer.ID]bool{}}
	h, err := httpapi.NewAPIHandler(httpapi.APIConfig{Token: fakeToken, KV: f, Peers: f, Status: f})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	addr := strings.TrimPrefix(srv.URL, "http://")
	b, _ := json.Marshal(api.APIInfo{Addr: addr, PID: os.Getpid()})
	if err := os.WriteFile(filepath.Join(dir, api.APIFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, api.TokenFile), []byte(fakeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, f, addr
}

func TestClientCommands(t *testing.T) {
	dir, f, addr := fakeDataDir(t)
	pid := testutil.PeerID(t)
	steps := []struct {
		stdin  string
		args   []string
		code   int
		stdout string // exact, unless contains is set
		errHas string
		check  func(t *testing.T, stdout string)
	}{
		{args: []string{"kv", "put", "--data", dir, "site/t1", "21.5"}},
		{args: []string{"kv", "put", "--data", dir, "site/t2", "-"}, stdin: "from\nstdin\n"},
		{args: []string{"kv", "get", "--data", dir, "site/t1"}, stdout: "21.5\n"},
		{args: []string{"kv", "get", "--data", dir, "/site/t2"}, stdout: "from\nstdin\n"},
		{args: []string{"kv", "get", "--data", dir, "--json", "site/t1"}, check: func(t *testing.T, out string) {
			var e api.Entry
			if err := json.Unmarshal([]byte(out), &e); err != nil || e.Key != "site/t1" || string(e.Value) != "21.5" {
				t.Errorf("get --json: %q, %v", out, err)
			}
		}},
		{args: []string{"kv", "ls", "--data", dir, "site"}, stdout: "site/t1\t21.5\nsite/t2\t\"from\\nstdin\\n\"\n"},
		{args: []string{"kv", "ls", "--data", dir, "--json"}, check: func(t *testing.T, out string) {
			var es []api.Entry
			if err := json.Unmarshal([]byte(out), &es); err != nil || len(es) != 2 {
				t.Errorf("ls --json: %q, %v", out, err)
			}
		}},
		{args: []string{"kv", "ls", "--data", dir, "--json", "nothing"}, stdout: "[]\n"},
		{args: []string{"kv", "del", "--data", dir, "site/t1"}},
		{args: []string{"kv", "get", "--data", dir, "site/t1"}, code: 1, errHas: `key "site/t1" not found`},
		{args: []string{"kv", "get", "--data", dir, "a//b"}, code: 1, errHas: "clean path"},
		{args: []string{"status", "--data", dir}, check: func(t *testing.T, out string) {
			if !strings.Contains(out, "fake1") || !strings.Contains(out, "height 3") {
				t.Errorf("status: %q", out)
			}
		}},
		{args: []string{"status", "--api", addr, "--token", fakeToken, "--json"}, check: func(t *testing.T, out string) {
			var st api.StatusInfo
			if err := json.Unmarshal([]byte(out), &st); err != nil || st.NodeID != "fake1" {
				t.Errorf("status --json: %q, %v", out, err)
			}
		}},
		{args: []string{"status", "--api", addr, "--data", dir}, check: func(t *testing.T, out string) {
			if !strings.Contains(out, "fake1") {
				t.Errorf("--api with the token of --data: %q", out)
			}
		}},
		{args: []string{"status", "--api", addr, "--token", "wrong"}, code: 1, errHas: "token"},
		{args: []string{"cluster", "add", "--data", dir, "/ip4/10.0.0.1/tcp/4001/p2p/" + pid.String()}, stdout: "added " + pid.String() + " (not saved: a restart forgets it; --save keeps it in config.json)\n"},
		{args: []string{"cluster", "--data", dir, "add", "/ip4/10.0.0.1/tcp/4001/p2p/" + pid.String()}, stdout: "added " + pid.String() + " (not saved: a restart forgets it; --save keeps it in config.json)\n"},
		{args: []string{"cluster", "add", "--data", dir, "/ip4/10.0.0.1/tcp/4001"}, code: 1, errHas: `"/ip4/10.0.0.1/tcp/4001"`},
	}
	for _, s := range steps {
		r := runApp(t, s.stdin, s.args...)
		if r.code != s.code {
			t.Fatalf("%v: exit %d, want %d; stderr %q", s.args, r.code, s.code, r.stderr)
		}
		if s.errHas != "" && !strings.Contains(r.stderr, s.errHas) {
			t.Errorf("%v: stderr %q does not mention %q", s.args, r.stderr, s.errHas)
		}
		switch {
		case s.check != nil:
			s.check(t, r.stdout)
		case r.stdout != s.stdout:
			t.Errorf("%v: stdout %q, want %q", s.args, r.stdout, s.stdout)
		}
	}
	if string(f.kv["site/t2"]) != "from\nstdin\n" {
		t.Errorf("stdin value stored as %q", f.kv["site/t2"])
	}
}

func TestClientWithoutRunningNode(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, api.TokenFile), []byte(fakeToken), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runApp(t, "", "kv", "get", "--data", dir, "k")
	if r.code != 1 || !strings.Contains(r.stderr, "no running node") || !strings.Contains(r.stderr, "starling run --data "+dir) {
		t.Errorf("%+v", r)
	}
}

type fakeFlags struct {
	s  map[string]string
	ss map[string][]string
	b  map[string]bool
	i  map[string]int
}

func (f fakeFlags) String(n string) string        { return f.s[n] }
func (f fakeFlags) StringSlice(n string) []string { return f.ss[n] }
func (f fakeFlags) Bool(n string) bool            { return f.b[n] }
func (f fakeFlags) Int(n string) int              { return f.i[n] }

func TestSettingsFrom(t *testing.T) {
	wd, _ := os.Getwd()
	s, err := settingsFrom(fakeFlags{
		s:  map[string]string{flagEnv: " plant1 ", flagNodeID: "n1", flagAPI: "127.0.0.1:0", flagPSKFile: "keys/swarm.key", flagCompact: " 10m "},
		ss: map[string][]string{flagPeer: {" /ip4/1.2.3.4/tcp/1/p2p/x ", ""}, flagListen: {"/ip4/0.0.0.0/tcp/1"}},
		b:  map[string]bool{flagNoMDNS: true},
		i:  map[string]int{flagMaxPeers: 48},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := node.Settings{
		Env: "plant1", NodeID: "n1", APIAddr: "127.0.0.1:0",
		PSKFile:      filepath.Join(wd, "keys/swarm.key"),
		Peers:        []string{"/ip4/1.2.3.4/tcp/1/p2p/x"},
		ListenAddrs:  []string{"/ip4/0.0.0.0/tcp/1"},
		NoMDNS:       true,
		MaxPeers:     48,
		CompactEvery: "10m",
	}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("settingsFrom = %+v\nwant %+v", s, want)
	}
}

func TestLocalPlan(t *testing.T) {
	plan, err := localPlan("/r", 3, 4101, 7501)
	if err != nil {
		t.Fatal(err)
	}
	want := []localNode{
		{"node1", "/r/node1", "/ip4/127.0.0.1/tcp/4101", "127.0.0.1:7501"},
		{"node2", "/r/node2", "/ip4/127.0.0.1/tcp/4102", "127.0.0.1:7502"},
		{"node3", "/r/node3", "/ip4/127.0.0.1/tcp/4103", "127.0.0.1:7503"},
	}
	if !slices.Equal(plan, want) {
		t.Errorf("plan = %v", plan)
	}
	ids := []peer.ID{testutil.PeerID(t), testutil.PeerID(t), testutil.PeerID(t)}
	peers := localPeers(plan, ids, 1)
	if len(peers) != 2 || peers[0] != "/ip4/127.0.0.1/tcp/4101/p2p/"+ids[0].String() || peers[1] != "/ip4/127.0.0.1/tcp/4103/p2p/"+ids[2].String() {
		t.Errorf("peers of node2 = %v", peers)
	}
	if _, err := p2p.ParsePeerAddrs(peers); err != nil {
		t.Errorf("local peers do not parse: %v", err)
	}
	for _, bad := range []struct {
		n, base, api int
		mention      string
	}{
		{0, 4101, 7501, "--nodes"},
		{65, 4101, 7501, "--nodes"},
		{3, 65534, 7501, "--base-port"},
		{3, 0, 7501, "--base-port"},
		{3, 4101, 65534, "--api-base-port"},
		{3, 4101, 4103, "overlap"},
		{3, 4103, 4101, "overlap"},
	} {
		if _, err := localPlan("/r", bad.n, bad.base, bad.api); err == nil || !strings.Contains(err.Error(), bad.mention) {
			t.Errorf("localPlan(%d, %d, %d) = %v, want an error about %s", bad.n, bad.base, bad.api, err, bad.mention)
		}
	}
	if _, err := localPlan("/r", 2, 4101, 4103); err != nil {
		t.Errorf("adjacent ranges refused: %v", err)
	}
}

func TestGoLogBridge(t *testing.T) {
	t.Setenv("GOLOG_LOG_LEVEL", "")
	var buf syncBuffer
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelWarn)
	bridgeGoLog(newLogger(&buf, lv, "text").Handler())
	l := golog.Logger("starling-test")
	l.Errorw("boom", "peer", "p1")
	l.Warn("quiet: go-log default level is error")
	golog.Logger("crdt").Error("crdt noise")
	out := buf.String()
	if !strings.Contains(out, "msg=boom") || !strings.Contains(out, "peer=p1") || !strings.Contains(out, "logger=starling-test") || !strings.Contains(out, "level=ERROR") {
		t.Errorf("error not bridged: %q", out)
	}
	if strings.Contains(out, "quiet") || strings.Contains(out, "crdt noise") {
		t.Errorf("go-log not quiet by default: %q", out)
	}
	lv.Set(slog.LevelError + 1)
	l.Error("filtered by the slog level")
	if strings.Contains(buf.String(), "filtered") {
		t.Error("slog level not applied to go-log")
	}
}
