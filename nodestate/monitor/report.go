package monitor

import (
	"bytes"
	"time"

	"github.com/starling-sync/starling/internal/jitter"
	"github.com/starling-sync/starling/nodestate"
)

// Reports cost every node a message per report of every other node, so
// a quiet node reports less often: at once when its phase, errors or
// membership change (urgentPart), every busy period while only its
// counters and heads change (writes), then once more to announce its
// idle period, then every idle period until something changes. Receivers
// scale SuspectAfter and DeadAfter to the period a report announces
// (nodestate.ReportTimeouts). Both periods grow with the cluster, so
// that its nodes together send about 1/busyReportPerNode reports per
// second while all of them take writes, and 1/idleReportPerNode while
// all are quiet, whatever their number.
const (
	// idleReportMin is the shortest idle period (a small cluster).
	idleReportMin = 5 * time.Second
	// idleReportPerNode: the idle period is this times the number of
	// live nodes when that is longer (24 nodes: 6 s; 200 nodes: 50 s).
	idleReportPerNode = 250 * time.Millisecond
	// busyReportPerNode: the busy period is this times the number of
	// live nodes when that is longer than ReportInterval (up to 50
	// nodes: every second, as before; 100 nodes: 2 s; 200: 4 s). With
	// every node reporting every second under writes, 100 whole nodes
	// on a mocknet each handled over 150 report messages a second
	// (duplicates included), gossipsub dropped thousands at full queues,
	// and writes took tens of seconds to reach every node.
	busyReportPerNode = 20 * time.Millisecond
)

// busyReportPeriod is the busy period for n live nodes.
func busyReportPeriod(n int) time.Duration {
	return max(ReportInterval, time.Duration(n)*busyReportPerNode)
}

// urgentPart is what of a report goes out at once when it changes: all
// but the counters, heads and sizes, which change with every write.
func urgentPart(r nodestate.NodeReport) []byte {
	r = r.Quiet()
	r.WritesOut, r.WritesIn, r.Heads, r.Height, r.Queued = 0, 0, 0, 0, 0
	r.StableHeads, r.HeadsKnown = nil, false
	return r.Encode()
}

// idleReportPeriod is the idle period for n live nodes (this one
// included).
func idleReportPeriod(n int) time.Duration {
	return max(idleReportMin, time.Duration(n)*idleReportPerNode)
}

// countLive counts this node and the peers that are neither DEAD, LEFT
// nor removed. Called with m.mu held.
func (m *Monitor) countLive(views []nodestate.PeerView) int {
	n := 1
	for _, v := range views {
		if v.Heard && v.State != nodestate.StateDead && v.State != nodestate.StateLeft && !m.removed[v.Peer] {
			n++
		}
	}
	return n
}

// liveNodes is countLive at the last tick (1 before the first).
func (m *Monitor) liveNodes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(m.live, 1)
}

// publishIfDue sends the report as reportDue decides: at once when its
// urgent part changed, every busy period while the rest changes, when
// the period announced last is up, or when force is set (a new
// connection). A changed report announces the busy period, a quiet one
// the idle period of the cluster's current size; the next is due after
// the shorter of that and the period announced before, so the
// announcement always holds.
func (m *Monitor) publishIfDue(force bool) {
	m.sampleHeads()
	r := m.report()
	q := r.Quiet()
	quiet := q.Encode()
	changed := !bytes.Equal(quiet, m.lastQuiet)
	// The urgent part is a part of the quiet form: it can only have
	// changed when that did, and an idle tick need not encode it.
	urgent := m.lastUrgent
	if changed {
		urgent = urgentPart(q)
	}
	live := m.liveNodes()
	now := time.Now()
	period, send := reportDue(changed, !bytes.Equal(urgent, m.lastUrgent), force, m.lastPeriod,
		idleReportPeriod(live), busyReportPeriod(live), now.Sub(m.lastPub), m.early)
	if !send {
		return
	}
	r.PeriodMS = period.Milliseconds()
	m.lastPub, m.lastQuiet, m.lastUrgent, m.lastPeriod = now, quiet, urgent, period
	m.early = earlyFraction(m.cfg.NodeID, r.Seq)
	m.send(r)
}

// earlyFraction is how early, as a fraction of the idle period, a
// node's next idle report goes out: [0, 1/4), from a hash of its node ID
// and report sequence. Nodes started together otherwise report in step,
// every idle period all at once (200 nodes: 200 reports in one second,
// each copied to every peer). Receivers judge a node by the period it
// announced, so reporting early is safe; it costs up to a third more
// idle reports (an eighth on average).
func earlyFraction(node string, seq uint64) float64 {
	return jitter.Fraction(node, seq) / 4
}

// reportDue decides whether a report goes out now and the period it
// announces: its urgent part changed (the first report too), it changed
// and since (the time since the last one) reaches busy, forced, or the
// period is up: since reaches the shorter of the period announced last
// and idle, less the fraction early of it (earlyFraction). Each less
// half a tick: a tick early rather than a tick late. A changed report
// announces busy, an unchanged one idle.
func reportDue(changed, urgent, force bool, last, idle, busy, since time.Duration, early float64) (period time.Duration, send bool) {
	due := min(last, idle)
	up := since >= due-time.Duration(early*float64(due))-ReportInterval/2
	switch {
	case urgent, changed && (up || since >= busy-ReportInterval/2):
		return busy, true
	case force, up:
		return idle, true
	}
	return 0, false
}
