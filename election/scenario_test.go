package election

// Scenario scripts (testdata/*.txt) drive several Rules over a simulated
// network with a simulated clock: no goroutines, no wall clock. Each
// simulated node sends its heartbeat every period it announces (Interval,
// or its idle period when it neither leads nor stands next; encoded and decoded,
// so the wire format is exercised too), delivered at once unless a link
// has a delay or is cut.
//
// One command per line; '#' starts a comment. Durations are Go durations.
//
//	config interval=100ms timeout=400ms warmup=400ms retain=10m preempt=true
//	node NAME [id=NODEID] [peer=PEER] [available=true]
//	    a node (node ID and peer default to NAME) whose cluster candidate is
//	    available unless available=false; it starts at the current time
//	crash NAME                 stops sending and receiving, no goodbye
//	stop NAME                  graceful: its goodbye is delivered, then it stops
//	restart NAME [persist]     a new run (new incarnation, fresh state;
//	                           persist keeps its terms as a TermStore would)
//	partition A,B C            cuts every link between the listed sets
//	heal                       restores every link
//	delay FROM TO D            one-way delay on a link (D=0 removes it)
//	join NODE GROUP [instance=I] [kind=K] [mode=M] [ttl=D] [available=B] [err=TEXT]
//	    (err=TEXT: the command must fail with an error containing TEXT,
//	    '_' standing for a space)
//	leave NODE GROUP [instance=I] [err=TEXT]
//	available NODE GROUP [instance=I] true|false [err=TEXT]
//	health NODE GROUP [instance=I] ok|fail [err=TEXT]
//	heartbeat SENDER [peer=P] [to=N1,N2] [group=G] [id=ID] [available=B]
//	    [healthy=B] [kind=K] [mode=M] [view=GROUP:LEADER:TERM[:PEER]]...
//	    [none] [leaving] [inc=N] [seq=N] [at=T]
//	    a hand-made heartbeat from a node that is not simulated (its
//	    candidate: group cluster, id SENDER, available and healthy unless
//	    told otherwise; none: no candidate), delivered to every running
//	    node or to the listed ones, at time T (the simulation runs until T
//	    first) or now
//	tick D                     runs the simulation for D
//	expect leader GROUP LEADER|none [term=N] [peer=P] [on=N1,N2]
//	expect agree GROUP [term=N]   every running node: the same leader (not none) and term
//	expect changes NODE GROUP C...|-
//	    the changes on NODE since the last `expect changes` for it, each
//	    C as LEADER@TERM or LEADER@TERM:REASON (LEADER may be none); - for none
//	expect notice NODE duplicate|expired ID
//	expect member NODE GROUP ID [peer=P] [alive=B] [healthy=B] [available=B] [settling=B] [eligible=B] [active=B] [leader=B] [duplicate=B]
//	expect warming NODE true|false
//	expect terms NODE GROUP=N...  the terms a TermStore would save

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario scripts in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s := newSim(t)
			for i, line := range strings.Split(string(b), "\n") {
				if j := strings.IndexByte(line, '#'); j >= 0 {
					line = line[:j]
				}
				fields := strings.Fields(line)
				if len(fields) == 0 {
					continue
				}
				s.line = fmt.Sprintf("%s:%d: %s", f, i+1, strings.TrimSpace(line))
				s.exec(fields)
				if t.Failed() {
					t.Log(s.dump())
					return
				}
			}
		})
	}
}

type simNode struct {
	name, id, peer string
	available      bool
	inc            uint64
	rule           *Rule
	up             bool
	nextSend       time.Duration
	sendNow        bool
	changes        map[string][]Change
	restored       bool // restarted with its terms, no leader seen since (quick_test)
	notices        []Notice
}

type delivery struct {
	at   time.Duration
	to   *simNode
	from string
	data []byte
}

type sim struct {
	t       *testing.T
	line    string
	cfg     Config
	now     time.Duration
	nodes   []*simNode
	cut     map[[2]string]bool // peer pairs that cannot talk
	delays  map[[2]string]time.Duration
	flight  []delivery
	phantom map[string]uint64 // phantom sender -> last seq
}

// simEpoch is the simulation's time 0 in Unix nanoseconds (2026).
const simEpoch = uint64(1_780_000_000) * uint64(time.Second)

func newSim(t *testing.T) *sim {
	cfg := FastConfig()
	cfg.Interval, cfg.Timeout, cfg.Warmup = 100*time.Millisecond, 400*time.Millisecond, 400*time.Millisecond
	return &sim{
		t: t, cfg: cfg,
		cut: map[[2]string]bool{}, delays: map[[2]string]time.Duration{}, phantom: map[string]uint64{},
	}
}

func (s *sim) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("%s\n  at t=%v: %s", s.line, s.now, fmt.Sprintf(format, args...))
}

// args splits key=value arguments from bare words.
func args(fields []string) (kv map[string][]string, words []string) {
	kv = map[string][]string{}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = append(kv[k], v)
		} else {
			words = append(words, f)
		}
	}
	return kv, words
}

func (s *sim) str(kv map[string][]string, k, def string) string {
	if v, ok := kv[k]; ok {
		return v[len(v)-1]
	}
	return def
}

func (s *sim) dur(kv map[string][]string, k string, def time.Duration) time.Duration {
	v, ok := kv[k]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v[len(v)-1])
	if err != nil {
		s.fatalf("bad duration %s=%s", k, v[len(v)-1])
	}
	return d
}

func (s *sim) boolean(kv map[string][]string, k string, def bool) bool {
	v, ok := kv[k]
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v[len(v)-1])
	if err != nil {
		s.fatalf("bad boolean %s=%s", k, v[len(v)-1])
	}
	return b
}

func (s *sim) node(name string) *simNode {
	for _, n := range s.nodes {
		if n.name == name {
			return n
		}
	}
	s.fatalf("no node %q", name)
	return nil
}

func (s *sim) exec(f []string) {
	kv, words := args(f[1:])
	switch f[0] {
	case "config":
		s.cfg.Interval = s.dur(kv, "interval", s.cfg.Interval)
		s.cfg.Timeout = s.dur(kv, "timeout", s.cfg.Timeout)
		s.cfg.Warmup = s.dur(kv, "warmup", s.cfg.Warmup)
		s.cfg.Retain = s.dur(kv, "retain", s.cfg.Retain)
		s.cfg.NoPreemption = !s.boolean(kv, "preempt", !s.cfg.NoPreemption)
	case "node":
		name := words[0]
		n := &simNode{
			name: name, id: s.str(kv, "id", name), peer: s.str(kv, "peer", name),
			available: s.boolean(kv, "available", true),
		}
		s.nodes = append(s.nodes, n)
		s.start(n, nil)
	case "crash":
		s.node(words[0]).up = false
	case "stop":
		n := s.node(words[0])
		s.broadcast(n, n.rule.Goodbye(s.now))
		n.up = false
		s.run(s.now)
	case "restart":
		n := s.node(words[0])
		var terms map[string]uint64
		n.restored = slices.Contains(words, "persist")
		if n.restored {
			terms = n.rule.Terms()
		}
		n.up = false
		s.start(n, terms)
	case "partition":
		var sets [][]string
		for _, w := range words {
			sets = append(sets, strings.Split(w, ","))
		}
		for i, a := range sets {
			for _, b := range sets[i+1:] {
				for _, x := range a {
					for _, y := range b {
						px, py := s.node(x).peer, s.node(y).peer
						s.cut[[2]string{px, py}], s.cut[[2]string{py, px}] = true, true
					}
				}
			}
		}
	case "heal":
		clear(s.cut)
	case "delay":
		d, err := time.ParseDuration(words[2])
		if err != nil {
			s.fatalf("bad delay %q", words[2])
		}
		s.delays[[2]string{s.node(words[0]).peer, s.node(words[1]).peer}] = d
	case "join", "leave", "available", "health":
		s.local(f[0], kv, words)
	case "heartbeat":
		s.heartbeat(kv, words)
	case "tick":
		d, err := time.ParseDuration(words[0])
		if err != nil {
			s.fatalf("bad duration %q", words[0])
		}
		s.run(s.now + d)
	case "expect":
		s.expect(f[1], kv, words[1:])
	default:
		s.fatalf("unknown command %q", f[0])
	}
}

func (s *sim) start(n *simNode, terms map[string]uint64) {
	cfg := s.cfg
	cfg.NodeID, cfg.Peer = n.id, n.peer
	// The incarnation is the start time in nanoseconds, as the runner's
	// (startedWith compares them), far from the hand-made heartbeats'
	// (inc=1 by default: a node that has run for long).
	n.inc = max(n.inc+1, simEpoch+uint64(s.now))
	r, err := NewRule(cfg, n.inc, s.now)
	if err != nil {
		s.fatalf("NewRule: %v", err)
		return
	}
	for g, t := range terms {
		r.RestoreTerm(g, t)
	}
	if err := r.Join(s.now, Spec{Group: ClusterGroup, ID: n.id, Available: n.available}); err != nil {
		s.fatalf("join cluster: %v", err)
	}
	n.rule, n.up, n.nextSend = r, true, s.now
	n.changes = map[string][]Change{}
	n.notices = nil
	s.drain(n)
	s.run(s.now)
}

func (s *sim) local(cmd string, kv map[string][]string, words []string) {
	n := s.node(words[0])
	group := words[1]
	id := CandidateID(n.id, s.str(kv, "instance", ""))
	var err error
	switch cmd {
	case "join":
		kind, kerr := ParseKind(s.str(kv, "kind", ""))
		mode, merr := ParseMode(s.str(kv, "mode", ""))
		if kerr != nil || merr != nil {
			err = fmt.Errorf("%v %v", kerr, merr)
			break
		}
		err = n.rule.Join(s.now, Spec{Group: group, ID: id, Kind: kind, Mode: mode,
			TTL: s.dur(kv, "ttl", 0), Available: s.boolean(kv, "available", false)})
	case "leave":
		err = n.rule.Leave(s.now, group, id)
	case "available":
		err = n.rule.SetAvailable(s.now, group, id, !slices.Contains(words, "false"))
	case "health":
		err = n.rule.ReportHealth(s.now, group, id, !slices.Contains(words, "fail"))
	}
	want := strings.ReplaceAll(s.str(kv, "err", ""), "_", " ")
	switch {
	case want == "" && err != nil:
		s.fatalf("%s: %v", cmd, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		s.fatalf("%s: error %v, want one containing %q", cmd, err, want)
	}
	s.drain(n)
	s.run(s.now)
}

func (s *sim) heartbeat(kv map[string][]string, words []string) {
	if at, ok := kv["at"]; ok {
		d, err := time.ParseDuration(at[0])
		if err != nil || d < s.now {
			s.fatalf("bad at=%s (now %v)", at[0], s.now)
			return
		}
		s.run(d)
	}
	sender := words[0]
	peer := s.str(kv, "peer", sender)
	seq := s.phantom[peer] + 1
	if v, ok := kv["seq"]; ok {
		seq, _ = strconv.ParseUint(v[0], 10, 64)
	}
	s.phantom[peer] = seq
	inc, _ := strconv.ParseUint(s.str(kv, "inc", "1"), 10, 64)
	hb := &Heartbeat{NodeID: sender, Incarnation: inc, Seq: seq, Leaving: slices.Contains(words, "leaving")}
	if !slices.Contains(words, "none") && !hb.Leaving {
		kind, _ := ParseKind(s.str(kv, "kind", ""))
		mode, _ := ParseMode(s.str(kv, "mode", ""))
		hb.Candidates = []CandidateState{{
			Group: s.str(kv, "group", ClusterGroup), ID: s.str(kv, "id", sender), Kind: kind, Mode: mode,
			Available: s.boolean(kv, "available", true), Healthy: s.boolean(kv, "healthy", true),
		}}
	}
	for _, v := range kv["view"] {
		p := strings.Split(v, ":")
		if len(p) < 3 {
			s.fatalf("bad view %q: want GROUP:LEADER:TERM[:PEER]", v)
			return
		}
		term, _ := strconv.ParseUint(p[2], 10, 64)
		lp := p[1]
		if len(p) > 3 {
			lp = p[3]
		}
		if p[1] == "none" {
			p[1], lp = "", ""
		}
		hb.Views = append(hb.Views, View{Group: p[0], Leader: p[1], LeaderPeer: lp, Term: term})
	}
	data := hb.Encode()
	for _, n := range s.nodes {
		if to, ok := kv["to"]; ok && !slices.Contains(strings.Split(to[0], ","), n.name) {
			continue
		}
		if n.up {
			s.deliver(n, peer, data)
		}
	}
	s.run(s.now)
}

func (s *sim) drain(n *simNode) {
	out := n.rule.Take()
	for _, c := range out.Changes {
		n.changes[c.Group] = append(n.changes[c.Group], c)
	}
	n.notices = append(n.notices, out.Notices...)
	if out.Send {
		n.sendNow = true
	}
}

func (s *sim) broadcast(from *simNode, hb *Heartbeat) {
	data := hb.Encode()
	for _, to := range s.nodes {
		if to == from || !to.up || s.cut[[2]string{from.peer, to.peer}] {
			continue
		}
		if d := s.delays[[2]string{from.peer, to.peer}]; d > 0 {
			s.flight = append(s.flight, delivery{at: s.now + d, to: to, from: from.peer, data: data})
			continue
		}
		s.deliver(to, from.peer, data)
	}
}

func (s *sim) deliver(to *simNode, from string, data []byte) {
	hb, err := DecodeHeartbeat(data)
	if err != nil {
		s.fatalf("decode heartbeat from %s: %v", from, err)
		return
	}
	to.rule.Receive(s.now, from, hb)
	s.drain(to)
}

// run advances the simulation to end, processing every send, delivery
// and deadline in time order.
func (s *sim) run(end time.Duration) {
	for {
		// Immediate sends at the current instant (a few rounds at most).
		for range 5 {
			any := false
			for _, n := range s.nodes {
				if n.up && n.sendNow {
					n.sendNow, any = false, true
					hb := n.rule.Heartbeat(s.now)
					s.broadcast(n, hb)
					n.nextSend = s.now + n.rule.SendPeriod()
				}
			}
			if !any {
				break
			}
		}
		next, ok := time.Duration(0), false
		consider := func(t time.Duration) {
			if !ok || t < next {
				next, ok = t, true
			}
		}
		for _, n := range s.nodes {
			if !n.up {
				continue
			}
			consider(n.nextSend)
			if d, has := n.rule.NextDeadline(); has {
				consider(d)
			}
		}
		for _, d := range s.flight {
			if d.to.up {
				consider(d.at)
			}
		}
		if !ok || next > end {
			break
		}
		s.now = max(s.now, next)
		var later []delivery
		for _, d := range s.flight {
			switch {
			case !d.to.up:
			case d.at <= s.now:
				s.deliver(d.to, d.from, d.data)
			default:
				later = append(later, d)
			}
		}
		s.flight = later
		for _, n := range s.nodes {
			if n.up {
				n.rule.Tick(s.now)
				s.drain(n)
			}
		}
		for _, n := range s.nodes {
			if n.up && n.nextSend <= s.now {
				hb := n.rule.Heartbeat(s.now)
				s.broadcast(n, hb)
				n.nextSend = s.now + n.rule.SendPeriod()
			}
		}
	}
	s.now = max(s.now, end)
	for _, n := range s.nodes {
		if n.up {
			n.rule.Tick(s.now)
			s.drain(n)
		}
	}
}

func (s *sim) targets(kv map[string][]string) []*simNode {
	var out []*simNode
	if on, ok := kv["on"]; ok {
		for _, name := range strings.Split(on[0], ",") {
			out = append(out, s.node(name))
		}
		return out
	}
	for _, n := range s.nodes {
		if n.up {
			out = append(out, n)
		}
	}
	return out
}

func (s *sim) expect(what string, kv map[string][]string, words []string) {
	switch what {
	case "leader":
		group, want := words[0], words[1]
		if want == "none" {
			want = ""
		}
		for _, n := range s.targets(kv) {
			l, _ := n.rule.Leader(group)
			if l.Leader != want {
				s.fatalf("%s: leader of %s is %q, want %q", n.name, group, l.Leader, want)
			}
			if t, ok := kv["term"]; ok && fmt.Sprint(l.Term) != t[0] {
				s.fatalf("%s: term of %s is %d, want %s", n.name, group, l.Term, t[0])
			}
			if p, ok := kv["peer"]; ok && l.Peer != p[0] {
				s.fatalf("%s: leader of %s on peer %q, want %q", n.name, group, l.Peer, p[0])
			}
		}
	case "agree":
		group := words[0]
		var first Leadership
		for i, n := range s.targets(kv) {
			l, _ := n.rule.Leader(group)
			if i == 0 {
				first = l
			}
			if !l.HasLeader() || l != first {
				s.fatalf("%s: %s leads %s at term %d; first node: %s at term %d", n.name, orNone(l.Leader), group, l.Term, orNone(first.Leader), first.Term)
			}
		}
		if t, ok := kv["term"]; ok && fmt.Sprint(first.Term) != t[0] {
			s.fatalf("agreed term %d, want %s", first.Term, t[0])
		}
	case "changes":
		n, group := s.node(words[0]), words[1]
		var got []string
		for _, c := range n.changes[group] {
			got = append(got, fmt.Sprintf("%s@%d:%s", orNone(c.Leader), c.Term, c.Reason))
		}
		n.changes[group] = nil
		want := words[2:]
		if len(want) == 1 && want[0] == "-" {
			want = nil
		}
		ok := len(got) == len(want)
		for i := 0; ok && i < len(want); i++ {
			g := got[i]
			if !strings.Contains(want[i], ":") {
				g = g[:strings.LastIndexByte(g, ':')]
			}
			ok = g == want[i]
		}
		if !ok {
			s.fatalf("%s: changes of %s are %v, want %v", n.name, group, got, want)
		}
	case "notice":
		n := s.node(words[0])
		kind := map[string]NoticeKind{"duplicate": NoticeDuplicateNode, "expired": NoticeExpired}[words[1]]
		for i, no := range n.notices {
			if no.Kind == kind && no.ID == words[2] {
				n.notices = slices.Delete(n.notices, i, i+1)
				return
			}
		}
		s.fatalf("%s: no %s notice about %s; notices: %v", n.name, words[1], words[2], n.notices)
	case "member":
		n, group, id := s.node(words[0]), words[1], words[2]
		gs, err := n.rule.Group(group)
		if err != nil {
			s.fatalf("%s: %v", n.name, err)
			return
		}
		var m *Member
		for i := range gs.Members {
			if gs.Members[i].ID == id && (s.str(kv, "peer", "") == "" || gs.Members[i].Peer == s.str(kv, "peer", "")) {
				m = &gs.Members[i]
			}
		}
		if m == nil {
			s.fatalf("%s: %s is not a member of %s: %+v", n.name, id, group, gs.Members)
			return
		}
		fields := map[string]bool{"alive": m.Alive, "healthy": m.Healthy, "available": m.Available, "settling": m.Settling,
			"eligible": m.Eligible, "active": m.Active, "leader": m.Leader, "duplicate": m.Duplicate}
		for k, v := range kv {
			got, ok := fields[k]
			switch {
			case k == "peer":
			case !ok:
				s.fatalf("unknown member field %q", k)
			case fmt.Sprint(got) != v[0]:
				s.fatalf("%s: member %s of %s: %s=%v, want %s", n.name, id, group, k, got, v[0])
			}
		}
	case "period":
		// expect period NODE fast|idle: the period of its last heartbeat
		// is Interval (fast) or longer (idle).
		n := s.node(words[0])
		if got := map[bool]string{true: "fast", false: "idle"}[n.rule.SendPeriod() == s.cfg.Interval]; got != words[1] {
			s.fatalf("%s: sends %s (period %v), want %s", n.name, got, n.rule.SendPeriod(), words[1])
		}
	case "warming":
		n := s.node(words[0])
		if fmt.Sprint(!n.rule.Warm()) != words[1] {
			s.fatalf("%s: warming=%v, want %s", n.name, !n.rule.Warm(), words[1])
		}
	case "terms":
		n := s.node(words[0])
		terms := n.rule.Terms()
		for k, v := range kv {
			if fmt.Sprint(terms[k]) != v[0] {
				s.fatalf("%s: term of %s is %d, want %s", n.name, k, terms[k], v[0])
			}
		}
	default:
		s.fatalf("unknown expectation %q", what)
	}
}

// dump describes every node's view, for failure messages.
func (s *sim) dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "state at t=%v:\n", s.now)
	for _, n := range s.nodes {
		fmt.Fprintf(&b, "  %s (id %s, peer %s, up %v, warm %v)\n", n.name, n.id, n.peer, n.up, n.rule.Warm())
		for _, g := range n.rule.Status() {
			fmt.Fprintf(&b, "    %s: leader %s@%d", g.Name, orNone(g.Leader.Leader), g.Leader.Term)
			for _, m := range g.Members {
				fmt.Fprintf(&b, " [%s/%s alive=%v healthy=%v avail=%v elig=%v]", m.ID, m.Peer, m.Alive, m.Healthy, m.Available, m.Eligible)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}
