package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Environment variables between the launching process and the isolated
// one.
const (
	// EnvIsolated is set to "1" in the process that RunIsolated starts.
	EnvIsolated = "STARLING_CHAOS_ISOLATED"
	// EnvWorkDir names the work directory the launching process made for
	// the isolated one (and removes after it).
	EnvWorkDir = "STARLING_CHAOS_WORKDIR"
	// EnvRequired, when "1", turns every reason to skip into a failure
	// (CI sets it).
	EnvRequired = "CHAOS_REQUIRED"
)

// ErrUnsupported means this machine cannot run the suite: a tool, a
// kernel feature or a privilege is missing; its message says which and
// how to get it. Test with errors.Is.
var ErrUnsupported = errors.New("chaos: cannot run the partition suite here")

// Required reports whether CHAOS_REQUIRED=1: callers then fail where
// they would skip.
func Required() bool { return os.Getenv(EnvRequired) == "1" }

// Isolated reports whether this process is the one RunIsolated started.
func Isolated() bool { return os.Getenv(EnvIsolated) == "1" }

// unshareArgs are the namespaces of the isolated process: network
// (nothing it does reaches a real interface), mount (a private /run for
// `ip netns`, a /proc of its own), PID (it is PID 1: when it ends, the
// kernel kills every node it started) and, without root, user (it is
// root inside, with the capabilities that namespaces and nft need).
// --kill-child ends it if unshare itself is killed.
func unshareArgs() []string {
	args := []string{"--net", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "--propagation", "private"}
	if os.Geteuid() != 0 {
		args = append([]string{"--map-root-user"}, args...)
	}
	return args
}

// CheckPrerequisites reports, in one error wrapping ErrUnsupported,
// everything missing to run the suite: Linux, the tools (ip and nft from
// iproute2 and nftables, unshare from util-linux) and the namespaces
// (tried once). iptables is needed for the delay nemesis only; without
// it that nemesis is skipped.
func CheckPrerequisites(ctx context.Context) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%w: needs Linux network namespaces, this is %s", ErrUnsupported, runtime.GOOS)
	}
	var missing []string
	for _, tool := range []struct{ name, pkg string }{
		{"ip", "iproute2"}, {"nft", "nftables"}, {"unshare", "util-linux"},
	} {
		if _, err := lookTool(tool.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s not found in %s (apt-get install %s)", tool.name, toolPath(), tool.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(missing, "; "))
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	unshare, _ := lookTool("unshare")
	ip, _ := lookTool("ip")
	cmd := exec.CommandContext(ctx, unshare, append(unshareArgs(), "--", ip, "link", "add", "chaos-probe", "type", "bridge")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		hint := "run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)"
		return fmt.Errorf("%w: cannot create namespaces with `unshare %s`: %v: %s; %s",
			ErrUnsupported, strings.Join(unshareArgs(), " "), err, bytes.TrimSpace(out), hint)
	}
	return nil
}

// RunIsolated runs exe with args again inside new namespaces (see
// unshareArgs) and waits for it. The child sees EnvIsolated=1 and
// EnvWorkDir, a directory made here and removed after the child ends,
// so nothing is left behind even if the child is killed. extraEnv adds
// variables. The error is the child's (an *exec.ExitError for a non-zero
// exit).
func RunIsolated(ctx context.Context, exe string, args, extraEnv []string, stdout, stderr io.Writer) error {
	work, err := os.MkdirTemp("", "starling-chaos-")
	if err != nil {
		return fmt.Errorf("chaos: work dir: %w", err)
	}
	defer os.RemoveAll(work)
	unshare, err := lookTool("unshare")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	cmd := exec.CommandContext(ctx, unshare, append(append(unshareArgs(), "--", exe), args...)...)
	cmd.Env = append(append(os.Environ(), "PATH="+toolPath(), EnvIsolated+"=1", EnvWorkDir+"="+work), extraEnv...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// On cancellation, ask the child itself to stop, so it can keep its
	// artifacts: unshare does not pass SIGTERM on (it blocks it and
	// waits). If that fails, SIGKILL to unshare kills the child too
	// (--kill-child).
	cmd.Cancel = func() error {
		pids := children(cmd.Process.Pid)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		if len(pids) == 0 {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = 30 * time.Second
	return cmd.Run()
}

// children lists the child processes of pid (from /proc; empty when the
// kernel does not provide the list).
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Enter prepares the isolated process, once, before Run: it checks that
// it really is isolated (PID 1, no network interface but loopback), so
// that nothing below can touch the machine's own network or mounts, and
// mounts a private tmpfs on /run for `ip netns`.
func Enter() error {
	if !Isolated() {
		return fmt.Errorf("chaos: Enter outside the isolated process (%s is not set): use RunIsolated", EnvIsolated)
	}
	if os.Getpid() != 1 {
		return fmt.Errorf("chaos: the isolated process is PID %d, want 1 (a PID namespace of its own)", os.Getpid())
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("chaos: list interfaces: %w", err)
	}
	for _, i := range ifs {
		if i.Name != "lo" && !strings.HasPrefix(i.Name, "chaos-") {
			return fmt.Errorf("chaos: interface %s in the isolated network namespace: refusing to run outside one of our own", i.Name)
		}
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("%w: mount a private /run (for ip netns): %v", ErrUnsupported, err)
	}
	return nil
}

// toolPath is PATH with the system directories where ip, nft and
// iptables live appended: a user's PATH often lacks /usr/sbin, and the
// isolated process is root in its namespace anyway.
func toolPath() string {
	p := os.Getenv("PATH")
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if !slices.Contains(filepath.SplitList(p), d) {
			if p != "" {
				p += string(filepath.ListSeparator)
			}
			p += d
		}
	}
	return p
}

// lookTool finds a tool in toolPath.
func lookTool(name string) (string, error) {
	for _, d := range filepath.SplitList(toolPath()) {
		path := filepath.Join(d, name)
		if st, err := os.Stat(path); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", name, toolPath())
}
