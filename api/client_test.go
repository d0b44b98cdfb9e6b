package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeAPIJSON(t *testing.T, dir string, info APIInfo) {
	t.Helper()
	b, _ := json.Marshal(info)
	if err := os.WriteFile(filepath.Join(dir, APIFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeTokenFile(t *testing.T, dir, tok string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

func TestClientFromDataDir(t *testing.T) {
	t.Run("no api.json", func(t *testing.T) {
		dir := t.TempDir()
		writeTokenFile(t, dir, testToken)
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ClientFromDataDir(dir)
		if !errors.Is(err, ErrNoNode) || !strings.Contains(err.Error(), "starling run --data "+dir) {
			t.Errorf("err = %v, want ErrNoNode with a hint to start the node", err)
		}
	})
	// A mistyped --data must not be told to `starling run` there: that
	// would make a new node at the typo (issue 17).
	t.Run("no node at a typo", func(t *testing.T) {
		root := t.TempDir()
		node1 := filepath.Join(root, "node1")
		if err := os.MkdirAll(node1, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(node1, ConfigFile), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, typo := range []string{filepath.Join(root, "nod1"), filepath.Join(root, "nodes1")} {
			_, err := ClientFromDataDir(typo)
			if !errors.Is(err, ErrNoNode) || strings.Contains(err.Error(), "start it with") ||
				!strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "Did you mean --data "+node1) ||
				!strings.Contains(err.Error(), "starling init --data "+typo) {
				t.Errorf("err = %v, want: does not exist, did you mean %s, how to init one explicitly", err, node1)
			}
		}
		empty := filepath.Join(root, "empty")
		if err := os.MkdirAll(empty, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := ClientFromDataDir(empty); err == nil || !strings.Contains(err.Error(), "has no node") || !strings.HasPrefix(err.Error(), "api: no running node: "+empty) {
			t.Errorf("err = %v, want: has no node", err)
		}
	})
	t.Run("no token", func(t *testing.T) {
		dir := t.TempDir()
		writeAPIJSON(t, dir, APIInfo{Addr: "127.0.0.1:1", PID: 1})
		_, err := ClientFromDataDir(dir)
		if !errors.Is(err, ErrNotInitialised) || !strings.Contains(err.Error(), TokenFile) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("empty token", func(t *testing.T) {
		dir := t.TempDir()
		writeAPIJSON(t, dir, APIInfo{Addr: "127.0.0.1:1", PID: 1})
		writeTokenFile(t, dir, "")
		if _, err := ClientFromDataDir(dir); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("damaged api.json", func(t *testing.T) {
		dir := t.TempDir()
		writeTokenFile(t, dir, testToken)
		if err := os.WriteFile(filepath.Join(dir, APIFile), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ClientFromDataDir(dir); err == nil || !strings.Contains(err.Error(), APIFile) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("stale api.json of a killed node", func(t *testing.T) {
		dir := t.TempDir()
		writeTokenFile(t, dir, testToken)
		writeAPIJSON(t, dir, APIInfo{Addr: closedAddr(t), PID: deadPID(t)})
		c, err := ClientFromDataDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Status(context.Background())
		if err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), "not stopped cleanly") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("works against a server", func(t *testing.T) {
		const secretValue = "s3cret"
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+testToken || r.URL.Path != "/v1/kv/secret/key" {
				http.Error(w, `{"error": "unexpected request"}`, http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(secretValue))
		}))
		t.Cleanup(srv.Close)
		dir := t.TempDir()
		writeTokenFile(t, dir, testToken)
		writeAPIJSON(t, dir, APIInfo{Addr: strings.TrimPrefix(srv.URL, "http://"), PID: os.Getpid()})
		c, err := ClientFromDataDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Get(context.Background(), "secret/key")
		if err != nil || string(v) != secretValue {
			t.Errorf("Get = %q, %v", v, err)
		}
	})
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	c := NewClient(closedAddr(t), testToken)
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), "--api") {
		t.Errorf("unreachable: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Status(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := c.Put(ctx, "a/../b", nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("bad key: %v", err)
	}
	if got := NewClient("http://127.0.0.1:1/", "t").Addr(); got != "http://127.0.0.1:1" {
		t.Errorf("Addr = %q", got)
	}
}

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
