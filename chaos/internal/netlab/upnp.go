package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A UPnPNAT router (issue #15's port mapping) is a ConeNAT router that
// also runs miniupnpd: UPnP IGD (SSDP on its LAN side, SOAP over HTTP)
// and NAT-PMP/PCP (UDP 5351 at the site's default gateway), the two
// ways libp2p's port mapper (NATPortMap) asks a router for a mapping.
// miniupnpd writes each mapping as a DNAT rule in chains of its own
// (upnpTable); the router's forward chain lets through what was DNATed
// (NATScript), and nothing else that arrives on the WAN side.
//
// miniupnpd refuses to map anything when its WAN address is in any IANA
// special-purpose block ("Reserved / private IP address ... Port
// forwarding is impossible": 2.3.1's addr_is_reserved covers all of
// 192.0.0.0/24, InternetSubnet included; the option to allow one came
// in later versions), so a lab with UPnP routers uses UPnPInternetSubnet.

// UPnPInternetSubnet is the bridge's subnet in a lab with UPnP routers:
// an ordinary unicast block, since miniupnpd maps only behind a WAN
// address it considers public, and libp2p announces only public ones.
// 11.0.0.0/8 (the US DoD's) is not routed to anything the lab could
// reach: the addresses exist only in the suite's isolated namespaces,
// which have no interface to the outside (chaos.Enter checks), so
// nothing sent to them can leave the machine.
var UPnPInternetSubnet = netip.MustParsePrefix("11.78.0.0/24")

const (
	// upnpTable is the router's nft table (inet family) that holds
	// miniupnpd's chains: miniupnpd 2.3.1 adds rules to existing chains
	// and creates none.
	upnpTable = "starling_upnp"
	// upnpForward, upnpPrerouting and upnpPostrouting are miniupnpd's
	// chains (its upnp_forward_chain, upnp_nat_chain and
	// upnp_nat_postrouting_chain).
	upnpForward     = "miniupnpd"
	upnpPrerouting  = "prerouting_miniupnpd"
	upnpPostrouting = "postrouting_miniupnpd"
	// upnpReadyLine is what miniupnpd logs once its sockets listen.
	upnpReadyLine = "Listening for NAT-PMP/PCP traffic"
	// upnpRefusedLine is what it logs when its WAN address is one it
	// will not map behind (it keeps running, and answers every request
	// with an error).
	upnpRefusedLine = "Port forwarding is impossible"
)

// UPnPAvailable reports whether this machine can run a UPnP router:
// miniupnpd with its nftables backend (the lab's routers use nft).
func UPnPAvailable() error {
	path, err := exec.LookPath("miniupnpd")
	if err != nil {
		return errors.New("miniupnpd is not installed: the UPnP/NAT-PMP routers need it (Debian: apt-get install miniupnpd-nftables)")
	}
	out, _ := exec.Command(path, "--version").CombinedOutput()
	if !bytes.Contains(out, []byte("nftables")) {
		return fmt.Errorf("%s is not built for nftables (%q): install miniupnpd-nftables, not miniupnpd-iptables", path, strings.TrimSpace(string(out)))
	}
	return nil
}

// upnpScript creates the router's table of miniupnpd's chains, hooked
// into forward, prerouting (where its DNAT rules act) and postrouting.
func upnpScript() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", upnpTable, upnpTable)
	fmt.Fprintf(&b, "table inet %s {\n", upnpTable)
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tjump %s\n\t}\n", upnpForward)
	fmt.Fprintf(&b, "\tchain %s {\n\t}\n", upnpForward)
	fmt.Fprintf(&b, "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump %s\n\t}\n", upnpPrerouting)
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump %s\n\t}\n", upnpPostrouting)
	fmt.Fprintf(&b, "\tchain %s {\n\t}\n\tchain %s {\n\t}\n", upnpPrerouting, upnpPostrouting)
	b.WriteString("}\n")
	return b.String()
}

// upnpConfig is miniupnpd's configuration for host h's router: both
// protocols, on the LAN side only, mappings only for the site's own
// /24 to itself (secure_mode: a client maps only to its own address),
// ports 1024 and up.
func (l *Lab) upnpConfig(h int) string {
	lan := slash24(siteAddr(lanBase, h, 0))
	return strings.Join([]string{
		"ext_ifname=" + wanIface,
		"listening_ip=" + lanIface,
		"enable_natpmp=yes",
		"enable_upnp=yes",
		"secure_mode=yes",
		"system_uptime=yes",
		// miniupnpd numbers its sub-devices from this uuid up.
		fmt.Sprintf("uuid=5a1b7c00-0000-4000-8000-%012x", h<<8),
		"upnp_table_name=" + upnpTable,
		"upnp_nat_table_name=" + upnpTable,
		"upnp_forward_chain=" + upnpForward,
		"upnp_nat_chain=" + upnpPrerouting,
		"upnp_nat_postrouting_chain=" + upnpPostrouting,
		"allow 1024-65535 " + lan + " 1024-65535",
		"deny 0-65535 0.0.0.0/0 0-65535",
	}, "\n") + "\n"
}

// UPnPLog is the path of miniupnpd's log for host h's router (debug
// output: every request and the rule it added), "" when it has none.
func (l *Lab) UPnPLog(h int) string {
	if l.upnpDir == "" || l.NATOf(h) != UPnPNAT {
		return ""
	}
	return filepath.Join(l.upnpDir, fmt.Sprintf("n%d.miniupnpd.log", h))
}

// startUPnP starts miniupnpd in every UPnP router (Setup), its
// configuration, pid file and log in a temporary directory of the
// lab's, and waits until each listens.
func (l *Lab) startUPnP(ctx context.Context) error {
	var hosts []int
	for h := 1; h <= l.cfg.Hosts; h++ {
		if l.NATOf(h) == UPnPNAT {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil
	}
	if err := UPnPAvailable(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "starling-upnp-")
	if err != nil {
		return err
	}
	l.upnpDir = dir
	for _, h := range hosts {
		if err := l.run(ctx, strings.NewReader(upnpScript()), "ip", "netns", "exec", l.Netns(h), "nft", "-f", "-"); err != nil {
			return err
		}
		conf := filepath.Join(dir, fmt.Sprintf("n%d.miniupnpd.conf", h))
		if err := os.WriteFile(conf, []byte(l.upnpConfig(h)), 0o644); err != nil {
			return err
		}
		logf, err := os.Create(l.UPnPLog(h))
		if err != nil {
			return err
		}
		// -d: in the foreground, logging to stderr (debug), so that the
		// lab holds its process and Close stops it.
		cmd := exec.Command("ip", "netns", "exec", l.Netns(h), "miniupnpd", "-d", "-f", conf,
			"-P", filepath.Join(dir, fmt.Sprintf("n%d.miniupnpd.pid", h)))
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return fmt.Errorf("start miniupnpd in host %d's router: %w", h, err)
		}
		l.log.Debug("netlab", "cmd", strings.Join(cmd.Args, " "), "pid", cmd.Process.Pid)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		l.upnp = append(l.upnp, upnpDaemon{cmd: cmd, exited: exited})
		if err := l.waitUPnP(ctx, h, exited); err != nil {
			return err
		}
	}
	return nil
}

// waitUPnP waits until host h's miniupnpd listens, or says it will not
// map, or exits.
func (l *Lab) waitUPnP(ctx context.Context, h int, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := os.ReadFile(l.UPnPLog(h))
		switch {
		case bytes.Contains(out, []byte(upnpRefusedLine)):
			return fmt.Errorf("miniupnpd in host %d's router will not map ports: %s", h, lastLines(out, 4))
		case bytes.Contains(out, []byte(upnpReadyLine)):
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("miniupnpd in host %d's router exited: %s", h, lastLines(out, 4))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("miniupnpd in host %d's router did not listen within 10s: %s", h, lastLines(out, 4))
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// upnpDaemon is a miniupnpd the lab started.
type upnpDaemon struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// stopUPnP stops every miniupnpd (Close) and removes their directory.
func (l *Lab) stopUPnP() error {
	var first error
	for _, d := range l.upnp {
		select {
		case <-d.exited:
			continue
		default:
		}
		_ = d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			if first == nil {
				first = fmt.Errorf("miniupnpd (pid %d) did not exit within 5s of SIGKILL", d.cmd.Process.Pid)
			}
		}
	}
	l.upnp = nil
	if l.upnpDir != "" {
		if err := os.RemoveAll(l.upnpDir); err != nil && first == nil {
			first = err
		}
		l.upnpDir = ""
	}
	return first
}

// PortMapping is a mapping a UPnP router holds: its WAN port External
// (on HostAddr) forwarded to Internal, for Proto ("tcp" or "udp").
type PortMapping struct {
	Proto    string
	External uint16
	Internal netip.AddrPort
}

func (m PortMapping) String() string {
	return fmt.Sprintf("%s %d->%s", m.Proto, m.External, m.Internal)
}

// PortMappings lists the mappings host h's UPnP router holds, from
// miniupnpd's DNAT rules.
func (l *Lab) PortMappings(ctx context.Context, h int) ([]PortMapping, error) {
	if l.NATOf(h) != UPnPNAT {
		return nil, fmt.Errorf("netlab: host %d's router runs no UPnP (it is %s)", h, l.NATOf(h))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.Netns(h), "nft", "list", "chain", "inet", upnpTable, upnpPrerouting).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("list host %d's port mappings: %w: %s", h, err, bytes.TrimSpace(out))
	}
	return parseMappings(string(out)), nil
}

// dnatRule matches a miniupnpd DNAT rule as `nft list` prints it:
//
//	iif "eth0" @nh,72,8 0x6 th dport 23456 dnat ip to 10.78.2.2:4001
//
// (the raw match is the IPv4 protocol byte: 0x6 TCP, 0x11 UDP).
var dnatRule = regexp.MustCompile(`@nh,72,8 (0x6|0x11) .*th dport (\d+) dnat ip to ([0-9.]+):(\d+)`)

func parseMappings(out string) []PortMapping {
	var ms []PortMapping
	for _, line := range strings.Split(out, "\n") {
		m := dnatRule.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ext, err1 := strconv.ParseUint(m[2], 10, 16)
		addr, err2 := netip.ParseAddr(m[3])
		port, err3 := strconv.ParseUint(m[4], 10, 16)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		proto := "tcp"
		if m[1] == "0x11" {
			proto = "udp"
		}
		ms = append(ms, PortMapping{Proto: proto, External: uint16(ext), Internal: netip.AddrPortFrom(addr, uint16(port))})
	}
	return ms
}
