package monitor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/p2p"
)

// The link check: the round trips of p2p's liveness pings against the
// election's link budget (election.Config.LinkBudget), so that an
// operator who runs the LAN timings across a wide-area link learns it
// from a warning instead of from false failovers.
const (
	// linkMinSamples: a link is judged from its third sample on (about
	// 20 s after it connected: p2p samples every 10 s), so that one slow
	// first pong (a connection still settling) does not warn.
	linkMinSamples = 3
	// linkWarnEvery: a link that stays too slow is warned about again
	// after this long, so the warning is not lost in a long log, and
	// is not repeated every second either.
	linkWarnEvery = 10 * time.Minute
)

// judgedRTT is the round trip a link is judged by: the second highest of
// its recent samples (one outlier, a pong answered late by a busy peer,
// does not count; two are a pattern), and the lowest. ok is false with
// fewer than linkMinSamples samples.
func judgedRTT(rtts []time.Duration) (judged, lowest time.Duration, ok bool) {
	if len(rtts) < linkMinSamples {
		return 0, 0, false
	}
	s := slices.Clone(rtts)
	slices.Sort(s)
	return s[len(s)-2], s[0], true
}

// judgeLinks judges the connected peers' round trips against cfg's link
// budget. idString gives a peer ID's string form; names maps those to
// node IDs where known; skip leaves peers out (removed ones). It also returns the median round trip of
// each connected peer with a sample, for the metrics, and the peers it
// judged.
func judgeLinks(peers []p2p.PeerLink, idString func(peer.ID) string, names map[string]string, skip map[string]bool, cfg election.Config) (st api.LinkStatus, medians map[string]time.Duration, judged map[string]bool) {
	budget := cfg.LinkBudget()
	st = api.LinkStatus{Preset: cfg.PresetName(), BudgetMS: ms(budget)}
	medians, judged = map[string]time.Duration{}, map[string]bool{}
	var worst time.Duration
	for _, p := range peers {
		if !p.Connected || len(p.RTTs) == 0 {
			continue
		}
		id := idString(p.ID)
		if skip[id] {
			continue
		}
		sorted := slices.Sorted(slices.Values(p.RTTs))
		medians[id] = sorted[len(sorted)/2]
		rtt, lowest, ok := judgedRTT(p.RTTs)
		if !ok {
			continue
		}
		st.Measured++
		judged[id] = true
		worst = max(worst, rtt)
		if rtt > budget {
			st.Slow = append(st.Slow, api.SlowLink{PeerID: id, NodeID: names[id], RTTMS: ms(rtt), MinRTTMS: ms(lowest)})
		}
	}
	st.WorstMS = ms(worst)
	slices.SortFunc(st.Slow, func(a, b api.SlowLink) int {
		return strings.Compare(a.NodeID+"/"+a.PeerID, b.NodeID+"/"+b.PeerID)
	})
	if len(st.Slow) > 0 {
		st.Advice = linkAdvice(st.Preset, worst)
	}
	return st, medians, judged
}

// linkAdvice says what to do about links as slow as worst.
func linkAdvice(preset string, worst time.Duration) string {
	wan := election.WANConfig()
	if preset != "wan" && worst <= wan.LinkBudget() {
		return fmt.Sprintf("use --election-preset wan on every node (round trips up to %v; failover then takes 4-5 s)", wan.LinkBudget())
	}
	return "these links are slower than the election timings take: fix the link (loss, congestion), or give every node longer election timings (node.WithElectionConfig)"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// linkWarner rate-limits the slow-link warning: it warns when a peer
// becomes slow that was not warned about in the last linkWarnEvery, and
// says once when the slow links fit again (measured again and within
// the budget: a slow peer that went away has not become fast). Times
// are the monitor's monotonic clock (Monitor.now), injected by tests.
type linkWarner struct {
	warned map[string]time.Duration // peer ID → when last named in a warning
	slow   map[string]bool          // peers slow when last judged
}

// update takes the latest judgement and the peers it judged: warn is
// true when it must be logged now, cleared when the links that were
// slow fit again.
func (w *linkWarner) update(now time.Duration, st api.LinkStatus, judged map[string]bool) (warn, cleared bool) {
	if w.warned == nil {
		w.warned, w.slow = map[string]time.Duration{}, map[string]bool{}
	}
	was := len(w.slow) > 0
	for id := range w.slow {
		if judged[id] {
			delete(w.slow, id) // judged again: slow again below, or fit
		}
	}
	for _, s := range st.Slow {
		w.slow[s.PeerID] = true
		if at, ok := w.warned[s.PeerID]; !ok || now-at >= linkWarnEvery {
			warn = true
		}
	}
	if warn {
		for _, s := range st.Slow {
			w.warned[s.PeerID] = now
		}
	}
	return warn, was && len(w.slow) == 0
}

// checkLinks judges the links (peers, as the tick read them: reading
// them again was 6% of the monitor's CPU at 100 idle nodes) and logs
// what changed. Called every ReportInterval from the monitor's loop.
func (m *Monitor) checkLinks(peers []p2p.PeerLink, views []nodestate.PeerView) {
	cfg := m.cfg.Election.Config()
	m.mu.Lock()
	names := map[string]string{}
	for _, v := range views {
		if v.Node != "" {
			names[v.Peer] = v.Node
		}
	}
	st, medians, judged := judgeLinks(peers, m.idString, names, m.removed, cfg)
	m.links, m.linkRTTs = st, medians
	warn, cleared := m.linkWarn.update(m.now(), st, judged)
	m.mu.Unlock()

	switch {
	case warn:
		var slow []string
		for _, s := range st.Slow {
			name := s.NodeID
			if name == "" {
				name = shortID(s.PeerID)
			}
			slow = append(slow, fmt.Sprintf("%s %v (lowest %v)", name, msDur(s.RTTMS), msDur(s.MinRTTMS)))
		}
		m.log.Warn(fmt.Sprintf("election: round trips to peers exceed what the %s timings take (%v: a quarter of their pause tolerance); false failovers are likely; %s",
			st.Preset, msDur(st.BudgetMS), st.Advice), "peers", slow, "preset", st.Preset, "budget", msDur(st.BudgetMS))
	case cleared:
		m.log.Info("election: round trips to every peer fit the election timings again", "preset", st.Preset, "budget", msDur(st.BudgetMS), "worst", msDur(st.WorstMS))
	}
}

func msDur(v float64) time.Duration {
	return time.Duration(v * float64(time.Millisecond)).Round(time.Millisecond)
}

// LinkStatus is how the round trips to the peers fit the election
// timings, as last judged.
func (m *Monitor) LinkStatus() api.LinkStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.links
	st.Slow = slices.Clone(st.Slow)
	if st.Preset == "" { // before the first check
		cfg := m.cfg.Election.Config()
		st.Preset, st.BudgetMS = cfg.PresetName(), ms(cfg.LinkBudget())
	}
	return st
}
