package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/p2p"
)

// TestInitMakesPrivateNetworkKey: `init` given no network flag makes a
// private network key and a config that uses it, and says to copy it.
func TestInitMakesPrivateNetworkKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n")
	r := runApp(t, "", "init", "--data", dir)
	if r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	key := filepath.Join(dir, api.SwarmKeyFile)
	if _, err := p2p.LoadPSK(key); err != nil {
		t.Fatalf("init made no usable %s: %v", key, err)
	}
	cfg, err := node.LoadConfig(dir)
	if err != nil || cfg.PSKPath(dir) != key || cfg.OpenNetwork {
		t.Fatalf("config %+v, %v: want psk_file %s", cfg, err, api.SwarmKeyFile)
	}
	if !strings.Contains(r.stdout, key) || !strings.Contains(r.stdout, "--psk-file") {
		t.Errorf("init should name the key and how the other nodes get it:\n%s", r.stdout)
	}
}

// TestInitOpenAndRunWarns: `init --open` makes no key and says so in
// config.json; `run` then warns on stderr that anyone can join and how to
// close the network, and shows it in its summary. --open on a node with a
// key is refused, naming the way to do it.
func TestInitOpenAndRunWarns(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "n")
	r := runApp(t, "", "init", "--data", dir, "--open", "--env", "e2e", "--listen", "/ip4/127.0.0.1/tcp/0",
		"--api", "127.0.0.1:0", "--no-mdns", "--no-dht")
	if r.code != 0 {
		t.Fatalf("init --open: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, api.SwarmKeyFile)); !os.IsNotExist(err) {
		t.Errorf("init --open made a swarm.key (%v)", err)
	}
	cfg, err := node.LoadConfig(dir)
	if err != nil || cfg.PSKFile != "" || !cfg.OpenNetwork {
		t.Fatalf("config %+v, %v: want open_network and no psk_file", cfg, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, api.ConfigFile))
	if !strings.Contains(string(b), `"open_network": true`) {
		t.Errorf("config.json does not say the network is open:\n%s", b)
	}
	if !strings.Contains(r.stdout, "OPEN") {
		t.Errorf("init --open should say the network is open:\n%s", r.stdout)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, out, errb := runInBackground(ctx, "run", "--data", dir)
	testutil.Eventually(t, 30*time.Second, "api.json", func() bool {
		select {
		case r := <-done:
			t.Fatalf("run ended early: %+v", r)
		default:
		}
		_, err := os.Stat(filepath.Join(dir, api.APIFile))
		return err == nil
	})
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("run: %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
	if s := errb.String(); !strings.Contains(s, "WARN") || !strings.Contains(s, "network is open") || !strings.Contains(s, "--force --psk") {
		t.Errorf("run of an open node should warn on stderr and say how to close the network:\n%s", s)
	}
	if !strings.Contains(out.String(), "network  OPEN") {
		t.Errorf("run's summary should show the open network:\n%s", out.String())
	}

	keyed := filepath.Join(t.TempDir(), "k")
	if r := runApp(t, "", "init", "--data", keyed); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	r = runApp(t, "", "run", "--data", keyed, "--open")
	if r.code != 1 || !strings.Contains(r.stderr, "--open") || !strings.Contains(r.stderr, "init --data "+keyed+" --force --open") {
		t.Errorf("run --open on a node with a key: %+v", r)
	}
	r = runApp(t, "", "init", "--data", filepath.Join(t.TempDir(), "x"), "--open", "--psk")
	if r.code != 1 || !strings.Contains(r.stderr, "exclude each other") {
		t.Errorf("init --open --psk: %+v", r)
	}
}

// TestLocalNodesShareOneKey: the nodes of `local` get one key (kept in
// ROOT/swarm.key); a directory without it (made before local shared a
// key) is named, with the command that fixes it.
func TestLocalNodesShareOneKey(t *testing.T) {
	root := t.TempDir()
	plan, err := localPlan(root, 3, 4101, 7501)
	if err != nil {
		t.Fatal(err)
	}
	psk, err := localPSK(root)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := localPSK(root); err != nil || string(again) != string(psk) {
		t.Fatalf("a second localPSK gave another key (%v)", err)
	}
	for _, p := range plan[:2] {
		if _, err := node.Init(p.Dir, node.InitOptions{PSK: psk, Settings: node.Settings{NodeID: p.Name}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := node.Init(plan[2].Dir, node.InitOptions{OpenNetwork: true, Settings: node.Settings{NodeID: plan[2].Name}}); err != nil {
		t.Fatal(err)
	}
	if err := checkLocalKeys(root, plan[:2], psk); err != nil {
		t.Errorf("two nodes with the shared key: %v", err)
	}
	err = checkLocalKeys(root, plan, psk)
	if err == nil || !strings.Contains(err.Error(), "node3 of") || strings.Contains(err.Error(), "node1") ||
		!strings.Contains(err.Error(), "--force --psk-file "+filepath.Join(root, api.SwarmKeyFile)) {
		t.Errorf("a node without the shared key: %v", err)
	}
}

// TestRunFailingFirstStartLeavesNoConfig: a first `run` that fails to
// start (the API port is taken) removes the node it made, so the next
// `run` takes its own flags instead of failing on the first one's
// config (issue 17).
func TestRunFailingFirstStartLeavesNoConfig(t *testing.T) {
	defer testutil.FailOnPanic(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	root := t.TempDir()
	for _, dir := range []string{filepath.Join(root, "new"), root} { // a new dir, and an existing empty one
		r := runApp(t, "", "run", "--data", dir, "--api", l.Addr().String(), "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-dht")
		if r.code != 1 || !strings.Contains(r.stderr, "removed again") {
			t.Fatalf("run on a taken port: %+v", r)
		}
		if node.Initialised(dir) {
			t.Fatalf("the failed first run left %s initialised", dir)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 0 {
			t.Errorf("the failed first run left %d entries in %s", len(ents), dir)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "new")); !os.IsNotExist(err) {
		t.Errorf("the failed first run left the dir it made: %v", err)
	}
	// An initialised node that fails to start keeps everything.
	dir := filepath.Join(root, "kept")
	if r := runApp(t, "", "init", "--data", dir, "--api", l.Addr().String()); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	if r := runApp(t, "", "run", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-dht"); r.code != 1 || strings.Contains(r.stderr, "removed") {
		t.Fatalf("run of an initialised node on a taken port: %+v", r)
	}
	if !node.Initialised(dir) {
		t.Error("a failed run removed an initialised node")
	}
}

// TestRunDoesNotLogLoginURL: a one-time web login URL lets whoever reads
// it in; run prints the page's address and how to get one, but no code,
// neither on stdout nor in its log at info level (issue 17).
func TestRunDoesNotLogLoginURL(t *testing.T) {
	defer testutil.FailOnPanic(t)
	dir := filepath.Join(t.TempDir(), "n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, out, errb := runInBackground(ctx, "--log-level", "debug", "run", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0",
		"--api", "127.0.0.1:0", "--no-mdns", "--no-dht")
	testutil.Eventually(t, 30*time.Second, "the node is up", func() bool {
		select {
		case r := <-done:
			t.Fatalf("run ended early: %+v", r)
		default:
		}
		return strings.Contains(out.String(), "try: starling status")
	})
	cancel()
	<-done
	if s := out.String() + errb.String(); strings.Contains(s, "code=") || !strings.Contains(out.String(), "starling web --data "+dir) {
		t.Errorf("run's output and log should name `starling web` and hold no login code:\n%s", s)
	}
	if !strings.Contains(errb.String(), "node started") {
		t.Errorf("no start-up log line at debug level:\n%s", errb.String())
	}
}

// TestConfigCheck: `config check` reports every problem of config.json
// and of the flags given, naming key and flag, exit 1; 0 when run would
// accept it; --json for scripts.
func TestConfigCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n")
	if r := runApp(t, "", "init", "--data", dir); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	if r := runApp(t, "", "config", "check", "--data", dir); r.code != 0 || !strings.Contains(r.stdout, "configuration OK") {
		t.Fatalf("a fresh node: %+v", r)
	}
	path := filepath.Join(dir, api.ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["log_levl"] = "info"
	m["mdns"] = "yes"
	m["node_id"] = "bad id"
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := runApp(t, "", "config", "check", "--data", dir, "--peer", "/ip4/1.2.3.4/tcp/1")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1: %+v", r.code, r)
	}
	for _, want := range []string{"4 problems", `log_levl: unknown key (did you mean "log_level"?)`, "mdns (--no-mdns):", "node_id (--node-id):", "peers (--peer):"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config check does not say %q:\n%s", want, r.stdout)
		}
	}
	r = runApp(t, "", "config", "check", "--data", dir, "--json")
	var res configCheckResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 1 || res.OK || len(res.Problems) != 3 || res.Problems[0].Key != "log_levl" {
		t.Errorf("--json: %v %+v\n%s", err, res, r.stdout)
	}
	if err := os.Remove(filepath.Join(dir, api.TokenFile)); err != nil {
		t.Fatal(err)
	}
	if r := runApp(t, "", "config", "check", "--data", dir); r.code != 1 || !strings.Contains(r.stdout, api.TokenFile) {
		t.Errorf("a missing token: %+v", r)
	}
	if r := runApp(t, "", "config", "check", "--data", filepath.Join(dir, "x")); r.code != 1 || !strings.Contains(r.stderr, "starling init") {
		t.Errorf("no node: %+v", r)
	}
}
