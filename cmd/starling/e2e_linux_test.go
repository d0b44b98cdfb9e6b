package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starling-sync/starling/internal/testutil"
)

// TestE2EPortHeldWithReuseport: a second `run` on a TCP port that a node
// holds fails and names the port. A running node listens with
// SO_REUSEPORT (libp2p's TCP transport), which let a second node bind the
// same port silently and take half of the inbound connections.
func TestE2EPortHeldWithReuseport(t *testing.T) {
	defer testutil.FailOnPanic(t)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	held, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	dir := filepath.Join(t.TempDir(), "node")
	// Bounded: without the check the node starts and runs until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb syncBuffer
	code := run(ctx, []string{"starling", "run", "--data", dir, "--no-mdns", "--no-dht", "--api", "127.0.0.1:0",
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}, strings.NewReader(""), &out, &errb)
	r := result{code, out.String(), errb.String()}
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("TCP port %d", port)) || !strings.Contains(r.stderr, "held by another process") {
		t.Errorf("exit %d, stderr %q; want 1, naming TCP port %d as held by another process", r.code, r.stderr, port)
	}
}

// soReusePort is Linux's SO_REUSEPORT (x86, arm, arm64, riscv); the
// syscall package does not name it.
const soReusePort = 0xf
