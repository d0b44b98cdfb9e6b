package chaos

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/chaos/internal/netlab"
)

func TestConnectionKind(t *testing.T) {
	for _, tt := range []struct {
		entry string
		want  string
		ok    bool
	}{
		{`{"id":"p","connected":true}`, "", false},
		{`{"id":"p","connection":"direct"}`, "direct", true},
		{`{"id":"p","connection":"hole-punched"}`, "hole-punched", true},
		{`{"id":"p","connection":"relayed"}`, "relayed", true},
		{`{"id":"p","connection":"mdns"}`, "", false}, // an unknown word says nothing
		{`{"id":"p","connection":7}`, "", false},
	} {
		var p map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tt.entry), &p); err != nil {
			t.Fatal(err)
		}
		got, ok := connectionKind(p)
		if got != tt.want || ok != tt.ok {
			t.Errorf("connectionKind(%s) = %q, %v; want %q, %v", tt.entry, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLinked(t *testing.T) {
	if linked(nil, false) {
		t.Error("no pair of sites counts as linked")
	}
	if !linked(map[string]string{"n2-n3": "connected"}, false) {
		t.Error("kind not exposed: any connection links")
	}
	if linked(map[string]string{"n2-n3": "relayed"}, true) {
		t.Error("kind exposed: a relayed connection is not a direct one")
	}
	if !linked(map[string]string{"n2-n3": "hole-punched", "n2-n4": "direct"}, true) {
		t.Error("kind exposed: hole-punched and dialled connections are direct")
	}
	if linked(map[string]string{"n2-n3": "direct", "n2-n4": "none"}, true) {
		t.Error("one pair unconnected: not linked")
	}
}

// natOp is a history entry of a NAT fault's record.
func natOp(t *testing.T, r natRecord) Op {
	t.Helper()
	ext, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return Op{Process: NemesisProcess, Kind: KindNAT, Key: r.Nemesis, Ext: ext}
}

func TestNATChecker(t *testing.T) {
	good := natRecord{Nemesis: "nat-hub-kill", Sites: []string{"n2", "n3"}, WantLinked: true, Linked: true,
		LinkedAfter: 3 * time.Second, LinkBound: natDirectBound, LinkFrom: "meeting through the hub", KindExposed: true,
		Links: map[string]string{"n2-n3": "direct"}, Samples: []time.Duration{50 * time.Millisecond, 300 * time.Millisecond},
		Bound: natVisibleBound, HubDown: true}
	for _, tt := range []struct {
		name   string
		change func(r *natRecord)
		want   string // in a problem; "" = passes
	}{
		{"passes", func(*natRecord) {}, ""},
		{"never linked", func(r *natRecord) { r.Linked, r.Links = false, map[string]string{"n2-n3": "relayed"} }, "not directly connected (not relayed) within 30s of meeting through the hub: n2-n3 relayed"},
		{"kind not exposed", func(r *natRecord) {
			r.Linked, r.KindExposed, r.Links = false, false, map[string]string{"n2-n3": "none"}
		}, "direct connections not judged"},
		{"slow write", func(r *natRecord) { r.Samples = append(r.Samples, 2500*time.Millisecond) }, "after 2.5s while the hub was down, over the bound of 2s"},
		{"missed", func(r *natRecord) { r.Missed = 2 }, "2 of 4 samples"},
		{"no sample", func(r *natRecord) { r.Samples = nil }, "no visibility sample"},
		{"router kept its mappings", func(r *natRecord) {
			*r = natRecord{Nemesis: "nat-router-restart", Router: "n2", ConntrackBefore: 3, ConntrackAfter: 1}
		}, "still tracked 1 connections"},
		{"router had none", func(r *natRecord) { *r = natRecord{Nemesis: "nat-router-restart", Router: "n2"} }, "proves nothing"},
	} {
		r := good
		tt.change(&r)
		v := natChecker{}.Check(CheckInput{History: []Op{{Process: "n2-c0", Kind: "set"}, natOp(t, r)}})
		if tt.want == "" {
			if !v.OK {
				t.Errorf("%s: %v", tt.name, v.Problems)
			}
			continue
		}
		if v.OK || !strings.Contains(strings.Join(v.Problems, "\n"), tt.want) {
			t.Errorf("%s: OK %v, problems %q; want one with %q", tt.name, v.OK, v.Problems, tt.want)
		}
	}
	if v := (natChecker{}).Check(CheckInput{History: []Op{{Process: "n1-c0", Kind: "set"}}}); !v.OK || v.Counts["nat-faults"] != 0 {
		t.Errorf("no NAT fault: %+v, want OK and silent", v)
	}
}

func TestNATTopologies(t *testing.T) {
	reg := NewRegistry()
	for name, want := range map[string]map[int]netlab.NAT{
		"nat-hub-kill":       {2: netlab.ConeNAT, 3: netlab.ConeNAT},
		"nat-router-restart": {2: netlab.ConeNAT, 3: netlab.ConeNAT},
		"nat-symmetric":      {2: netlab.ConeNAT, 3: netlab.SymmetricNAT},
	} {
		n, ok := reg.Nemesis(name)
		if !ok {
			t.Fatalf("no nemesis %s", name)
		}
		tn, ok := n.(TopologyNemesis)
		if !ok {
			t.Fatalf("%s has no topology", name)
		}
		got := tn.NAT(3)
		if len(got) != len(want) {
			t.Errorf("%s: NAT(3) = %v, want %v", name, got, want)
		}
		for h, k := range want {
			if got[h] != k {
				t.Errorf("%s: host %d is %v, want %v", name, h, got[h], k)
			}
		}
	}
}
