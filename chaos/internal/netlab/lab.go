// Package netlab builds the chaos suite's network and changes it: one
// network namespace per host, each joined by a veth pair to a bridge in
// the harness's own namespace (the switch), and the faults on that bridge
// (an nft table for drops and loss, an iptables NFQUEUE chain for delay).
// Everything is done by running `ip`, `nft` and `iptables`, each command
// logged, so a failed step names the command and its output.
//
// The harness must run in a namespace of its own (see chaos.Isolate):
// netlab creates interfaces and namespaces without checking for names
// in use.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Names and numbers of the lab. Interface names stay under the kernel's
// 15 characters.
const (
	bridgeName = "chaos-br"
	// DelayChain is the iptables chain (filter table) that queues frames
	// to the delayer.
	DelayChain = "STARLING_CHAOS_DELAY"
	// hostIface is the name of the host's end of its veth pair, inside
	// its namespace.
	hostIface = "eth0"
	// bridgeHost is the bridge's own address in the subnet: the harness
	// talks to the hosts' APIs from it.
	bridgeHost = 254
)

// DefaultSubnet is a private test subnet: it exists only inside the
// lab's namespaces, so its addresses never reach a real network.
var DefaultSubnet = netip.MustParsePrefix("10.77.0.0/24")

// Config configures Setup.
type Config struct {
	// Hosts is the number of host namespaces, 1..253.
	Hosts int
	// NAT puts the hosts it names behind a NAT router of that kind (see
	// NAT); the others are public, on the bridge. Nil: every host is
	// public.
	NAT map[int]NAT
	// Subnet holds the hosts (.HostOffset+1 to .HostOffset+Hosts) and
	// the bridge (.254). An IPv4 /24. Default DefaultSubnet.
	Subnet netip.Prefix
	// HostOffset shifts the hosts' addresses in Subnet (see
	// InternetSubnet). Default 0.
	HostOffset int
	// Logger receives every command run (debug) and failures (warn).
	// Default: discard.
	Logger *slog.Logger
}

// Lab is a bridge and its host namespaces.
type Lab struct {
	cfg   Config
	log   *slog.Logger
	delay bool // the delay chain exists
	// upnp are the UPnP routers' miniupnpd processes, upnpDir their
	// configuration and logs (upnp.go).
	upnp    []upnpDaemon
	upnpDir string
}

// ErrSetup wraps every failure of Setup: the machine cannot build the
// lab (a missing tool or kernel feature). Test with errors.Is.
var ErrSetup = errors.New("netlab: cannot build the lab")

// Setup builds the lab in the current network namespace: the bridge
// with its address, and for each host a namespace with loopback up and a
// veth pair to the bridge (MULTICAST is on by default on veth, so mDNS
// works across the bridge). It also installs the empty fault table, so
// a kernel without nft's bridge family fails here and not at the first
// fault.
func Setup(ctx context.Context, cfg Config) (*Lab, error) {
	if cfg.Subnet == (netip.Prefix{}) {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hosts < 1 || cfg.HostOffset < 0 || cfg.HostOffset+cfg.Hosts >= bridgeHost {
		return nil, fmt.Errorf("netlab: Hosts %d from offset %d: addresses outside .1..%d", cfg.Hosts, cfg.HostOffset, bridgeHost-1)
	}
	if !cfg.Subnet.Addr().Is4() || cfg.Subnet.Bits() != 24 {
		return nil, fmt.Errorf("netlab: Subnet %s: want an IPv4 /24", cfg.Subnet)
	}
	for h, kind := range cfg.NAT {
		if h < 1 || h > cfg.Hosts {
			return nil, fmt.Errorf("netlab: NAT for host %d: hosts are 1..%d", h, cfg.Hosts)
		}
		if kind != Public && kind != ConeNAT && kind != SymmetricNAT && kind != UPnPNAT {
			return nil, fmt.Errorf("netlab: NAT for host %d: unknown kind %d", h, kind)
		}
	}
	cfg.Subnet = cfg.Subnet.Masked()
	l := &Lab{cfg: cfg, log: cfg.Logger}
	steps := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", bridgeName, "type", "bridge", "mcast_snooping", "0"},
		{"ip", "addr", "add", l.prefixed(l.BridgeAddr()), "dev", bridgeName},
		{"ip", "link", "set", bridgeName, "up"},
	}
	for h := 1; h <= cfg.Hosts; h++ {
		ns, port := l.Netns(h), l.Port(h)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", port, "type", "veth", "peer", "name", hostIface, "netns", ns},
			[]string{"ip", "link", "set", port, "master", bridgeName, "up"},
			[]string{"ip", "-n", ns, "addr", "add", l.prefixed(l.HostAddr(h)), "dev", hostIface},
			[]string{"ip", "-n", ns, "link", "set", hostIface, "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
		)
		if l.NATOf(h) != Public {
			steps = append(steps, l.siteSteps(h)...)
		}
	}
	for _, s := range steps {
		if err := l.run(ctx, nil, s...); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSetup, err)
		}
	}
	for h := 1; h <= cfg.Hosts; h++ {
		if l.NATOf(h) == Public {
			continue
		}
		if err := l.RouterUp(ctx, h); err != nil {
			return nil, fmt.Errorf("%w: NAT router of host %d (nft's ip family and masquerade): %w", ErrSetup, h, err)
		}
	}
	if err := l.startUPnP(ctx); err != nil {
		_ = l.stopUPnP()
		return nil, fmt.Errorf("%w: UPnP routers: %w", ErrSetup, err)
	}
	if err := l.Apply(ctx, NewFilter(cfg.Hosts)); err != nil {
		return nil, fmt.Errorf("%w: nft's bridge family: %w", ErrSetup, err)
	}
	return l, nil
}

func (l *Lab) prefixed(a netip.Addr) string {
	return netip.PrefixFrom(a, l.cfg.Subnet.Bits()).String()
}

// Hosts is the number of hosts.
func (l *Lab) Hosts() int { return l.cfg.Hosts }

// Netns is the network namespace of host h (1-based).
func (l *Lab) Netns(h int) string { return "chaos-n" + strconv.Itoa(h) }

// Port is the bridge port (host-side veth) of host h.
func (l *Lab) Port(h int) string { return "chaos-v" + strconv.Itoa(h) }

// HostAddr is host h's address.
func (l *Lab) HostAddr(h int) netip.Addr { return l.subnetAddr(l.cfg.HostOffset + h) }

func (l *Lab) subnetAddr(last int) netip.Addr {
	b := l.cfg.Subnet.Addr().As4()
	b[3] = byte(last)
	return netip.AddrFrom4(b)
}

// BridgeAddr is the bridge's address, from which the harness reaches
// the hosts.
func (l *Lab) BridgeAddr() netip.Addr { return l.subnetAddr(bridgeHost) }

// Command returns a command that runs name in host h's node namespace
// (NodeNetns: its site behind the router when h is NATed). `ip netns
// exec` replaces itself with name, so the process's PID is the
// program's own: signals (kill -9, SIGSTOP) reach it directly.
func (l *Lab) Command(h int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.NodeNetns(h), name}, args...)...)
}

// Apply installs f in place of the rules in force, atomically.
func (l *Lab) Apply(ctx context.Context, f *Filter) error {
	return l.run(ctx, strings.NewReader(f.Script(l.Port)), "nft", "-f", "-")
}

// Dropped returns, per fault, how many frames its rules have dropped
// since the rules were last applied (every Apply renews the counters).
// A fault that dropped nothing while it held did nothing.
func (l *Lab) Dropped(ctx context.Context) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nft", "list", "table", "bridge", TableName).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("nft list table bridge %s: %w: %s", TableName, err, bytes.TrimSpace(out))
	}
	return parseDropped(string(out)), nil
}

// parseDropped reads `counter packets N ... comment "fault"` lines of
// `nft list table`.
func parseDropped(out string) map[string]uint64 {
	got := map[string]uint64{}
	for _, line := range strings.Split(out, "\n") {
		_, after, ok := strings.Cut(line, "counter packets ")
		if !ok {
			continue
		}
		_, comment, ok := strings.Cut(after, `comment "`)
		if !ok {
			continue
		}
		fault, _, _ := strings.Cut(comment, `"`)
		n, err := strconv.ParseUint(strings.Fields(after)[0], 10, 64)
		if err != nil {
			continue
		}
		got[fault] += n
	}
	return got
}

// EnableDelay prepares delay: bridged IPv4 frames go through iptables
// (br_netfilter) and the FORWARD chain jumps to DelayChain. An error
// means the kernel or tools cannot queue packets to user space.
func (l *Lab) EnableDelay(ctx context.Context) error {
	if l.delay {
		return nil
	}
	// br_netfilter's switch is per network namespace; it is on by
	// default in a new one, set it anyway.
	if err := os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("turn on br_netfilter: %w", err)
	}
	for _, s := range [][]string{
		{"iptables", "-w", "-N", DelayChain},
		{"iptables", "-w", "-A", "FORWARD", "-j", DelayChain},
	} {
		if err := l.run(ctx, nil, s...); err != nil {
			return err
		}
	}
	l.delay = true
	return nil
}

// SetDelay queues the frames between the given pairs of hosts (from, to)
// to NFQUEUE queue, replacing the pairs set before (enabling delay first
// if needed). With --queue-bypass
// frames pass undelayed while no program listens on the queue.
func (l *Lab) SetDelay(ctx context.Context, queue uint16, pairs [][2]int) error {
	// Enabled here too: a scenario in a network of its own (the NAT
	// topologies) rebuilds the lab, and a delay nemesis after it found
	// the new lab without (the quick sweep's wan-kill, after nat-upnp:
	// "SetDelay before EnableDelay").
	if err := l.EnableDelay(ctx); err != nil {
		return err
	}
	if err := l.ClearDelay(ctx); err != nil {
		return err
	}
	for _, p := range pairs {
		err := l.run(ctx, nil, "iptables", "-w", "-A", DelayChain,
			"-s", l.HostAddr(p[0]).String(), "-d", l.HostAddr(p[1]).String(),
			"-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(queue)), "--queue-bypass")
		if err != nil {
			return err
		}
	}
	return nil
}

// ClearDelay removes every delay rule.
func (l *Lab) ClearDelay(ctx context.Context) error {
	if !l.delay {
		return nil
	}
	return l.run(ctx, nil, "iptables", "-w", "-F", DelayChain)
}

// Close removes the fault rules, the namespaces and the bridge. In an
// isolated harness they would vanish with it; Close keeps a long-lived
// harness tidy. It reports the first failure and goes on.
func (l *Lab) Close(ctx context.Context) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	keep(l.run(ctx, strings.NewReader(fmt.Sprintf("table bridge %s\ndelete table bridge %s\n", TableName, TableName)), "nft", "-f", "-"))
	keep(l.stopUPnP())
	if l.delay {
		keep(l.run(ctx, nil, "iptables", "-w", "-D", "FORWARD", "-j", DelayChain))
		keep(l.run(ctx, nil, "iptables", "-w", "-F", DelayChain))
		keep(l.run(ctx, nil, "iptables", "-w", "-X", DelayChain))
	}
	for h := 1; h <= l.cfg.Hosts; h++ {
		// The harness's ends first: a namespace's deletion frees its
		// interfaces (and their veth peers here) asynchronously, and a
		// lab rebuilt at once for another scenario would find the names
		// still taken.
		keep(l.run(ctx, nil, "ip", "link", "del", l.Port(h)))
		if l.NATOf(h) != Public {
			keep(l.run(ctx, nil, "ip", "link", "del", mgmtPort(h)))
			keep(l.run(ctx, nil, "ip", "netns", "del", l.NodeNetns(h)))
		}
		keep(l.run(ctx, nil, "ip", "netns", "del", l.Netns(h)))
	}
	keep(l.run(ctx, nil, "ip", "link", "del", bridgeName))
	return first
}

// run runs one command and returns an error naming it and its output.
func (l *Lab) run(ctx context.Context, stdin *strings.Reader, argv ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	l.log.Debug("netlab", "cmd", strings.Join(argv, " "), "took", time.Since(start).Round(time.Microsecond), "err", err)
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
