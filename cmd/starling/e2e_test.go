package main

// End-to-end tests of the binary with real libp2p and crdt.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/p2p"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// starlingBinary builds the command once per test run.
func starlingBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "starling-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "starling")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// runInBackground runs the app in-process until ctx ends; the result
// arrives on the channel (a panic becomes exit code -1).
func runInBackground(ctx context.Context, args ...string) (<-chan result, *syncBuffer, *syncBuffer) {
	var out, errb syncBuffer
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- result{code: -1, stderr: fmt.Sprint("panic: ", r)}
			}
		}()
		code := run(ctx, append([]string{"starling"}, args...), strings.NewReader(""), &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	return done, &out, &errb
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestE2EDemo(t *testing.T) {
	defer testutil.FailOnPanic(t)
	start := time.Now()
	r := runApp(t, "", "demo", "--keys", "100", "--timeout", "30s")
	if r.code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("demo took %v:\n%s", time.Since(start), r.stdout)
	for _, want := range []string{"== 1.", "== 5.", "converged", "differ", "== 6.", "node2 and node3 follow node2", "node1 back: it leads again", "stops gracefully"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	m := regexp.MustCompile(`data in (\S+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatal("output does not say where the data is")
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("demo left %s behind (%v)", m[1], err)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("demo took %v, want well under a minute", time.Since(start))
	}
}

func TestE2ERunBinaryWithSignal(t *testing.T) {
	bin := starlingBinary(t)
	dir := filepath.Join(t.TempDir(), "node")
	cmd := exec.Command(bin, "run", "--data", dir, "--env", "e2e", "--listen", "/ip4/127.0.0.1/tcp/0",
		"--api", "127.0.0.1:0", "--no-mdns", "--no-dht")
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	testutil.Eventually(t, 30*time.Second, "api.json", func() bool {
		_, err := os.Stat(filepath.Join(dir, api.APIFile))
		return err == nil
	})
	for _, args := range [][]string{
		{"kv", "put", "--data", dir, "hello", "world"},
		{"kv", "get", "--data", dir, "hello"},
		{"status", "--data", dir},
	} {
		b, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, b)
		}
		if args[1] == "get" && string(b) != "world\n" {
			t.Errorf("get = %q", b)
		}
	}
	if !strings.Contains(out.String(), "peer id") || !strings.Contains(out.String(), "api ") {
		t.Errorf("run should print its identity and API address:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGINT: %v\nstderr: %s", err, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15s of SIGINT")
	}
	if _, err := os.Stat(filepath.Join(dir, api.APIFile)); !os.IsNotExist(err) {
		t.Errorf("api.json left after a clean stop: %v", err)
	}
	b, err := exec.Command(bin, "kv", "get", "--data", dir, "hello").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "starling run --data "+dir) {
		t.Errorf("get on a stopped node: %v, %s", err, b)
	}
}

func TestE2EPortInUse(t *testing.T) {
	defer testutil.FailOnPanic(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	for _, tt := range []struct {
		name    string
		args    []string
		mention string
	}{
		{"api", []string{"--api", busy.Addr().String(), "--listen", "/ip4/127.0.0.1/tcp/0"}, "--api"},
		{"libp2p", []string{"--api", "127.0.0.1:0", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}, fmt.Sprint(port)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer testutil.FailOnPanic(t)
			dir := filepath.Join(t.TempDir(), "node")
			r := runApp(t, "", append([]string{"run", "--data", dir, "--no-mdns", "--no-dht"}, tt.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, tt.mention) {
				t.Errorf("exit %d, stderr %q; want 1 and a mention of %q", r.code, r.stderr, tt.mention)
			}
			if _, err := os.Stat(filepath.Join(dir, api.APIFile)); !os.IsNotExist(err) {
				t.Errorf("api.json written by a failed run")
			}
			// A first run that failed leaves no node behind, so the next
			// run starts afresh (TestRunFailingFirstStartLeavesNoConfig).
			if node.Initialised(dir) {
				t.Errorf("the failed first run left %s initialised", dir)
			}
		})
	}
}

func TestE2EBadPSKContent(t *testing.T) {
	defer testutil.FailOnPanic(t)
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "swarm.key")
	if err := os.WriteFile(bad, []byte("this is not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "node")
	r := runApp(t, "", "init", "--data", dir, "--psk-file", bad)
	if r.code != 1 || !strings.Contains(r.stderr, bad) || !strings.Contains(r.stderr, "--psk-file") {
		t.Errorf("%+v", r)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dir created despite a bad key")
	}
}

func TestE2ELocal(t *testing.T) {
	defer testutil.FailOnPanic(t)
	root := t.TempDir()
	base, apiBase := freePort(t), freePort(t)
	if base < apiBase+3 && apiBase < base+3 {
		t.Skip("free ports too close together; run again")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, out, _ := runInBackground(ctx, "local", "--data", root, "--nodes", "3",
		"--base-port", fmt.Sprint(base), "--api-base-port", fmt.Sprint(apiBase))
	for k := 1; k <= 3; k++ {
		dir := filepath.Join(root, fmt.Sprintf("node%d", k))
		testutil.Eventually(t, 30*time.Second, dir+"/api.json", func() bool {
			select {
			case r := <-done:
				t.Fatalf("local ended early: %+v", r)
			default:
			}
			_, err := os.Stat(filepath.Join(dir, api.APIFile))
			return err == nil
		})
	}
	if r := runApp(t, "", "kv", "put", "--data", filepath.Join(root, "node1"), "greeting", "hi"); r.code != 0 {
		t.Fatalf("put: %+v", r)
	}
	testutil.Eventually(t, 15*time.Second, "the write on node3", func() bool {
		r := runApp(t, "", "kv", "get", "--data", filepath.Join(root, "node3"), "greeting")
		return r.code == 0 && r.stdout == "hi\n"
	})
	if !strings.Contains(out.String(), "node3") || !strings.Contains(out.String(), fmt.Sprint(apiBase+2)) {
		t.Errorf("table lacks node3 and its API port:\n%s", out.String())
	}
	// They replicate because they share one private network key.
	shared, err := p2p.LoadPSK(filepath.Join(root, api.SwarmKeyFile))
	if err != nil {
		t.Fatalf("local made no shared key: %v", err)
	}
	for k := 1; k <= 3; k++ {
		dir := filepath.Join(root, fmt.Sprintf("node%d", k))
		cfg, err := node.LoadConfig(dir)
		if err != nil || cfg.PSKFile == "" {
			t.Fatalf("node%d: config %+v, %v: want a private network key", k, cfg, err)
		}
		if psk, err := p2p.LoadPSK(cfg.PSKPath(dir)); err != nil || !bytes.Equal(psk, shared) {
			t.Errorf("node%d does not use the shared key (%v)", k, err)
		}
	}
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("local: %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("local did not stop")
	}
}
