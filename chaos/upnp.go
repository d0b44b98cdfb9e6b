package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/starling-sync/starling/chaos/internal/netlab"
)

// nat-upnp (issue #15's port mapping): every site behind a router that
// maps ports on request (netlab.UPnPNAT: miniupnpd, UPnP IGD and
// NAT-PMP). The sites' nodes run with --reachability auto (natRunArgs),
// port mapping on (the default). The nemesis then requires, in order:
//
//   - within natMapBound of the start, every site mapped: its router
//     holds a mapping to the node's listen port (miniupnpd's DNAT rule)
//     and the node announces the router's address with that mapped
//     port (its status' observed_addrs, where libp2p's port mapper puts
//     it). Whether AutoNAT v2 then confirms that address reachable (the
//     hub dialled it back: status' reachable_addrs) and the node calls
//     itself public is recorded, not required: in 2 runs of 10 some
//     site's status said private for good (AutoNAT v1's verdict, which
//     the node's reachability follows, even where v2 had confirmed the
//     mapped address; or v2 tested only the observed address with the
//     listen port, which the router does not forward), while the other
//     sites dialled it directly at its mapping all along;
//   - within natDirectBound of meeting, the sites dialled each other
//     directly, at a mapped address: connection kind "direct", neither
//     relayed nor hole-punched (natRecord.DirectOnly);
//   - with the hub killed (as nat-hub-kill), writes cross between the
//     sites within natVisibleBound.
//
// TestChaosCatchesNoPortMapping runs the same with --no-port-mapping on
// the sites, and must see the mapping check fail.

// natMapBound: every site holds a mapping within this of the nodes'
// start. libp2p looks for the router for up to 10 s (SSDP searches of
// 2 s each for two IGD versions, NAT-PMP at once), then maps each listen
// port.
const natMapBound = 30 * time.Second

// natConfirmWait bounds the wait for AutoNAT's confirmations once every
// site is mapped (seen 1-6.5 s after the mappings when they came), so
// that the wait for the sites' direct links, bounded from the start,
// keeps its time.
const natConfirmWait = 10 * time.Second

// upnpRecord is what nat-upnp saw of the port mappings (natRecord.UPnP).
type upnpRecord struct {
	// Mapped: every site was mapped (see upnpSite.Mapped) within
	// MapBound of the nodes' start; MappedAfter is when.
	Mapped      bool          `json:"mapped"`
	MappedAfter time.Duration `json:"mapped_after_ns"`
	// Confirmed: every site's mapped address was confirmed reachable
	// (see upnpSite.Confirmed); ConfirmedAfter is when. waitMapped
	// waits for it up to natConfirmWait after the mappings.
	Confirmed      bool          `json:"confirmed"`
	ConfirmedAfter time.Duration `json:"confirmed_after_ns"`
	MapBound       time.Duration `json:"map_bound_ns"`
	// Sites is, per site, what its router and its node said when last
	// looked at.
	Sites map[string]upnpSite `json:"sites"`
}

// upnpSite is one site's port mapping as its router and its node
// report it.
type upnpSite struct {
	// WAN is the router's public address.
	WAN string `json:"wan"`
	// Mappings are the router's mappings to the node's listen address.
	Mappings []string `json:"mappings,omitempty"`
	// Announced are the node's addresses at WAN with a mapped port;
	// Observed all the public addresses it reports (observed_addrs).
	Announced []string `json:"announced,omitempty"`
	Observed  []string `json:"observed,omitempty"`
	// Confirmed are the announced addresses AutoNAT v2 confirmed
	// reachable (reachable_addrs): another node dialled them.
	Confirmed []string `json:"confirmed,omitempty"`
	// Reachability is the node's, as its status says: "public" once
	// AutoNAT confirmed an address (the mapped one: the node has no
	// other reachable one).
	Reachability string `json:"reachability"`
	Error        string `json:"error,omitempty"`
}

// Mapped: the router maps a port to the node and the node announces it.
func (s upnpSite) Mapped() bool { return len(s.Mappings) > 0 && len(s.Announced) > 0 }

// upnpSites: host 1 public, every other host behind its own UPnP router.
func upnpSites(n int) map[int]netlab.NAT {
	m := map[int]netlab.NAT{}
	for h := 2; h <= n; h++ {
		m[h] = netlab.UPnPNAT
	}
	return m
}

// NewUPnPNemesis returns nat-upnp under another name: the control test
// runs it with port mapping off on the sites.
func NewUPnPNemesis(name string) Nemesis {
	return upnpNemesis{newHubKill(name, upnpSites,
		"sites behind UPnP/NAT-PMP routers: each must get a port mapping and announce it, the sites must dial each other directly, "+
			"and with the public hub killed writes must flow between them within 2 s",
		func(ctx context.Context, e *Env, rec *natRecord) {
			rec.DirectOnly = true
			rec.UPnP = &upnpRecord{MapBound: natMapBound}
			e.waitMapped(ctx, rec.UPnP, e.sites(), e.upAt)
		})}
}

// upnpNemesis is a NAT nemesis whose routers run miniupnpd.
type upnpNemesis struct{ *natNemesis }

// Available says what the machine lacks: miniupnpd (CI's .ci/run
// installs it; CHAOS_REQUIRED=1 makes its absence fail the UPnP tests).
func (n upnpNemesis) Available(ctx context.Context, e *Env) error {
	if err := netlab.UPnPAvailable(); err != nil {
		return err
	}
	return n.natNemesis.Available(ctx, e)
}

// waitMapped waits until every site is mapped, at most rec.MapBound
// from since, then until AutoNAT confirmed every mapping, at most
// natConfirmWait more (within the same bound), and records what each
// router and node said; the routers' logs go to the scenario's
// artifacts.
func (e *Env) waitMapped(ctx context.Context, rec *upnpRecord, sites []*Host, since time.Time) {
	deadline := since.Add(rec.MapBound)
	for {
		rec.Sites = map[string]upnpSite{}
		mapped, confirmed := true, true
		for _, h := range sites {
			s := e.upnpSite(ctx, h)
			rec.Sites[h.name] = s
			mapped = mapped && s.Mapped()
			confirmed = confirmed && len(s.Confirmed) > 0
		}
		if mapped && !rec.Mapped {
			rec.Mapped, rec.MappedAfter = true, time.Since(since)
			if d := time.Now().Add(natConfirmWait); d.Before(deadline) {
				deadline = d
			}
		}
		if confirmed {
			rec.Confirmed, rec.ConfirmedAfter = true, time.Since(since)
			break
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, natSampleGap) {
			break
		}
	}
	if e.dir == "" {
		return
	}
	for _, h := range sites {
		if b, err := os.ReadFile(e.lab.UPnPLog(h.index)); err == nil {
			_ = os.WriteFile(filepath.Join(e.dir, h.name+".miniupnpd.log"), b, 0o644)
		}
	}
}

// upnpSite asks host h's router for its mappings and h's node for its
// addresses and reachability.
func (e *Env) upnpSite(ctx context.Context, h *Host) upnpSite {
	wan := e.lab.HostAddr(h.index)
	s := upnpSite{WAN: wan.String()}
	ms, err := e.lab.PortMappings(ctx, h.index)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	node := netip.AddrPortFrom(e.lab.NodeAddr(h.index), p2pPort)
	var mapped []netlab.PortMapping
	for _, m := range ms {
		if m.Proto == "tcp" && m.Internal == node {
			mapped = append(mapped, m)
			s.Mappings = append(s.Mappings, m.String())
		}
	}
	if !h.Up() || h.Paused() {
		s.Error = h.name + " is not running"
		return s
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	code, body, err := h.Request(rctx, http.MethodGet, "/v1/status", nil)
	cancel()
	if err != nil || code != http.StatusOK {
		s.Error = fmt.Sprintf("GET /v1/status: %d %v", code, err)
		return s
	}
	var st struct {
		NAT struct {
			Reachability   string   `json:"reachability"`
			ObservedAddrs  []string `json:"observed_addrs"`
			ReachableAddrs []string `json:"reachable_addrs"`
		} `json:"nat"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		s.Error = "unreadable status: " + err.Error()
		return s
	}
	s.Reachability, s.Observed = st.NAT.Reachability, st.NAT.ObservedAddrs
	for _, a := range st.NAT.ObservedAddrs {
		if ap, ok := tcpAddrPort(a); ok && ap.Addr() == wan &&
			slices.ContainsFunc(mapped, func(m netlab.PortMapping) bool { return m.External == ap.Port() }) {
			s.Announced = append(s.Announced, a)
			if slices.Contains(st.NAT.ReachableAddrs, a) {
				s.Confirmed = append(s.Confirmed, a)
			}
		}
	}
	return s
}

// tcpAddrPort reads the IPv4 address and TCP port of a multiaddr.
func tcpAddrPort(s string) (netip.AddrPort, bool) {
	m, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	na, err := manet.ToNetAddr(m)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(na.String())
	if err != nil || na.Network() != "tcp" {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// dialled reports whether every pair of sites holds a connection one
// of them dialled directly (not hole-punched, not relayed).
func dialled(links map[string]string) bool {
	for _, l := range links {
		if l != "direct" {
			return false
		}
	}
	return len(links) > 0
}

// judgeUPnP judges nat-upnp's mapping record: every site mapped; the
// sites whose mapping AutoNAT confirmed, and those that call themselves
// public, counted.
func judgeUPnP(v *Verdict, name string, r *upnpRecord) {
	var unmapped []string
	for _, site := range slices.Sorted(maps.Keys(r.Sites)) {
		s := r.Sites[site]
		if s.Reachability == "public" {
			v.Counts["upnp-public"]++
		}
		if s.Mapped() {
			v.Counts["upnp-mapped"]++
			if len(s.Confirmed) > 0 {
				v.Counts["upnp-confirmed"]++
			}
			continue
		}
		what := fmt.Sprintf("%s: router %s maps %s, node announces %s (observed %s)", site, s.WAN,
			orNone(s.Mappings), orNone(s.Announced), orNone(s.Observed))
		if s.Error != "" {
			what += ": " + s.Error
		}
		unmapped = append(unmapped, what)
	}
	if !r.Mapped {
		v.problem("%s: not every site got a port mapping from its router and announced it within %v of the start: %s",
			name, r.MapBound, strings.Join(unmapped, "; "))
	} else {
		v.Durations["upnp-mapped"] = append(v.Durations["upnp-mapped"], r.MappedAfter)
	}
	if r.Confirmed {
		v.Durations["upnp-confirmed"] = append(v.Durations["upnp-confirmed"], r.ConfirmedAfter)
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}
