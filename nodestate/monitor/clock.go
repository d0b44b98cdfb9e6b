package monitor

import (
	"fmt"
	"slices"
	"time"

	"github.com/starling-sync/starling/api"
)

// Clock check: every report carries its sender's physical clock (with
// its --clock-offset), and the receiver keeps the difference to its own,
// per peer. Once a tick, over the peers heard within clockFresh and this
// node itself (difference 0), the median difference says where the
// cluster's clock is: beyond the entity store's maximum offset, this
// node's clock is the odd one out, and it refuses writes until the clock
// is fixed (entity.Store.SetClockSkew), as CockroachDB does. The median
// needs a majority: with one peer (or any even split), the middle value
// closer to this node's own clock is taken, so two nodes that disagree
// both keep writing and both log the disagreement, since neither can
// tell which clock is wrong.
//
// A report's difference is the peer's offset minus the report's delay
// (gossip, queues, a stalled receiver), so a delay can only make a peer
// look behind. Delays are milliseconds in a healthy cluster, but reports
// that waited minutes in a saturated process's queues (100 nodes in one
// process) made a node refuse writes as "5m46s ahead" of peers sharing
// its clock. So each peer counts with the largest difference it reported
// within its freshness window, which the longest delay in the window does
// not lower.

// clockFresh is how recent a peer's report must be to count, or two of
// the periods the report announced if longer (an idle peer).
const clockFresh = 5 * ReportInterval

// clockSample is what a peer's reports say of its clock.
type clockSample struct {
	diff  time.Duration // the largest difference (peer's clock minus this node's) since at
	at    time.Time     // when the report with diff arrived (monotonic)
	fresh time.Duration // how long a report counts
	// last and lastAt: the latest report's difference, which counts once
	// diff's report is older than fresh.
	last   time.Duration
	lastAt time.Time
}

// noted is s with one more report, of difference d, arriving at now,
// which counts for fresh. The largest difference is kept until its
// report is older than fresh; then the new report starts anew. A clock
// set back (fixed) thus shows within one freshness window.
func (s clockSample) noted(d time.Duration, now time.Time, fresh time.Duration) clockSample {
	s.fresh, s.last, s.lastAt = fresh, d, now
	if s.at.IsZero() || now.Sub(s.at) > fresh || d >= s.diff {
		s.diff, s.at = d, now
	}
	return s
}

// current is the difference the peer counts with at now: the largest
// within its freshness window, else its latest report's; ok is false when
// that is stale too.
func (s clockSample) current(now time.Time) (d time.Duration, ok bool) {
	stale := func(at time.Time) bool { return now.Sub(at) > clockFresh && now.Sub(at) > s.fresh }
	switch {
	case !stale(s.at):
		return s.diff, true
	case !s.lastAt.IsZero() && !stale(s.lastAt):
		return s.last, true
	}
	return 0, false
}

// noteClock records a peer's clock reading from its report, which
// announced periodMS.
func (m *Monitor) noteClock(from string, peerNs, periodMS int64) {
	if peerNs == 0 {
		return // a sender of an older version
	}
	local := m.cfg.Entities.PhysicalNow()
	fresh := max(clockFresh, 2*time.Duration(periodMS)*time.Millisecond)
	m.mu.Lock()
	m.clocks[from] = m.clocks[from].noted(time.Duration(peerNs-local.UnixNano()), time.Now(), fresh)
	m.mu.Unlock()
}

// checkClock runs once a tick: it takes the median difference, sets or
// clears the entity store's write refusal, and logs changes.
func (m *Monitor) checkClock() {
	max := m.cfg.Entities.MaxClockOffset()
	m.mu.Lock()
	med, peers, odd := judgeClocks(m.clocks, m.removed, time.Now(), max)
	skewed := max >= 0 && med.Abs() > max
	was := m.clockSkewed
	m.clockSkewed, m.clockMedian, m.clockPeers = skewed, med, peers
	oddChanged := !slices.Equal(odd, m.clockOdd)
	m.clockOdd = odd
	m.mu.Unlock()

	switch {
	case skewed:
		reason := fmt.Sprintf("this node's clock is %v %s the median of %d peers (the maximum offset is %v)",
			med.Abs().Round(time.Second), aheadBehind(med), peers, max)
		m.cfg.Entities.SetClockSkew(reason)
		if !was {
			m.log.Error("clock: "+reason+"; writes are refused until the clock is fixed", "median_offset", med.Round(time.Millisecond))
		}
	case was:
		m.cfg.Entities.SetClockSkew("")
		m.log.Warn("clock: this node's clock agrees with the cluster's again; writes are taken", "median_offset", med.Round(time.Millisecond))
	}
	if len(odd) > 0 && oddChanged && !skewed {
		m.log.Warn("clock: peers' clocks differ from this node's by more than the maximum offset; whichever is wrong must be fixed (a majority of agreeing peers makes the odd node refuse writes)",
			"peers", odd, "max_offset", max)
	}
}

// ClockStatus is this node's clock as the cluster sees it.
func (m *Monitor) ClockStatus() api.ClockStatus {
	max := m.cfg.Entities.MaxClockOffset()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := api.ClockStatus{
		MedianOffsetMS: float64(m.clockMedian) / float64(time.Millisecond),
		MaxOffsetMS:    float64(max) / float64(time.Millisecond),
		Peers:          m.clockPeers,
		Skewed:         m.clockSkewed,
		Disagreeing:    slices.Clone(m.clockOdd),
		FarFuture:      m.cfg.Entities.FarFutureVersions(),
	}
	return st
}

// judgeClocks takes the fresh peers' clock differences (the removed left
// out): their median with this node's own 0, how many peers counted, and
// the peers beyond max ("ID +2h0m0s"), sorted, so that one tick's list
// compares equal to the last one's when nothing changed.
func judgeClocks(samples map[string]clockSample, removed map[string]bool, now time.Time, max time.Duration) (med time.Duration, peers int, odd []string) {
	diffs := []time.Duration{0}
	for id, s := range samples {
		d, ok := s.current(now)
		if !ok || removed[id] {
			continue
		}
		diffs = append(diffs, d)
		if max >= 0 && d.Abs() > max {
			odd = append(odd, fmt.Sprintf("%s %+v", shortID(id), d.Round(time.Second)))
		}
	}
	slices.Sort(odd)
	return median(diffs), len(diffs) - 1, odd
}

// median of d (not empty; sorted in place); of an even count, the
// middle value closer to zero (this node's own clock).
func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	n := len(d)
	if n%2 == 1 {
		return d[n/2]
	}
	if a, b := d[n/2-1], d[n/2]; a.Abs() > b.Abs() {
		return b
	}
	return d[n/2-1]
}

// aheadBehind says where this node's clock is, given the peers' median
// difference (peers minus this node).
func aheadBehind(med time.Duration) string {
	if med < 0 {
		return "ahead of"
	}
	return "behind"
}

func shortID(id string) string {
	if len(id) > 12 {
		return "…" + id[len(id)-8:]
	}
	return id
}

// truncate cuts s to at most n bytes (a report's bounded fields).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
