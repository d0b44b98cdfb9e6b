package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/chaos/internal/netlab"
	"github.com/starling-sync/starling/p2p"
)

// Ports of every host, on its own address.
const (
	p2pPort = 4001
	apiPort = 7401
	// compactEvery is every node's --compact-every: compaction forced
	// every few seconds, so that every scenario runs its nemeses and
	// checkers against nodes that keep reclaiming their history (the
	// default, an hour, would never run within a scenario).
	compactEvery = 3 * time.Second
	// evictAfter is every node's --compact-evict-after: compaction stops
	// waiting for a node unheard for that long. Longer than any fault of
	// the other nemeses holds (FaultMax 8s, a wipe's replication wait),
	// so only partition-outlasting-history evicts.
	evictAfter = 15 * time.Second
	// chaosEnv is the nodes' environment name.
	chaosEnv = "chaos"
)

// Host is one Starling node of the suite: a `starling run` process in its
// own network namespace, with its data directory and log. Its methods
// are safe for concurrent use; the process-changing ones (Start, Kill,
// Pause, ...) are called by the runner and the nemeses, one at a time
// per host (a nemesis claims the hosts it acts on).
type Host struct {
	index   int
	name    string
	addr    netip.Addr // the node's own (p2p) address
	apiAddr netip.Addr // where the harness reaches its API; addr when unset
	lab     *netlab.Lab
	bin     string
	dir     string // data dir
	logPath string
	pskFile string
	hc      *http.Client
	log     *slog.Logger
	peers   func(self int) []string // static peers for a start
	runCmd  []string                // the subcommand that starts the node (default "run")
	runArgs []string                // more flags of every start (the NAT scenarios' --reachability)
	// stopTimeout bounds a graceful stop before SIGKILL.
	stopTimeout time.Duration
	// apiPortOverride replaces apiPort in APIURL (tests with a fake API).
	apiPortOverride uint16

	mu          sync.Mutex
	cmd         *exec.Cmd
	exited      chan struct{} // closed when the current process has exited
	expectExit  bool          // the harness stopped or killed it
	crashes     []string      // unexpected exits
	token       string
	paused      bool
	clockOffset time.Duration
	wipes       int
}

// Name is the host's node ID ("n1"), also its name in the history.
func (h *Host) Name() string { return h.name }

// Index is the host's number, from 1.
func (h *Host) Index() int { return h.index }

// Addr is the node's own address: in the lab subnet, or behind its
// router when the host is NATed.
func (h *Host) Addr() netip.Addr { return h.addr }

// api is the address of the host's API.
func (h *Host) api() netip.Addr {
	if h.apiAddr.IsValid() {
		return h.apiAddr
	}
	return h.addr
}

// APIURL is the base URL of the host's HTTP API, reachable from the
// harness (the bridge's address) whatever the network faults.
func (h *Host) APIURL() string {
	port := uint16(apiPort)
	if h.apiPortOverride != 0 {
		port = h.apiPortOverride
	}
	return "http://" + netip.AddrPortFrom(h.api(), port).String()
}

// P2PAddr is the host's libp2p listen address.
func (h *Host) P2PAddr() string {
	return fmt.Sprintf("/ip4/%s/tcp/%d", h.addr, p2pPort)
}

// Token is the API token of the host's current data directory (it
// changes when the host is wiped).
func (h *Host) Token() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.token
}

// Wipes is how often the host's data directory was wiped.
func (h *Host) Wipes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.wipes
}

// Up reports whether the process runs (paused counts as running).
func (h *Host) Up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runningLocked()
}

func (h *Host) runningLocked() bool {
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// Pid is the process ID of the running node, 0 when it is down.
func (h *Host) Pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.runningLocked() {
		return 0
	}
	return h.cmd.Process.Pid
}

// Paused reports whether the process is stopped by SIGSTOP.
func (h *Host) Paused() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.paused
}

// Crashes lists the host's unexpected exits.
func (h *Host) Crashes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.crashes...)
}

// Request sends one request to the host's API with its current token and
// returns the status code and body. A transport error comes back as
// is: Classify tells whether the request can have had an effect.
func (h *Host) Request(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.APIURL()+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.Token())
	resp, err := h.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// Classify maps the outcome of an API request to a history result: ok
// for a 2xx answer; fail when the request surely had no effect (no
// connection could be made, or a 4xx answer); info otherwise (a timeout,
// a reset, a 5xx: it may have been applied, now or later).
func Classify(status int, err error) Result {
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return ResultFail
		}
		return ResultInfo
	}
	switch {
	case status >= 200 && status < 300:
		return ResultOK
	case status >= 400 && status < 500:
		return ResultFail
	}
	return ResultInfo
}

// initDir creates the host's data directory with `starling init`: the
// environment, the node ID, the shared private network key, listen and
// API addresses on the host's own address, plain HTTP (a lab network:
// the suite's clients are not pinned), and no DHT (the lab has no
// bootstrap peers; mDNS and static peers find everyone).
func (h *Host) initDir(ctx context.Context) error {
	args := []string{"init", "--data", h.dir, "--env", chaosEnv, "--node-id", h.name,
		"--psk-file", h.pskFile, "--listen", h.P2PAddr(),
		"--api", netip.AddrPortFrom(h.api(), apiPort).String(), "--api-tls", "off", "--no-dht"}
	cmd := exec.CommandContext(ctx, h.bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: starling init: %w: %s", h.name, err, bytes.TrimSpace(out))
	}
	tok, err := api.ReadToken(h.dir)
	if err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	h.mu.Lock()
	h.token = tok
	h.mu.Unlock()
	return nil
}

// PeerAddr is the host's full multiaddr with its current peer ID, or ""
// while its data directory does not exist.
func (h *Host) PeerAddr() string {
	id := h.PeerID()
	if id == "" {
		return ""
	}
	return h.P2PAddr() + "/p2p/" + id
}

// PeerID is the host's current peer ID, or "" while its data directory
// does not exist.
func (h *Host) PeerID() string {
	id, err := p2p.ReadPeerID(filepath.Join(h.dir, api.IdentityFile))
	if err != nil {
		return ""
	}
	return id.String()
}

// Start runs the node in its namespace and waits until its API answers.
// Output goes to the host's log, after a line that marks the start.
func (h *Host) Start(ctx context.Context, timeout time.Duration) error {
	h.mu.Lock()
	if h.runningLocked() {
		h.mu.Unlock()
		return fmt.Errorf("%s: already running", h.name)
	}
	args := h.runArgsLocked()
	f, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	fmt.Fprintf(f, "=== chaos %s: start %s %v\n", time.Now().Format(time.RFC3339Nano), h.name, args)
	cmd := h.lab.Command(h.index, h.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Start()
	_ = f.Close() // the child has its own descriptor
	if err != nil {
		h.mu.Unlock()
		return fmt.Errorf("%s: start: %w", h.name, err)
	}
	exited := make(chan struct{})
	h.cmd, h.exited, h.expectExit, h.paused = cmd, exited, false, false
	h.mu.Unlock()
	go h.wait(cmd, exited)
	h.log.Debug("host started", "host", h.name, "pid", cmd.Process.Pid)
	return h.waitReady(ctx, exited, timeout)
}

// runArgsLocked is the command line of the node's next start: the run
// command (or the host's RunCommand), its data directory, the static
// peers, compaction every compactEvery, and the clock offset if set.
// h.mu is held.
func (h *Host) runArgsLocked() []string {
	runCmd := h.runCmd
	if len(runCmd) == 0 {
		runCmd = []string{"run"}
	}
	args := append(append([]string{"--log-level", "info"}, runCmd...), "--data", h.dir,
		"--compact-every", compactEvery.String(), "--compact-evict-after", evictAfter.String())
	for _, p := range h.peers(h.index) {
		args = append(args, "--peer", p)
	}
	args = append(args, h.runArgs...)
	if h.clockOffset != 0 {
		args = append(args, "--clock-offset", h.clockOffset.String())
	}
	return args
}

// wait reaps the process and records an exit the harness did not cause.
func (h *Host) wait(cmd *exec.Cmd, exited chan struct{}) {
	err := cmd.Wait()
	h.mu.Lock()
	expected := h.expectExit
	if !expected {
		h.crashes = append(h.crashes, fmt.Sprintf("%s exited on its own at %s: %v (see %s)", h.name, time.Now().Format("15:04:05.000"), err, filepath.Base(h.logPath)))
	}
	close(exited)
	h.mu.Unlock()
	if f, ferr := os.OpenFile(h.logPath, os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== chaos %s: %s exited (expected %v): %v\n", time.Now().Format(time.RFC3339Nano), h.name, expected, err)
		_ = f.Close()
	}
	if !expected {
		h.log.Warn("host exited on its own", "host", h.name, "err", err)
	}
}

func (h *Host) waitReady(ctx context.Context, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		code, _, err := h.Request(rctx, http.MethodGet, "/v1/status", nil)
		rcancel()
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d", code)
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("%s: exited during start-up (see %s): %s", h.name, filepath.Base(h.logPath), tail(h.logPath, 400))
		case <-ctx.Done():
			return fmt.Errorf("%s: API not ready after %s: %v", h.name, timeout, last)
		case <-t.C:
		}
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (h *Host) Kill() error { return h.stop(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits up to the stop timeout, then SIGKILL.
func (h *Host) Stop() error { return h.stop(syscall.SIGTERM, h.stopTimeout) }

func (h *Host) stop(sig syscall.Signal, grace time.Duration) error {
	h.mu.Lock()
	if !h.runningLocked() {
		h.mu.Unlock()
		return nil
	}
	cmd, exited := h.cmd, h.exited
	h.expectExit = true
	wasPaused := h.paused
	h.paused = false
	h.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %s: %w", h.name, sig, err)
	}
	if wasPaused && sig != syscall.SIGKILL {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	}
	if grace > 0 {
		select {
		case <-exited:
			return nil
		case <-time.After(grace):
			h.log.Warn("host did not stop in time: killing it", "host", h.name, "grace", grace)
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: still running 10s after SIGKILL", h.name)
	}
}

// Pause stops the process with SIGSTOP.
func (h *Host) Pause() error { return h.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process with SIGCONT.
func (h *Host) Resume() error { return h.signal(syscall.SIGCONT, false) }

func (h *Host) signal(sig syscall.Signal, paused bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.runningLocked() {
		return fmt.Errorf("%s: not running", h.name)
	}
	if err := h.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %s: %w", h.name, sig, err)
	}
	h.paused = paused
	return nil
}

// SetClockOffset sets the --clock-offset of the next start.
func (h *Host) SetClockOffset(d time.Duration) {
	h.mu.Lock()
	h.clockOffset = d
	h.mu.Unlock()
}

// Wipe deletes the data directory of a stopped host and creates an empty
// one (a new identity, token and store), as a replaced disk would.
func (h *Host) Wipe(ctx context.Context) error {
	if h.Up() {
		return fmt.Errorf("%s: wipe while running", h.name)
	}
	if err := os.RemoveAll(h.dir); err != nil {
		return fmt.Errorf("%s: wipe: %w", h.name, err)
	}
	h.mu.Lock()
	h.wipes++
	h.mu.Unlock()
	return h.initDir(ctx)
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(b, off)
	return string(bytes.TrimSpace(b))
}

// hostName is the node ID of host k.
func hostName(k int) string { return "n" + strconv.Itoa(k) }
