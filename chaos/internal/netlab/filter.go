package netlab

import (
	"fmt"
	"slices"
	"strings"
)

// TableName is the nft table (bridge family) that holds every drop and
// loss rule of the faults in force.
const TableName = "starling_chaos"

// dropMark is the packet mark of frames a fault wants dropped.
const dropMark = 0x5354

// Rule acts on the frames that host From sends to host To across the
// bridge. Hosts are numbered from 1.
type Rule struct {
	From, To int
	// LossPercent drops that share of the frames at random (nft
	// `numgen random`). 0 drops every frame.
	LossPercent int
}

func (r Rule) valid(hosts int) error {
	switch {
	case r.From < 1 || r.From > hosts || r.To < 1 || r.To > hosts:
		return fmt.Errorf("netlab: rule %d->%d: hosts are 1..%d", r.From, r.To, hosts)
	case r.From == r.To:
		return fmt.Errorf("netlab: rule %d->%d: a host's own traffic does not cross the bridge", r.From, r.To)
	case r.LossPercent < 0 || r.LossPercent >= 100:
		return fmt.Errorf("netlab: rule %d->%d: loss %d%% outside 0..99 (0 drops everything)", r.From, r.To, r.LossPercent)
	}
	return nil
}

// Filter is the union of the rules that the faults in force want, kept
// per fault. It renders to one nft table that replaces the previous one
// in a single transaction, so faults combine without knowing of each
// other and healing one fault leaves the others' rules in place. It is
// pure data: Lab.Apply installs it. Not safe for concurrent use.
type Filter struct {
	hosts   int
	byFault map[string][]Rule
	order   []string // faults in the order they were set, for stable output
}

// NewFilter returns an empty filter for hosts 1..hosts.
func NewFilter(hosts int) *Filter {
	return &Filter{hosts: hosts, byFault: map[string][]Rule{}}
}

// Set replaces the rules of fault.
func (f *Filter) Set(fault string, rules []Rule) error {
	for _, r := range rules {
		if err := r.valid(f.hosts); err != nil {
			return err
		}
	}
	if _, ok := f.byFault[fault]; !ok {
		f.order = append(f.order, fault)
	}
	f.byFault[fault] = slices.Clone(rules)
	return nil
}

// Clear removes the rules of fault; unknown faults are ignored.
func (f *Filter) Clear(fault string) {
	if _, ok := f.byFault[fault]; !ok {
		return
	}
	delete(f.byFault, fault)
	f.order = slices.DeleteFunc(f.order, func(s string) bool { return s == fault })
}

// Faults returns the faults that have rules, in the order they were set.
func (f *Filter) Faults() []string { return slices.Clone(f.order) }

// Blocked reports whether every frame from host from to host to is
// dropped (loss rules do not block).
func (f *Filter) Blocked(from, to int) bool {
	for _, rs := range f.byFault {
		for _, r := range rs {
			if r.From == from && r.To == to && r.LossPercent == 0 {
				return true
			}
		}
	}
	return false
}

// Components returns the groups of hosts that can reach each other both
// ways, directly or through other hosts, each sorted, ordered by their
// lowest host. A one-way drop separates two hosts: neither can hold a
// conversation with the other.
func (f *Filter) Components() [][]int {
	return Components(f.hosts, func(a, b int) bool { return !f.Blocked(a, b) && !f.Blocked(b, a) })
}

// Components groups hosts 1..n by their links (linked(a, b), asked
// for a < b): each group sorted, the groups ordered by their lowest
// host.
func Components(n int, linked func(a, b int) bool) [][]int {
	parent := make([]int, n+1)
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	for a := 1; a <= n; a++ {
		for b := a + 1; b <= n; b++ {
			if linked(a, b) {
				ra, rb := find(a), find(b)
				if ra != rb {
					parent[max(ra, rb)] = min(ra, rb)
				}
			}
		}
	}
	groups := map[int][]int{}
	var roots []int
	for h := 1; h <= n; h++ {
		r := find(h)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], h)
	}
	out := make([][]int, 0, len(roots))
	for _, r := range roots {
		out = append(out, groups[r])
	}
	return out
}

// Script renders the nft script that replaces the table with the current
// rules. port names the bridge port (host-side veth) of a host. The
// script declares the table before deleting it, so it works whether or
// not the table exists, and nft applies the whole file atomically.
//
// Rules match bridge ports, not addresses, so they cut every protocol a
// host speaks (ARP, IPv6, mDNS floods included). Traffic between the
// harness (the bridge's own address) and a host does not cross the
// forward hook, so the API stays reachable during every network fault.
func (f *Filter) Script(port func(host int) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table bridge %s\ndelete table bridge %s\n", TableName, TableName)
	fmt.Fprintf(&b, "table bridge %s {\n", TableName)
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n")
	// Each rule marks the frames it wants dropped and counts them, and
	// one rule at the end drops marked frames: so every fault counts
	// what it would drop even when another fault's rule matches the same
	// frames, and Lab.Dropped can tell a fault that did nothing. The
	// mark starts clear: the kernel scrubs it when a frame leaves a
	// host's namespace.
	for _, fault := range f.order {
		for _, r := range f.byFault[fault] {
			fmt.Fprintf(&b, "\t\tiifname %q oifname %q ", port(r.From), port(r.To))
			if r.LossPercent > 0 {
				fmt.Fprintf(&b, "numgen random mod 100 < %d ", r.LossPercent)
			}
			fmt.Fprintf(&b, "meta mark set %#x counter comment %q\n", dropMark, commentSafe(fault))
		}
	}
	fmt.Fprintf(&b, "\t\tmeta mark %#x drop\n", dropMark)
	b.WriteString("\t}\n}\n")
	return b.String()
}

// commentSafe keeps a fault name usable inside an nft comment.
func commentSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 {
			return '_'
		}
		return r
	}, s)
	if len(s) > 120 { // nft comments hold 128 bytes
		s = s[:120]
	}
	return s
}
