package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/internal/testutil"
)

// fakeSystemd listens on a unixgram socket as systemd's NOTIFY_SOCKET
// and collects the datagrams.
type fakeSystemd struct {
	conn *net.UnixConn
	msgs chan string
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	// Socket paths are limited to 108 bytes: t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	f := &fakeSystemd{conn: conn, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(f.msgs)
				return
			}
			f.msgs <- string(buf[:n])
		}
	}()
	return f
}

// waitFor returns the first message containing want, failing after d.
func (f *fakeSystemd) waitFor(t *testing.T, want string, d time.Duration, seen *[]string) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-f.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q (got %q)", want, *seen)
			}
			*seen = append(*seen, m)
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from the node within %v (got %q)", want, d, *seen)
		}
	}
}

// TestRunNotifiesSystemd: under a Type=notify unit, `run` sends READY=1
// once the API serves (api.json is written before), WATCHDOG=1 every
// half WatchdogSec, and STOPPING=1 when it begins to stop.
func TestRunNotifiesSystemd(t *testing.T) {
	defer testutil.FailOnPanic(t)
	sd := newFakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100 ms: a ping every 50 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	dir := filepath.Join(t.TempDir(), "n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, _, errb := runInBackground(ctx, "run", "--data", dir, "--node-id", "sdnode", "--api", "127.0.0.1:0",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-dht")
	var seen []string
	ready := sd.waitFor(t, "READY=1", 30*time.Second, &seen)
	t.Logf("READY message: %q", ready)
	if !strings.Contains(ready, "STATUS=node sdnode ") || !strings.Contains(ready, ", API 127.0.0.1:") {
		t.Errorf("READY message without a status line: %q", ready)
	}
	// READY=1 means serving: the API answers at once.
	info, err := api.ReadAPIInfo(dir)
	if err != nil {
		t.Fatalf("READY=1 before api.json: %v", err)
	}
	resp, err := (&net.Dialer{}).DialContext(ctx, "tcp", info.Addr)
	if err != nil {
		t.Fatalf("READY=1 but the API does not accept: %v", err)
	}
	resp.Close()
	for range 2 {
		sd.waitFor(t, "WATCHDOG=1", 10*time.Second, &seen)
	}
	cancel()
	sd.waitFor(t, "STOPPING=1", 15*time.Second, &seen)
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("run: %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("run did not stop; stderr:\n%s", errb.String())
	}
}

// TestSdNotifyWithoutSocket: without NOTIFY_SOCKET nothing is sent and
// nothing is logged about it.
func TestSdNotifyWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	var buf testutil.LogBuffer
	log := newLogger(&buf, new(slog.LevelVar), "text")
	sdNotify(log, sdStopping)
	sdWatchdog(context.Background(), log, func(context.Context) error { t.Error("watchdog ran without WATCHDOG_USEC"); return nil })
	if len(buf.Lines()) != 0 {
		t.Errorf("logged without systemd: %q", buf.Lines())
	}
}

// TestSdWatchdogStopsWhenStuck: pings follow alive's returns, whatever
// it answers; once alive blocks (a deadlock), the pings stop, so that
// systemd kills and restarts the process.
func TestSdWatchdogStopsWhenStuck(t *testing.T) {
	sd := newFakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "20000") // a ping every 10 ms
	t.Setenv("WATCHDOG_PID", "")
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	stuck := make(chan struct{})
	alive := func(ctx context.Context) error {
		calls++
		if calls > 3 {
			select {
			case <-stuck:
			case <-ctx.Done():
			}
		}
		return errors.New("not ready: still alive") // no reason to stop pinging
	}
	done := make(chan struct{})
	go func() { defer close(done); sdWatchdog(ctx, slog.New(slog.DiscardHandler), alive) }()
	var seen []string
	for range 3 {
		sd.waitFor(t, "WATCHDOG=1", 5*time.Second, &seen)
	}
	select {
	case m := <-sd.msgs:
		t.Errorf("a ping while alive is stuck: %q", m)
	case <-time.After(200 * time.Millisecond): // 20 ping intervals
	}
	cancel()
	<-done
}
