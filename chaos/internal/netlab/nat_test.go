package netlab

import (
	"strings"
	"testing"
)

func TestNATScript(t *testing.T) {
	cone, sym := NATScript(ConeNAT), NATScript(SymmetricNAT)
	for _, s := range []string{cone, sym} {
		for _, want := range []string{
			"delete table ip starling_nat", // replaces the table in force
			`oifname "eth0" masquerade`,
			"type filter hook forward priority filter; policy drop;",
			"ct state established,related accept",
			`iifname "lan0" oifname "eth0" accept`,
			`iifname "eth0" drop`,
		} {
			if !strings.Contains(s, want) {
				t.Errorf("script lacks %q:\n%s", want, s)
			}
		}
		if strings.Contains(s, " fwd") {
			t.Errorf("fwd is a reserved word in nft:\n%s", s)
		}
	}
	if strings.Contains(cone, "random") {
		t.Errorf("a cone NAT keeps the source port:\n%s", cone)
	}
	if !strings.Contains(sym, "masquerade random,fully-random") {
		t.Errorf("a symmetric NAT randomises every mapping:\n%s", sym)
	}
}

func TestNATAddresses(t *testing.T) {
	l := &Lab{cfg: Config{Hosts: 3, Subnet: DefaultSubnet, NAT: map[int]NAT{2: ConeNAT, 3: SymmetricNAT}}}
	for _, tt := range []struct {
		h                      int
		netns, node, api, host string
	}{
		{1, "chaos-n1", "10.77.0.1", "10.77.0.1", "10.77.0.1"},
		{2, "chaos-s2", "10.78.2.2", "10.79.2.1", "10.77.0.2"},
		{3, "chaos-s3", "10.78.3.2", "10.79.3.1", "10.77.0.3"},
	} {
		if got := l.NodeNetns(tt.h); got != tt.netns {
			t.Errorf("NodeNetns(%d) = %s, want %s", tt.h, got, tt.netns)
		}
		if got := l.NodeAddr(tt.h).String(); got != tt.node {
			t.Errorf("NodeAddr(%d) = %s, want %s", tt.h, got, tt.node)
		}
		if got := l.APIAddr(tt.h).String(); got != tt.api {
			t.Errorf("APIAddr(%d) = %s, want %s", tt.h, got, tt.api)
		}
		if got := l.HostAddr(tt.h).String(); got != tt.host {
			t.Errorf("HostAddr(%d) = %s, want %s", tt.h, got, tt.host)
		}
	}
}

func TestInternetAddresses(t *testing.T) {
	l := &Lab{cfg: Config{Hosts: 3, Subnet: InternetSubnet, HostOffset: InternetHostOffset, NAT: map[int]NAT{2: ConeNAT}}}
	if got := l.HostAddr(1).String(); got != "192.0.0.65" {
		t.Errorf("HostAddr(1) = %s, want 192.0.0.65 (libp2p counts 192.0.0.0/26 as unroutable)", got)
	}
	if got := l.BridgeAddr().String(); got != "192.0.0.254" {
		t.Errorf("BridgeAddr = %s, want 192.0.0.254", got)
	}
	if got := l.NodeAddr(2).String(); got != "10.78.2.2" {
		t.Errorf("NodeAddr(2) = %s: a site stays private", got)
	}
}
