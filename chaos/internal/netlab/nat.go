package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// NAT is how a host reaches the bridge (the lab's "internet").
//
// A NATed host h is two namespaces: Netns(h) is its router, whose WAN
// side is the host's port on the bridge with HostAddr(h) (so the
// faults on the bridge act on the whole site, as on a public host), and
// NodeNetns(h) is the site, where the node runs at NodeAddr(h) behind
// the router (default route through it). The router masquerades what
// leaves on its WAN side and drops every new connection that arrives
// there (no port forwarding, no UPnP or NAT-PMP). The harness reaches
// the node's API over a management link of its own (APIAddr(h)), which
// the node does not use for its peers: its libp2p listens on NodeAddr
// only, and the harness's namespace forwards nothing between links.
type NAT int

const (
	// Public: the host sits on the bridge with HostAddr (no router).
	Public NAT = iota
	// ConeNAT is a port-restricted cone NAT, as most home and office
	// routers: the mapping keeps the source port when it is free (Linux
	// masquerade), so it is the same whatever the destination; a reply
	// passes only from the address and port the site sent to
	// (conntrack). Hole punching works through it.
	ConeNAT
	// SymmetricNAT maps each new connection to a random port
	// (masquerade random,fully-random), so the port a peer observed is
	// useless to another: hole punching cannot work through it.
	SymmetricNAT
	// UPnPNAT is a ConeNAT whose router also maps ports on request
	// (miniupnpd: UPnP IGD and NAT-PMP/PCP; see upnp.go).
	UPnPNAT
)

// String names the kind as the suite's descriptions do.
func (n NAT) String() string {
	switch n {
	case Public:
		return "public"
	case ConeNAT:
		return "cone NAT"
	case SymmetricNAT:
		return "symmetric NAT"
	case UPnPNAT:
		return "cone NAT with UPnP/NAT-PMP"
	}
	return "NAT(" + strconv.Itoa(int(n)) + ")"
}

// Addresses and names behind the routers. Each site has its own /24, so
// a site's private address is unroutable from every other site (as
// 192.168.x.y is across the internet); the management links have theirs.
const (
	// natTable is the nft table (ip family) of a router.
	natTable = "starling_nat"
	// wanIface and lanIface are the router's sides; the site's end of
	// the LAN link is hostIface, and mgmtIface its management link.
	wanIface  = hostIface
	lanIface  = "lan0"
	mgmtIface = "mgmt0"
)

// InternetSubnet and InternetHostOffset are the bridge's addresses in a
// NAT network: hosts from 192.0.0.65, the bridge at 192.0.0.254. libp2p
// treats private addresses (10/8, ...) as unreachable from elsewhere:
// it hole-punches only from public addresses, advertises relay
// addresses only of relays with public ones, and AutoNAT judges only
// those. Behind the lab's routers the "internet" must look public to
// it. 192.0.0.0/24 is IANA's block for protocol assignments, not
// globally reachable (RFC 6890), so nothing out there answers on it;
// libp2p (go-multiaddr's net package) counts only 192.0.0.0/26 of it as
// unroutable, hence the offset. The addresses exist only in the suite's
// isolated namespaces, which have no interface to the outside (Enter
// checks).
var InternetSubnet = netip.MustParsePrefix("192.0.0.0/24")

// InternetHostOffset: host h is 192.0.0.(64+h).
const InternetHostOffset = 64

var (
	// lanBase holds the sites' LANs: site h is 10.78.h.0/24, router .1,
	// node .2.
	lanBase = netip.MustParseAddr("10.78.0.0")
	// mgmtBase holds the management links: host h's is 10.79.h.0/24,
	// node .1, harness .254.
	mgmtBase = netip.MustParseAddr("10.79.0.0")
)

// NATOf is host h's kind of NAT.
func (l *Lab) NATOf(h int) NAT { return l.cfg.NAT[h] }

// NodeNetns is the namespace the node of host h runs in: Netns(h) for a
// public host, its site behind the router for a NATed one.
func (l *Lab) NodeNetns(h int) string {
	if l.NATOf(h) == Public {
		return l.Netns(h)
	}
	return "chaos-s" + strconv.Itoa(h)
}

// NodeAddr is the address host h's node listens on: HostAddr(h) for a
// public host, its private address behind the router for a NATed one.
func (l *Lab) NodeAddr(h int) netip.Addr {
	if l.NATOf(h) == Public {
		return l.HostAddr(h)
	}
	return siteAddr(lanBase, h, 2)
}

// APIAddr is the address the harness reaches host h's API on:
// HostAddr(h) for a public host, the management link's for a NATed one.
func (l *Lab) APIAddr(h int) netip.Addr {
	if l.NATOf(h) == Public {
		return l.HostAddr(h)
	}
	return siteAddr(mgmtBase, h, 1)
}

func siteAddr(base netip.Addr, h, last int) netip.Addr {
	b := base.As4()
	b[2], b[3] = byte(h), byte(last)
	return netip.AddrFrom4(b)
}

func slash24(a netip.Addr) string { return netip.PrefixFrom(a, 24).String() }

// mgmtPort is the harness's end of host h's management link.
func mgmtPort(h int) string { return "chaos-m" + strconv.Itoa(h) }

// siteSteps build NATed host h's site behind the router Netns(h) (which
// Setup has already joined to the bridge): the LAN link, the node's
// default route, the management link, forwarding on the router. The
// router's nft table comes after (RouterUp).
func (l *Lab) siteSteps(h int) [][]string {
	router, site := l.Netns(h), l.NodeNetns(h)
	return [][]string{
		{"ip", "netns", "add", site},
		{"ip", "-n", site, "link", "set", "lo", "up"},
		{"ip", "-n", router, "link", "add", lanIface, "type", "veth", "peer", "name", hostIface, "netns", site},
		{"ip", "-n", router, "addr", "add", slash24(siteAddr(lanBase, h, 1)), "dev", lanIface},
		{"ip", "-n", router, "link", "set", lanIface, "up"},
		{"ip", "-n", site, "addr", "add", slash24(l.NodeAddr(h)), "dev", hostIface},
		{"ip", "-n", site, "link", "set", hostIface, "up"},
		{"ip", "-n", site, "route", "add", "default", "via", siteAddr(lanBase, h, 1).String()},
		{"ip", "link", "add", mgmtPort(h), "type", "veth", "peer", "name", mgmtIface, "netns", site},
		{"ip", "addr", "add", slash24(siteAddr(mgmtBase, h, 254)), "dev", mgmtPort(h)},
		{"ip", "link", "set", mgmtPort(h), "up"},
		{"ip", "-n", site, "addr", "add", slash24(l.APIAddr(h)), "dev", mgmtIface},
		{"ip", "-n", site, "link", "set", mgmtIface, "up"},
		// /proc/sys/net is the writer's network namespace's.
		{"ip", "netns", "exec", router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"},
	}
}

// NATScript is the nft script of a router of the given kind: it
// replaces the router's table in one transaction. ("fwd" is a reserved
// word in nft: the chains are named in full.)
func NATScript(kind NAT) string {
	masq := "masquerade"
	if kind == SymmetricNAT {
		masq = "masquerade random,fully-random"
	}
	var b strings.Builder
	// Declaring the table first makes the delete succeed when it does
	// not exist yet.
	fmt.Fprintf(&b, "table ip %s\ndelete table ip %s\n", natTable, natTable)
	fmt.Fprintf(&b, "table ip %s {\n", natTable)
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname %q %s\n\t}\n", wanIface, masq)
	// A new connection from the WAN side is dropped silently (no RST):
	// only replies to what the site opened pass, from where it sent to,
	// and, behind a UPnP router, what its port mappings (miniupnpd's
	// DNAT rules) forward.
	mapped := ""
	if kind == UPnPNAT {
		mapped = "\t\tct status dnat accept\n"
	}
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tct state established,related accept\n%s\t\tiifname %q oifname %q accept\n\t}\n", mapped, lanIface, wanIface)
	fmt.Fprintf(&b, "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tiifname %q ct state established,related accept\n\t\tiifname %q drop\n\t}\n", wanIface, wanIface)
	b.WriteString("}\n")
	return b.String()
}

// RouterUp brings NATed host h's router up: its WAN link up and its NAT
// table (re)installed. Setup calls it; so does the heal of a router
// restart.
func (l *Lab) RouterUp(ctx context.Context, h int) error {
	if l.NATOf(h) == Public {
		return fmt.Errorf("netlab: host %d is public: it has no router", h)
	}
	if err := l.run(ctx, nil, "ip", "-n", l.Netns(h), "link", "set", wanIface, "up"); err != nil {
		return err
	}
	return l.run(ctx, strings.NewReader(NATScript(l.NATOf(h))), "ip", "netns", "exec", l.Netns(h), "nft", "-f", "-")
}

// RouterDown takes NATed host h's router down as a reboot would: its
// WAN link down, its NAT table gone and its connection tracking
// flushed, so every mapping of the site is lost. It returns how many
// tracked connections (mappings) there were before and are left after.
// The flush uses `conntrack -F` where the tool exists; taking the link
// down also makes the kernel forget the connections masqueraded through
// it.
func (l *Lab) RouterDown(ctx context.Context, h int) (before, after int, err error) {
	if l.NATOf(h) == Public {
		return 0, 0, fmt.Errorf("netlab: host %d is public: it has no router", h)
	}
	router := l.Netns(h)
	if before, err = l.Conntrack(ctx, h); err != nil {
		return 0, 0, err
	}
	if err := l.run(ctx, nil, "ip", "-n", router, "link", "set", wanIface, "down"); err != nil {
		return before, 0, err
	}
	if err := l.run(ctx, strings.NewReader(fmt.Sprintf("table ip %s\ndelete table ip %s\n", natTable, natTable)), "ip", "netns", "exec", router, "nft", "-f", "-"); err != nil {
		return before, 0, err
	}
	if _, lerr := exec.LookPath("conntrack"); lerr == nil {
		if err := l.run(ctx, nil, "ip", "netns", "exec", router, "conntrack", "-F"); err != nil {
			return before, 0, err
		}
	}
	after, err = l.Conntrack(ctx, h)
	return before, after, err
}

// Conntrack is the number of connections NATed host h's router tracks
// (its NAT mappings and their state).
func (l *Lab) Conntrack(ctx context.Context, h int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.Netns(h), "cat", "/proc/sys/net/netfilter/nf_conntrack_count").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("read the connection count of host %d's router: %w: %s", h, err, strings.TrimSpace(string(out)))
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, fmt.Errorf("connection count of host %d's router: %q: %w", h, out, err)
	}
	return n, nil
}
