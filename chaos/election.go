package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
)

// The election checker ("election", chosen with Config.Checks or
// --check) watches the built-in cluster group, whose candidates are the
// nodes. At every stable moment it polls each running host's
// GET /v1/cluster until, in every connected component, all running hosts
// name the same leader and it is the expected one: the lowest node ID
// among the component's running, unpaused hosts that say they are
// available (the election's rule, byte-wise like the election compares
// IDs; a node joining or resyncing by state transfer is not a candidate,
// which is noted, and at the end is a failure). Then it records:
//
//   - failover: after a fault, in a component that lost the previous
//     leader (down, paused, or on the other side), the time from the
//     fault's start until the last host of the component took up the new
//     leadership (its start is read as now − since_ms);
//   - heal: after a heal, the time from the heal until the last host
//     took up the leadership they agree on (0 if none changed).
//
// After a heal and at the end the agreement must come before the
// observation's deadline, or the scenario fails. While a fault holds it
// must too when the faults in force cut the network cleanly (partitions,
// isolation) or act on processes; under loss, delay, a bridge or a
// one-way cut heartbeats may be late or relayed, leadership may
// legitimately flap, and a missed agreement is only noted.
type electionChecker struct {
	mu sync.Mutex
	// leader is the leader of the whole cluster at the last moment where
	// all hosts agreed ("" before the first).
	leader     string
	failovers  []time.Duration
	heals      []time.Duration
	violations []string
	notes      []string
	// finalLeaders is the number of leaders at the final moment.
	finalLeaders int
	observed     int
	// now is the clock that dates the hosts' answers (time.Now when
	// nil); tests fix it so durations do not depend on how fast the
	// machine answers.
	now func() time.Time
}

// strictNemeses are the nemeses under which a component must agree on
// its leader while the fault holds.
var strictNemeses = map[string]bool{
	"partition-halves": true, "partition-majority": true, "isolate": true,
	"kill": true, "pause": true, "clock-skew": true, "wipe": true,
	// The NAT faults kill hosts, or cut a site off (its router down,
	// and the same cut in the filter, so the components are right).
	"nat-hub-kill": true, "nat-router-restart": true, "nat-symmetric": true,
}

func newElectionChecker(ModelConfig) (Checker, error) { return &electionChecker{}, nil }

func (c *electionChecker) Name() string { return "election" }

// clusterView is one host's answer.
type clusterView struct {
	leader  string
	warming bool
	start   time.Time // when its current leadership began
	// members is how the host sees the candidates, for messages:
	// "n1:-hae" = not alive, healthy, available, eligible (a letter for
	// each that holds, '-' otherwise, in the order a h v e).
	members string
	// available: the host's own cluster candidate says it is ready to
	// lead (false while the node joins or resyncs by state transfer).
	available bool
	err       error
}

func readCluster(ctx context.Context, h *Host, now func() time.Time) clusterView {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	at := now()
	code, body, err := h.Request(rctx, http.MethodGet, "/v1/cluster", nil)
	if err != nil {
		return clusterView{err: err}
	}
	if code != http.StatusOK {
		return clusterView{err: fmt.Errorf("GET /v1/cluster: HTTP %d: %s", code, strings.TrimSpace(string(body)))}
	}
	var ci api.ClusterInfo
	if err := json.Unmarshal(body, &ci); err != nil {
		return clusterView{err: fmt.Errorf("GET /v1/cluster: %w", err)}
	}
	var ms []string
	available := false
	for _, m := range ci.Group.Members {
		if m.Local && m.ID == ci.NodeID {
			available = m.Available
		}
		flag := func(b bool, c byte) byte {
			if b {
				return c
			}
			return '-'
		}
		ms = append(ms, m.ID+":"+string([]byte{flag(m.Alive, 'a'), flag(m.Healthy, 'h'), flag(m.Available, 'v'), flag(m.Eligible, 'e')}))
	}
	return clusterView{leader: ci.Leader.Leader, warming: ci.Group.Warming, members: strings.Join(ms, " "), available: available,
		start: at.Add(-time.Duration(ci.Group.SinceMS) * time.Millisecond)}
}

// electionComponent is one component's live hosts and what they said.
type electionComponent struct {
	hosts []*Host
	views []clusterView
	// expected is the lowest ID among the hosts that say they are
	// available ("" when none is: no leader).
	expected string
	// unavailable are the hosts that say they are not.
	unavailable []string
}

// judge computes the expected leader from the views.
func (ec *electionComponent) judge() {
	ec.expected, ec.unavailable = "", nil
	for i, v := range ec.views {
		name := ec.hosts[i].Name()
		switch {
		case v.err != nil || v.warming:
		case !v.available:
			ec.unavailable = append(ec.unavailable, name)
		case ec.expected == "" || name < ec.expected:
			ec.expected = name
		}
	}
}

func (ec *electionComponent) agreed() bool {
	for _, v := range ec.views {
		if v.err != nil || v.warming || v.leader != ec.expected {
			return false
		}
	}
	return true
}

func (ec *electionComponent) describe() string {
	var parts []string
	for i, v := range ec.views {
		s := v.leader
		switch {
		case v.err != nil:
			s = "error: " + v.err.Error()
		case v.warming:
			s = "warming"
		case s == "":
			s = "none"
		}
		if v.err == nil && (v.warming || v.leader != ec.expected) && v.members != "" {
			s += " [" + v.members + "]"
		}
		parts = append(parts, ec.hosts[i].Name()+"→"+s)
	}
	want := ec.expected
	if want == "" {
		want = "none"
	}
	return fmt.Sprintf("want %s: %s", want, strings.Join(parts, ", "))
}

// lastStart is when the last host of the component took up its
// leadership.
func (ec *electionComponent) lastStart() time.Time {
	var t time.Time
	for _, v := range ec.views {
		if v.start.After(t) {
			t = v.start
		}
	}
	return t
}

func (c *electionChecker) Observe(ctx context.Context, m Moment) {
	byName := map[string]*Host{}
	for _, h := range m.Hosts {
		byName[h.Name()] = h
	}
	out := map[string]bool{}
	for _, n := range append(slices.Clone(m.Down), m.Paused...) {
		out[n] = true
	}
	var comps []*electionComponent
	for _, names := range m.Components {
		ec := &electionComponent{}
		for _, n := range names {
			if h := byName[n]; h != nil && !out[n] {
				ec.hosts = append(ec.hosts, h)
			}
		}
		if len(ec.hosts) > 0 {
			comps = append(comps, ec)
		}
	}
	strict := true
	for _, n := range m.Nemeses {
		if !strictNemeses[n] {
			strict = false
		}
	}
	settled := strings.HasPrefix(m.Label, "settled")
	healed := strings.HasPrefix(m.Label, "healed")
	now := c.now
	if now == nil {
		now = time.Now
	}
	// Poll until every component agrees or the moment's time is up.
	ok := false
	for {
		ok = true
		for _, ec := range comps {
			ec.views = make([]clusterView, len(ec.hosts))
			var wg sync.WaitGroup
			for i, h := range ec.hosts {
				wg.Go(func() { ec.views[i] = readCluster(ctx, h, now) })
			}
			wg.Wait()
			ec.judge()
			if !ec.agreed() {
				ok = false
			}
		}
		if ok || !sleepCtx(ctx, 200*time.Millisecond) {
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observed++
	if m.Label == "final" {
		leaders := map[string]bool{}
		for _, ec := range comps {
			for _, v := range ec.views {
				if v.err == nil && v.leader != "" {
					leaders[v.leader] = true
				}
			}
		}
		c.finalLeaders = len(leaders)
	}
	var unavailable []string
	for _, ec := range comps {
		unavailable = append(unavailable, ec.unavailable...)
	}
	if len(unavailable) > 0 {
		msg := fmt.Sprintf("%s: %s said they were not available (joining or resyncing by state transfer)", m.Label, strings.Join(unavailable, " "))
		if m.Label == "final" {
			// Everything has converged: every node must be a candidate.
			c.violations = append(c.violations, msg)
		} else {
			c.notes = append(c.notes, msg)
		}
	}
	if !ok && ctx.Err() != nil && !answered(comps) {
		c.notes = append(c.notes, m.Label+": no host answered before the observation's deadline: not judged")
		return
	}
	if !ok {
		var why []string
		for _, ec := range comps {
			if !ec.agreed() {
				why = append(why, ec.describe())
			}
		}
		msg := fmt.Sprintf("%s: no agreement on the expected leader before the deadline (%s)", m.Label, strings.Join(why, "; "))
		switch {
		case settled && !strict:
			c.notes = append(c.notes, msg+" [tolerated under "+strings.Join(m.Nemeses, "+")+"]")
		case settled && withinIdleBound(comps, m.Since, now(), len(m.Hosts)):
			c.notes = append(c.notes, msg+" [tolerated: a host still counts alive a host it cannot reach, within the election's idle timeout]")
		default:
			c.violations = append(c.violations, msg)
		}
		return
	}
	prev := c.leader
	if prev == "" && len(m.Hosts) > 0 {
		// Before the first fault every host ran: the lowest ID led.
		prev = m.Hosts[0].Name()
		for _, h := range m.Hosts[1:] {
			if h.Name() < prev {
				prev = h.Name()
			}
		}
	}
	for _, ec := range comps {
		lost := true
		for _, h := range ec.hosts {
			if h.Name() == prev {
				lost = false
			}
		}
		switch {
		case settled && lost && !m.Since.IsZero():
			if d := ec.lastStart().Sub(m.Since); d > 0 {
				c.failovers = append(c.failovers, d)
			}
		case healed && !m.Since.IsZero() && len(comps) == 1:
			c.heals = append(c.heals, max(0, ec.lastStart().Sub(m.Since)))
		}
	}
	if len(comps) == 1 && len(comps[0].hosts) == len(m.Hosts) {
		c.leader = comps[0].expected
	}
}

// electionIdleBound is how long a node counts a silent peer alive when
// that peer heartbeats at its idle period (it neither leads nor stands
// next in line): Timeout/Interval of those periods, the price of idle
// heartbeats that election.Config.IdlePeriod documents. A host cut off
// from its leader, its next in line and an idle host of a lower ID names
// that idle host its leader until then (seen with isolate and
// nat-router-restart: "want n5: n5→n3", n3 idle, within a hold of 4-8 s
// while the bound is 8 s). The suite's nodes run the lan preset.
func electionIdleBound(hosts int) time.Duration {
	cfg := election.LANConfig()
	idle := cfg.IdlePeriod
	if idle <= 0 {
		idle = max(10*cfg.Interval, cfg.Interval*time.Duration(hosts)/2)
	}
	return time.Duration(float64(cfg.Timeout) * float64(idle) / float64(cfg.Interval))
}

// withinIdleBound reports whether a settled moment that found no
// agreement came sooner than electionIdleBound after the fault, and
// every host that disagreed named a leader outside its component (one it
// cannot reach and still counts alive): the election's documented
// bound, not a fault.
func withinIdleBound(comps []*electionComponent, since, now time.Time, hosts int) bool {
	if since.IsZero() || now.Sub(since) >= electionIdleBound(hosts) {
		return false
	}
	for _, ec := range comps {
		in := map[string]bool{}
		for _, h := range ec.hosts {
			in[h.Name()] = true
		}
		for _, v := range ec.views {
			switch {
			case v.err == nil && !v.warming && v.leader == ec.expected:
			case v.err != nil || v.warming || v.leader == "" || in[v.leader]:
				return false
			}
		}
	}
	return true
}

// answered reports whether some host of comps gave an answer.
func answered(comps []*electionComponent) bool {
	for _, ec := range comps {
		for _, v := range ec.views {
			if v.err == nil {
				return true
			}
		}
	}
	return false
}

func (c *electionChecker) Check(CheckInput) Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := Verdict{Checker: "election", Counts: map[string]int{"leaders": c.finalLeaders, "leader-faults": len(c.violations)},
		Durations: map[string][]time.Duration{"failover": slices.Clone(c.failovers), "leader-heal": slices.Clone(c.heals)}}
	for _, s := range c.violations {
		v.problem("%s", s)
	}
	for _, s := range c.notes {
		v.problem("note: %s", s)
	}
	if c.observed == 0 {
		v.problem("never observed the cluster")
	}
	v.OK = len(c.violations) == 0 && c.observed > 0
	return v
}

var (
	_ Checker  = (*electionChecker)(nil)
	_ Observer = (*electionChecker)(nil)
)
