package netlab

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	manet "github.com/multiformats/go-multiaddr/net"
)

func TestUPnPScripts(t *testing.T) {
	upnp := NATScript(UPnPNAT)
	if !strings.Contains(upnp, "ct status dnat accept") {
		t.Errorf("a UPnP router forwards what its mappings DNAT:\n%s", upnp)
	}
	if strings.Contains(upnp, "random") {
		t.Errorf("a UPnP router is a cone NAT:\n%s", upnp)
	}
	for _, kind := range []NAT{ConeNAT, SymmetricNAT} {
		if s := NATScript(kind); strings.Contains(s, "dnat") {
			t.Errorf("%s forwards nothing from the WAN side:\n%s", kind, s)
		}
	}
	chains := upnpScript()
	for _, want := range []string{
		"delete table inet starling_upnp",
		"type filter hook forward priority filter; policy accept;\n\t\tjump miniupnpd",
		"type nat hook prerouting priority dstnat; policy accept;\n\t\tjump prerouting_miniupnpd",
		"type nat hook postrouting priority srcnat; policy accept;\n\t\tjump postrouting_miniupnpd",
	} {
		if !strings.Contains(chains, want) {
			t.Errorf("miniupnpd's table lacks %q:\n%s", want, chains)
		}
	}
	l := &Lab{cfg: Config{Hosts: 3, NAT: map[int]NAT{3: UPnPNAT}}}
	conf := l.upnpConfig(3)
	for _, want := range []string{
		"ext_ifname=eth0\n", "listening_ip=lan0\n", "enable_natpmp=yes\n", "enable_upnp=yes\n",
		"upnp_table_name=starling_upnp\n", "upnp_nat_chain=prerouting_miniupnpd\n",
		"allow 1024-65535 10.78.3.0/24 1024-65535\n", "deny 0-65535 0.0.0.0/0 0-65535\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("miniupnpd.conf lacks %q:\n%s", want, conf)
		}
	}
}

// TestUPnPInternetSubnet: miniupnpd maps only behind a WAN address out
// of every special-purpose block, and libp2p announces only public
// ones.
func TestUPnPInternetSubnet(t *testing.T) {
	l := &Lab{cfg: Config{Hosts: 3, Subnet: UPnPInternetSubnet, HostOffset: InternetHostOffset}}
	a := l.HostAddr(2)
	if a.String() != "11.78.0.66" {
		t.Errorf("HostAddr(2) = %s, want 11.78.0.66", a)
	}
	m, err := manet.FromIP(a.AsSlice())
	if err != nil {
		t.Fatal(err)
	}
	if !manet.IsPublicAddr(m) {
		t.Errorf("libp2p counts %s as not public", a)
	}
	for _, special := range []string{"192.0.0.0/24", "198.18.0.0/15", "100.64.0.0/10", "10.0.0.0/8"} {
		if netip.MustParsePrefix(special).Overlaps(UPnPInternetSubnet) {
			t.Errorf("%s overlaps %s, which miniupnpd refuses", UPnPInternetSubnet, special)
		}
	}
}

func TestParseMappings(t *testing.T) {
	out := `table inet starling_upnp {
	chain prerouting_miniupnpd {
		iif "eth0" @nh,72,8 0x6 th dport 23456 dnat ip to 10.78.2.2:4001
		iif "eth0" @nh,72,8 0x11 th dport 40000 dnat ip to 10.78.2.2:4001
		iif "eth0" @nh,72,8 0x6 th dport 99999 dnat ip to 10.78.2.2:4001
	}
}`
	got := parseMappings(out)
	want := []PortMapping{
		{"tcp", 23456, netip.MustParseAddrPort("10.78.2.2:4001")},
		{"udp", 40000, netip.MustParseAddrPort("10.78.2.2:4001")},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseMappings = %v, want %v (a port out of range is skipped)", got, want)
	}
	if got := parseMappings("table inet starling_upnp {\n\tchain prerouting_miniupnpd {\n\t}\n}\n"); len(got) != 0 {
		t.Errorf("no rule: %v", got)
	}
}
