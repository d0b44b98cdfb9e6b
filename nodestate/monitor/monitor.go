package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/peerlog"
	"github.com/starling-sync/starling/internal/version"
	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/p2p"
)

// The monitor drives PeerStates (peerstate.go) and keeps what the
// operator views need: the cluster table, per-node samples for the web
// page's charts, recent transitions and leadership changes, and the
// Prometheus metrics served on /metrics.

// NodeStateTopic is the gossipsub topic ("starling/<env>/nodestate") on
// which every node publishes its NodeReport.
const NodeStateTopic = "nodestate"

// ReportInterval is how often a node publishes its report, ticks its
// peer states and takes a sample for the charts.
const ReportInterval = time.Second

// Sizes of the monitor's rings.
const (
	historySamples = 300 // 5 minutes at ReportInterval
	recentEvents   = 200
)

// monitor is the driver of PeerStates for a Node.
type Monitor struct {
	cfg   Config
	log   *slog.Logger
	topic *p2p.Topic
	start time.Time
	inc   uint64
	reg   *prometheus.Registry

	writeDur    *prometheus.HistogramVec
	replLatency prometheus.Histogram
	replWrites  prometheus.Counter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	kick   chan struct{} // a peer connected: greet soon (buffered 1)

	mu      sync.Mutex
	states  *nodestate.PeerStates
	removed map[string]bool
	seq     uint64
	// The last report published: when, its quiet form (NodeReport.Quiet)
	// and the period it announced (report.go).
	lastPub    time.Time
	lastQuiet  []byte
	lastUrgent []byte // urgentPart of the last report
	lastPeriod time.Duration
	early      float64         // the next idle report goes out this fraction of its period early
	greetings  greetings       // peers connected since the last greet
	badReports peerlog.Limiter // warnings about undecodable reports
	live       int             // live nodes at the last tick, this one included (liveNodes)
	ids        map[peer.ID]string
	leaving    bool
	trans      []nodestate.Transition
	changes    []api.LeadershipChange
	watchers   map[string]*election.Watcher
	failovers  map[string]uint64
	history    map[string][]api.Sample
	prev       map[string]counters // last counters per node, for rates
	latSum     float64             // replication latency of this interval (ms)
	latN       int
	lastLatMS  float64
	// heads and headsKnown are this node's last stable heads sample,
	// published in its reports.
	heads      []string
	headsKnown bool
	// lastRebase is when this node last started a rebase.
	lastRebase time.Time
	// The clock check (clock.go): each peer's clock difference, and the
	// last verdict.
	clocks      map[string]clockSample
	clockMedian time.Duration
	clockPeers  int
	clockSkewed bool
	clockOdd    []string
	// The link check (links.go): the last judgement, each judged peer's
	// round trip, and the warning's rate limit.
	links    api.LinkStatus
	linkRTTs map[string]time.Duration
	linkWarn linkWarner
}

type counters struct {
	out, in  uint64
	at       time.Time
	inc, seq uint64 // the report they came from (newReport)
}

// Config is what a Monitor reads from its node. Every field but Logger
// and PeerStates is required.
type Config struct {
	// NodeID and Env name this node in its reports and metrics.
	NodeID string
	Env    string
	// Build is the running build, reported to peers and in
	// starling_build_info; zero: not reported.
	Build version.Info
	// P2P supplies the nodestate topic, the peers and their connections.
	P2P *p2p.Node
	// Store supplies the counters of the reports and metrics.
	Store *crdt.Store
	// Election supplies the leadership changes and election metrics.
	Election *election.Runner
	// Entities supplies the remote changes whose latency is measured.
	Entities *entity.Store
	// Sync returns the node's join/resync progress; called from the
	// monitor's goroutines, it must not block.
	Sync func() nodestate.SyncProgress
	// Rebase takes a state transfer from the peer named (a rebase, see
	// crdt/evict.go); nil: this node never rebases by itself.
	Rebase func(peer string) error
	// PeerStates sets the timings of the node states computed for peers
	// (SUSPECT, DEAD, LEFT); zero fields keep the defaults.
	PeerStates nodestate.PeerStateConfig
	// Logger receives state changes. Default: discard.
	Logger *slog.Logger
}

// Start joins the nodestate topic and starts the monitor's goroutines.
// Close stops them.
func Start(cfg Config) (*Monitor, error) {
	if cfg.P2P == nil || cfg.Store == nil || cfg.Election == nil || cfg.Entities == nil || cfg.Sync == nil {
		return nil, errors.New("monitor: Config needs P2P, Store, Election, Entities and Sync")
	}
	if err := cfg.PeerStates.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	topic, err := cfg.P2P.JoinTopic(NodeStateTopic)
	if err != nil {
		return nil, fmt.Errorf("node states: %w", err)
	}
	m := &Monitor{
		cfg:       cfg,
		log:       log,
		topic:     topic,
		start:     time.Now(),
		states:    nodestate.NewPeerStates(cfg.PeerStates),
		removed:   make(map[string]bool),
		ids:       make(map[peer.ID]string),
		clocks:    make(map[string]clockSample),
		watchers:  make(map[string]*election.Watcher),
		failovers: make(map[string]uint64),
		history:   make(map[string][]api.Sample),
		prev:      make(map[string]counters),
		reg:       prometheus.NewRegistry(),
		kick:      make(chan struct{}, 1),
	}
	m.inc = uint64(m.start.UnixNano())
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.registerMetrics()

	// The cluster group exists from the start: watch it before its first
	// leader is elected, so that election is recorded too.
	m.watchers[election.ClusterGroup] = cfg.Election.Watch(election.ClusterGroup)
	events, cancelEvents := cfg.P2P.SubscribePeers()
	watch := cfg.Entities.WatchRemote("/", 4096)
	cfg.P2P.HandleStream(reportProtocol, m.serveReport)
	m.wg.Add(4)
	go m.loop()
	go m.receive()
	go m.peerEvents(events, cancelEvents)
	go m.watchRemote(watch)
	return m, nil
}

// now is the machine's clock: monotonic time since the monitor started.
func (m *Monitor) now() time.Duration { return time.Since(m.start) }

// close publishes the goodbye, stops the goroutines and leaves the
// topic. Safe to call twice.
func (m *Monitor) Close() error {
	var err error
	m.once.Do(func() {
		m.mu.Lock()
		m.leaving = true
		m.mu.Unlock()
		m.publish() // goodbye: the others show LEAVING, then LEFT
		m.cancel()
		m.wg.Wait()
		m.mu.Lock()
		for _, w := range m.watchers {
			w.Close()
		}
		m.mu.Unlock()
		err = m.topic.Close()
	})
	return err
}

// connectReportDelay is how long after a new connection the node reports
// to it (greet.go): the connections that come up meanwhile are greeted
// together, and gossipsub has had time to add the peer (it drops what is
// published in the first ~100 ms).
const connectReportDelay = 300 * time.Millisecond

func (m *Monitor) loop() {
	defer m.wg.Done()
	t := time.NewTicker(ReportInterval)
	defer t.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	defer soon.Stop()
	m.publishIfDue(true)
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
			soon.Reset(connectReportDelay)
			continue
		case <-soon.C:
			m.greet()
			continue
		case <-t.C:
		}
		m.publishIfDue(false)
		links, views := m.tick()
		m.checkClock()
		m.checkLinks(links, views)
	}
}

// report builds this node's report.
func (m *Monitor) report() nodestate.NodeReport {
	st := m.cfg.Store.Status(m.ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	return nodestate.NodeReport{
		Node: m.cfg.NodeID, Incarnation: m.inc, Seq: m.seq, Leaving: m.leaving,
		Sync: m.cfg.Sync(), WritesOut: st.OpsCommitted, WritesIn: st.Received,
		Heads: len(st.Heads), Height: st.MaxHeight, Queued: st.QueuedJobs + st.ReceiveQueue, Dirty: st.Dirty,
		ReplLatencyMS: m.lastLatMS, StableHeads: m.heads, HeadsKnown: m.headsKnown,
		LiveBytes: st.LiveBytes, HistoryBytes: st.HistoryBytes,
		Installs: st.Installs, EvictedBack: m.cfg.Store.EvictedBack(), Lineage: m.cfg.Store.Lineage(),
		Clock: m.cfg.Entities.PhysicalNow().UnixNano(), WriteError: truncate(st.WriteError, 512), ClockSkewed: m.clockSkewed,
		Version: m.cfg.Build.String(),
	}
}

// sampleHeads takes this node's stable heads for its next report, when
// the store is between remote branches; otherwise the last sample stays.
func (m *Monitor) sampleHeads() {
	heads, ok := m.cfg.Store.StableHeads(m.ctx)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(heads) > nodestate.MaxStableHeads {
		m.heads, m.headsKnown = nil, false
		return
	}
	m.heads, m.headsKnown = heads, true
}

// publish sends this node's report now, announcing ReportInterval as
// its period (the goodbye).
func (m *Monitor) publish() {
	m.sampleHeads()
	r := m.report()
	r.PeriodMS = ReportInterval.Milliseconds()
	m.send(r)
}

func (m *Monitor) send(r nodestate.NodeReport) {
	ctx, cancel := context.WithTimeout(context.Background(), ReportInterval)
	defer cancel()
	if err := m.topic.Publish(ctx, r.Encode()); err != nil && m.ctx.Err() == nil {
		m.log.Debug("node report not sent", "err", err)
	}
}

// tick reconciles the machine with libp2p's peers, advances it, and
// takes the samples and leadership changes of the interval. It returns
// the links it read and the peers' views after the tick, and notes how
// many nodes are live (liveNodes): each read once a tick, which is
// O(peers) per node.
func (m *Monitor) tick() ([]p2p.PeerLink, []nodestate.PeerView) {
	peers := m.cfg.P2P.Links()
	groups := m.cfg.Election.GroupNames()
	self := m.report() // counters for the sample (seq is not published)
	now := m.now()
	wall := time.Now()

	// The network's own view of each connection: p2p's record can lag
	// (a peer that dialled in while removed, then was added again).
	netw := m.cfg.P2P.Host().Network()
	up := make(map[peer.ID]bool, len(peers))
	for _, p := range peers {
		// Limited: only through a relay, which is a connection too (the
		// replication stream and state transfer use it).
		c := netw.Connectedness(p.ID)
		up[p.ID] = c == network.Connected || c == network.Limited
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range peers {
		id := m.idString(p.ID)
		if m.removed[id] {
			continue
		}
		m.states.Known(now, id)
		m.states.Connected(now, id, up[p.ID])
		// A peer this node is connected to, or was told to dial, is a
		// compaction member before its first report: a node just started
		// must not reclaim what such a peer may not have merged.
		if up[p.ID] || p.Static {
			m.cfg.Store.NoteMember(id)
		}
	}
	m.states.Tick(now)
	m.takeTransitions(now)

	// This interval's replication latency, published with the next report.
	m.lastLatMS = 0
	if m.latN > 0 {
		m.lastLatMS = m.latSum / float64(m.latN)
	}
	m.latSum, m.latN = 0, 0
	m.sample(self.Node, self, wall)
	views := m.states.Peers(now)
	m.live = m.countLive(views)
	for _, v := range views {
		if v.Heard && v.State != nodestate.StateDead && v.State != nodestate.StateLeft && m.newReport(v.Report) {
			m.sample(v.Report.Node, v.Report, wall)
		}
	}
	m.pollElection(groups, wall)
	return peers, views
}

// idString is id.String(), kept: base58 encoding every peer's ID twice a
// tick was 3% of 100 idle nodes' CPU. Called with m.mu held.
func (m *Monitor) idString(id peer.ID) string {
	s, ok := m.ids[id]
	if !ok {
		s = id.String()
		m.ids[id] = s
	}
	return s
}

func (m *Monitor) takeTransitions(now time.Duration) {
	for _, t := range m.states.Take() {
		t.Time = m.start.Add(t.At)
		lvl := slog.LevelInfo
		if t.To == string(nodestate.StateDead) || t.To == string(nodestate.StateSuspect) {
			lvl = slog.LevelWarn
		}
		m.log.Log(context.Background(), lvl, "peer "+t.What+" changed", "peer", t.Peer, "peer_node", t.Node,
			"from", t.From, "to", t.To, "reason", t.Reason)
		m.trans = appendRing(m.trans, t, recentEvents)
	}
}

// newReport reports whether r is a report of its node not sampled yet.
// A peer is sampled once per report, not once per tick: a quiet peer's
// report repeats for its whole idle period (50 s at 200 nodes), and
// sampling it every tick kept 300 samples of every peer on every node,
// memory that grew with the cluster on each node (1.9 MiB per node at
// 200 nodes) to draw a flat line.
func (m *Monitor) newReport(r nodestate.NodeReport) bool {
	p, ok := m.prev[r.Node]
	return !ok || p.inc != r.Incarnation || p.seq != r.Seq
}

func (m *Monitor) sample(node string, r nodestate.NodeReport, wall time.Time) {
	if node == "" {
		return
	}
	s := api.Sample{T: wall.UnixMilli(), L: r.ReplLatencyMS}
	if node == m.cfg.NodeID {
		s.L = m.lastLatMS
	}
	if p, ok := m.prev[node]; ok {
		if dt := wall.Sub(p.at).Seconds(); dt > 0 && r.WritesOut >= p.out && r.WritesIn >= p.in {
			s.W = float64(r.WritesOut-p.out) / dt
			s.I = float64(r.WritesIn-p.in) / dt
		}
	}
	m.prev[node] = counters{out: r.WritesOut, in: r.WritesIn, at: wall, inc: r.Incarnation, seq: r.Seq}
	m.history[node] = appendRing(m.history[node], s, historySamples)
}

// pollElection records the leadership changes of every group, with a
// watcher per group (a watcher keeps the reason of each change).
func (m *Monitor) pollElection(groups []string, wall time.Time) {
	for _, g := range groups {
		if _, ok := m.watchers[g]; !ok {
			m.watchers[g] = m.cfg.Election.Watch(g)
		}
	}
	names := make([]string, 0, len(m.watchers))
	for name := range m.watchers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		w := m.watchers[name]
		for {
			ev, ok, err := w.Poll()
			if err != nil || !ok {
				break
			}
			reason := ev.Reason
			if ev.Seq == 1 && ev.HasLeader() && name != election.ClusterGroup {
				reason = "first seen" // a group found after its election
			}
			if reason == "" || ev.Leader == ev.Previous.Leader && ev.Term == ev.Previous.Term {
				continue
			}
			c := api.LeadershipChange{Group: name, Leader: ev.Leader, Previous: ev.Previous.Leader, Term: ev.Term, Reason: reason, Time: wall}
			m.changes = appendRing(m.changes, c, recentEvents)
			if c.Previous != "" && c.Leader != c.Previous {
				m.failovers[name]++
			}
		}
	}
}

func appendRing[T any](s []T, v T, limit int) []T {
	if len(s) < limit {
		if len(s) == cap(s) {
			// Grow to at most limit: append's doubling left 512 slots
			// for 300 samples, for every peer.
			ns := make([]T, len(s), min(max(2*cap(s), 8), limit))
			copy(ns, s)
			s = ns
		}
		return append(s, v)
	}
	copy(s, s[len(s)-limit+1:])
	s = s[:limit]
	s[limit-1] = v
	return s
}

func (m *Monitor) receive() {
	defer m.wg.Done()
	for {
		from, data, err := m.topic.Receive(m.ctx)
		if err != nil {
			return
		}
		m.take(from, data)
	}
}

// take takes a report from a peer, gossiped or sent directly
// (greet.go). Safe for concurrent use.
func (m *Monitor) take(from string, data []byte) {
	r, err := nodestate.DecodeNodeReport(data)
	if err != nil {
		m.mu.Lock()
		n, ok := m.badReports.Allow(from, time.Now())
		m.mu.Unlock()
		if ok {
			m.log.Warn("dropped a bad node report", "peer", from, "err", err, "dropped_since_last_warning", n)
		}
		return
	}
	now := m.now()
	m.mu.Lock()
	removed := m.removed[from]
	if !removed {
		m.states.Observe(now, from, *r)
		m.takeTransitions(now)
	}
	m.mu.Unlock()
	// Every node heard from is a compaction member: its stable heads
	// bound what the store may reclaim (crdt/compact.go).
	if !removed {
		m.noteClock(from, r.Clock, r.PeriodMS)
		m.cfg.Store.ObserveReport(from, crdt.MemberReport{Heads: r.StableHeads, HeadsKnown: r.HeadsKnown, Installs: r.Installs, Lineage: r.Lineage, At: time.Now()})
		if m.cfg.Store.MustRebase(from, r.EvictedBack, r.Lineage) {
			m.rebase(from)
		}
	}
}

// rebaseRetry is the least time between two rebases this node starts.
const rebaseRetry = 10 * time.Second

// rebase takes a state transfer from a peer whose compaction evicted
// this node (crdt/evict.go): this node was away too long to merge what
// the peer kept. Its own writes are kept (written again on top).
func (m *Monitor) rebase(from string) {
	if m.cfg.Rebase == nil {
		return
	}
	m.mu.Lock()
	if t := m.lastRebase; !t.IsZero() && time.Since(t) < rebaseRetry {
		m.mu.Unlock()
		return
	}
	m.lastRebase = time.Now()
	m.mu.Unlock()
	m.log.Warn("a peer's compaction evicted this node while it was away: rebasing on the peer's state by state transfer; this node's own writes are kept", "peer", from)
	if err := m.cfg.Rebase(from); err != nil && !errors.Is(err, nodestate.ErrSyncBusy) {
		m.log.Warn("rebase on an evicting peer", "peer", from, "err", err)
	}
}

func (m *Monitor) peerEvents(events <-chan p2p.PeerEvent, cancel func()) {
	defer m.wg.Done()
	defer cancel()
	for {
		select {
		case <-m.ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			now := m.now()
			id := ev.Peer.String()
			m.mu.Lock()
			if !m.removed[id] {
				if ev.Connected {
					m.greetings.add(ev.Peer, m.states.OnTime(now, id))
				}
				m.states.Connected(now, id, ev.Connected)
				m.takeTransitions(now)
			}
			m.mu.Unlock()
			if ev.Connected {
				select {
				case m.kick <- struct{}{}:
				default:
				}
			}
		}
	}
}

// watchRemote measures replication latency: for each remote change, the
// time from the write's timestamp (the writer's clock) to its arrival
// here. Clock skew between nodes shows up in it, and a batch that arrives
// after a partition counts its whole age.
func (m *Monitor) watchRemote(w *entity.Watcher) {
	defer m.wg.Done()
	defer w.Close()
	for {
		select {
		case <-m.ctx.Done():
			return
		case ev, ok := <-w.C():
			if !ok {
				return
			}
			if ev.Timestamp.IsZero() || strings.HasPrefix(ev.Field, "$reload") {
				continue
			}
			d := time.Since(ev.Timestamp.Time())
			if d < 0 {
				d = 0
			}
			m.replLatency.Observe(d.Seconds())
			m.replWrites.Inc()
			m.mu.Lock()
			m.latSum += float64(d) / float64(time.Millisecond)
			m.latN++
			m.mu.Unlock()
		}
	}
}

// forget drops a removed peer: its reports are ignored until it is added
// again.
func (m *Monitor) Forget(id peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removed[id.String()] = true
	m.cfg.Store.ForgetMember(id.String())
	if m.states.Forget(id.String()) {
		m.log.Info("peer forgotten by the operator", "peer", id)
	}
}

func (m *Monitor) Remember(id peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.removed, id.String())
}

// ClusterStatus implements ClusterSource.
func (m *Monitor) ClusterStatus(ctx context.Context) (api.ClusterStatus, error) {
	self := m.report()
	peers := m.cfg.P2P.Peers()
	r := m.cfg.Election
	gs, err := r.Group(election.ClusterGroup)
	if err != nil && !errors.Is(err, election.ErrNoGroup) {
		return api.ClusterStatus{}, err
	}
	ecfg := r.Config()
	if gs.Name == "" {
		gs = election.GroupStatus{Name: election.ClusterGroup, Leader: election.Leadership{Group: election.ClusterGroup}}
	}
	cs := api.ClusterStatus{
		ClusterInfo: api.ClusterInfo{NodeID: ecfg.NodeID, PeerID: ecfg.Peer, Leader: gs.Leader,
			IsLeader: gs.Leader.Is(ecfg.NodeID, ecfg.Peer), Group: api.NewElectionGroup(gs)},
		Sync: self.Sync,
	}
	info := make(map[string]p2p.PeerInfo, len(peers))
	for _, p := range peers {
		info[p.ID.String()] = p
	}
	me := api.NodeView{NodeID: m.cfg.NodeID, PeerID: m.cfg.P2P.ID().String(), Self: true, State: phaseState(self.Sync.Phase),
		WritesIn: self.WritesIn, WritesOut: self.WritesOut, Heads: self.Heads, Height: self.Height, Sync: self.Sync,
		Leader: cs.IsLeader, LiveBytes: self.LiveBytes, HistoryBytes: self.HistoryBytes,
		WriteError: self.WriteError, ClockSkewed: self.ClockSkewed, Version: self.Version}
	for _, a := range m.cfg.P2P.Addrs() {
		me.Addrs = append(me.Addrs, a.String())
	}
	now := m.now()
	wall := time.Now()
	m.mu.Lock()
	if m.leaving {
		me.State = nodestate.StateLeaving
	}
	views := m.states.Peers(now)
	m.mu.Unlock()
	cs.Nodes = append(cs.Nodes, me)
	// The election's heartbeats may name a node before its first report.
	names := make(map[string]string, len(gs.Members))
	for _, mb := range gs.Members {
		names[mb.Peer] = mb.Node
	}
	for _, v := range views {
		if v.Node == "" {
			v.Node = names[v.Peer]
		}
		nv := api.NodeView{NodeID: v.Node, PeerID: v.Peer, State: v.State, Health: v.Health, Connected: v.Connected,
			SinceMS: v.Since.Milliseconds(), Addrs: []string{}}
		if p, ok := info[v.Peer]; ok {
			nv.Static = p.Static
			nv.Connection, nv.Problem, nv.DialError = string(p.Conn), string(p.Problem), p.DialError
			for _, a := range p.Addrs {
				nv.Addrs = append(nv.Addrs, a.String())
			}
		}
		if v.Heard {
			t := wall.Add(-v.Age)
			nv.LastSeen, nv.LastSeenMS = &t, v.Age.Milliseconds()
			nv.WritesIn, nv.WritesOut = v.Report.WritesIn, v.Report.WritesOut
			nv.Heads, nv.Height, nv.Sync = v.Report.Heads, v.Report.Height, v.Report.Sync
			nv.LiveBytes, nv.HistoryBytes = v.Report.LiveBytes, v.Report.HistoryBytes
			nv.WriteError, nv.ClockSkewed = v.Report.WriteError, v.Report.ClockSkewed
			nv.Version = v.Report.Version
		}
		nv.Leader = gs.Leader.Peer == v.Peer && gs.Leader.HasLeader()
		cs.Nodes = append(cs.Nodes, nv)
	}
	var top uint64
	for _, nv := range cs.Nodes {
		top = max(top, nv.Height)
	}
	for i := range cs.Nodes {
		nv := &cs.Nodes[i]
		if nv.Self || nv.LastSeen != nil {
			nv.Lag = top - nv.Height
		}
		if nv.State != nodestate.StateLeft {
			cs.NodeCount++
		}
	}
	cs.Mode = "standalone"
	if len(cs.Nodes) > 1 {
		cs.Mode = "cluster"
	}
	return cs, nil
}

func phaseState(p nodestate.SyncPhase) nodestate.NodeState {
	switch p {
	case nodestate.PhaseJoining:
		return nodestate.StateJoining
	case nodestate.PhaseSyncing:
		return nodestate.StateSyncing
	}
	return nodestate.StateActive
}

// ClusterHistory implements ClusterSource.
func (m *Monitor) ClusterHistory() api.ClusterHistory {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := api.ClusterHistory{IntervalMS: ReportInterval.Milliseconds(), Nodes: make(map[string][]api.Sample, len(m.history))}
	for k, v := range m.history {
		h.Nodes[k] = slices.Clone(v)
	}
	return h
}

// ClusterEvents implements ClusterSource.
func (m *Monitor) ClusterEvents() api.ClusterEvents {
	m.mu.Lock()
	defer m.mu.Unlock()
	ev := api.ClusterEvents{Transitions: slices.Clone(m.trans), Leadership: slices.Clone(m.changes)}
	if ev.Transitions == nil {
		ev.Transitions = []nodestate.Transition{}
	}
	if ev.Leadership == nil {
		ev.Leadership = []api.LeadershipChange{}
	}
	return ev
}

// Metrics. Every series is documented in MetricsDoc; metrics_test.go
// checks that /metrics serves each of them.

// MetricsDoc lists the Starling series of /metrics with their help text.
// libp2p's own series (libp2p_*), and the Go runtime's (go_*, process_*)
// are served too; they are per process, so in `starling local` they
// cover every node of the process.
var MetricsDoc = []struct{ Name, Type, Help string }{
	{"starling_node_info", "gauge", "Always 1; labels node_id, peer_id, env name the node."},
	{"starling_peer_lag", "gauge", "DAG heights a peer is behind the highest node known (its last report), per peer heard from; labels node_id, peer_id."},
	{"starling_peer_last_seen_seconds", "gauge", "Seconds since a peer's last node report arrived, per peer heard from; labels node_id, peer_id."},
	{"starling_lag", "gauge", "DAG heights this node is behind the highest node it has heard from."},
	{"starling_build_info", "gauge", "Always 1; labels version, commit, goversion, crdt_version and libp2p_version name the running build."},
	{"starling_writes_total", "counter", "Writes committed on this node (its own, local writes)."},
	{"starling_commits_total", "counter", "Deltas (group commits) written by this node."},
	{"starling_replication_messages_total", "counter", "Replication messages from peers, by result: received, rejected (malformed), dropped (receive queue full)."},
	{"starling_replication_blocks_total", "counter", "DAG blocks in branch requests, by direction: requested (asked of peers), served (sent to peers)."},
	{"starling_replicated_writes_total", "counter", "Remote entity changes applied on this node."},
	{"starling_replication_latency_seconds", "histogram", "Time from a remote write's timestamp (its writer's clock) to its arrival here; includes clock skew."},
	{"starling_write_duration_seconds", "histogram", "API write requests until durable, by endpoint (kv, fields, entities, schemas)."},
	{"starling_dag_heads", "gauge", "Current DAG heads of the replicated store."},
	{"starling_dag_height", "gauge", "Height of the highest DAG head."},
	{"starling_dag_queued_jobs", "gauge", "DAG blocks waiting to be processed."},
	{"starling_replication_queue", "gauge", "Replication messages received and not yet processed."},
	{"starling_pending_writes", "gauge", "Writes waiting for group commit."},
	{"starling_store_dirty", "gauge", "1 when a DAG walk failed and a repair is pending."},
	{"starling_store_live_bytes", "gauge", "The live state on disk (LevelDB's table files; the write buffer is not counted)."},
	{"starling_store_history_bytes", "gauge", "The history on disk: DAG blocks, processed markers, set elements and tombstones (table files)."},
	{"starling_compaction_rounds_total", "counter", "Compaction rounds that ran (not the skipped ones) since the node started."},
	{"starling_compaction_reclaimed_bytes_total", "counter", "Bytes the compaction rounds deleted since the node started."},
	{"starling_compaction_last_timestamp_seconds", "gauge", "Unix time when the last compaction round ended; 0 before the first."},
	{"starling_compaction_members", "gauge", "Nodes (this one included) whose reported heads bound what compaction may reclaim."},
	{"starling_clock_median_offset_seconds", "gauge", "Median of the peers' clocks minus this node's (this node counted as 0), from their node reports."},
	{"starling_clock_skewed", "gauge", "1 while this node's clock is further than the maximum offset from the median of its peers' clocks: it refuses writes until the clock is fixed."},
	{"starling_clock_far_future_versions_total", "counter", "Versions seen stamped further ahead of this node's clock than the maximum offset (kept, but the clock does not follow them)."},
	{"starling_peer_rtt_seconds", "gauge", "Round trip to a connected peer: the median of its last 8 liveness pings (one every 10 s or more); label peer_id."},
	{"starling_election_link_budget_seconds", "gauge", "Highest round trip the election timings take safely: a quarter of their pause tolerance (timeout - heartbeat); lan 0.15, wan 1."},
	{"starling_election_slow_links", "gauge", "Connected peers whose round trip exceeds the election's link budget: false failovers are likely (the log and status say which preset to use)."},
	{"starling_compaction_evicted_members", "gauge", "Members evicted from compaction after staying away longer than the eviction time; each rebases by state transfer when it comes back."},
	{"starling_peers", "gauge", "Peers by node state (JOINING, SYNCING, ACTIVE, SUSPECT, DEAD, LEAVING, LEFT), as this node sees them."},
	{"starling_peers_sync", "gauge", "Peers by sync health (Connected, Syncing, Indirect, Disconnected)."},
	{"starling_election_leader", "gauge", "1 for the leader of each election group (labels group, leader) as this node sees it."},
	{"starling_election_term", "gauge", "Term of each group's leadership."},
	{"starling_election_is_leader", "gauge", "1 when this node hosts the leader of the group."},
	{"starling_election_failovers_total", "counter", "Leadership moved from one leader to another (or to none), per group, seen by this node."},
	{"starling_sync_phase", "gauge", "1 for this node's sync phase (JOINING, SYNCING, ACTIVE)."},
	{"starling_sync_entries", "gauge", "State transfer progress in entries: done and total (0 until announced)."},
	{"starling_sync_bytes", "gauge", "State transfer progress in bytes: done and total."},
	{"starling_state_transfers_total", "counter", "Completed state transfers since the node started."},
	{"starling_nat_reachability", "gauge", "1 for this node's reachability as AutoNAT found it (label reachability: public, private, unknown), 0 for the others."},
	{"starling_holepunch_total", "counter", "Hole punches (DCUtR, each up to a few tries) since start, by result: attempt (every one), success (a direct connection came of it)."},
	{"starling_relay_bytes_total", "counter", "Bytes this node relayed for other nodes (circuit relay service)."},
	{"starling_relay_circuits_total", "counter", "Relayed connections this node opened for other nodes."},
	{"starling_peer_connections", "gauge", "Connected peers by how: direct, hole-punched, relayed."},
	{"starling_p2p_messages_total", "counter", "Messages sent (dir=out) and received (dir=in) since start, by source: gossip:<topic> (duplicates from a second mesh peer count again), gossipsub-control, stream:replication/1.0.0 (direct messages), gossipsub-dropped (out: RPCs dropped because a peer's queue was full; in: messages a slow subscriber of this node missed)."},
	{"starling_p2p_dropped_total", "counter", "Gossip messages (and control RPCs) gossipsub gave up on for a full queue since start, by source: dir=out not sent because the peer's outbound queue was full, dir=in not validated because the validation queue was full or the peer throttled. Lost heartbeats and reports: an overloaded node or link."},
	{"starling_p2p_bytes_total", "counter", "Bytes sent (dir=out) and received (dir=in) since start, by source: each gossip topic, gossipsub-control, gossipsub-streams (all gossipsub bytes on the wire), and each stream protocol (dht, identify, ping, nat, bitswap, stream:<name>)."},
}

func metricHelp(name string) string {
	for _, d := range MetricsDoc {
		if d.Name == name {
			return d.Help
		}
	}
	panic("undocumented metric " + name)
}

func (m *Monitor) registerMetrics() {
	m.writeDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "starling_write_duration_seconds", Help: metricHelp("starling_write_duration_seconds"),
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
	}, []string{"endpoint"})
	m.replLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "starling_replication_latency_seconds", Help: metricHelp("starling_replication_latency_seconds"),
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1 ms .. 16 s
	})
	m.replWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "starling_replicated_writes_total", Help: metricHelp("starling_replicated_writes_total"),
	})
	// Every endpoint appears from the start, so dashboards see zeros.
	for _, e := range []string{"kv", "fields", "entities", "schemas"} {
		m.writeDur.WithLabelValues(e)
	}
	m.reg.MustRegister(m.writeDur, m.replLatency, m.replWrites, (*monitorCollector)(m))
}

// handler serves /metrics: this node's registry, then the process-wide
// default one (libp2p registers there, with the Go runtime).
func (m *Monitor) Handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{m.reg, prometheus.DefaultGatherer},
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// instrument times the API's write requests.
func (m *Monitor) Instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep := ""
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			switch p := r.URL.Path; {
			case strings.HasPrefix(p, "/v1/kv/"):
				ep = "kv"
			case strings.HasPrefix(p, "/v1/fields"):
				ep = "fields"
			case strings.HasPrefix(p, "/v1/entities"):
				ep = "entities"
			case strings.HasPrefix(p, "/v1/schemas"):
				ep = "schemas"
			}
		}
		if ep == "" {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		next.ServeHTTP(w, r)
		m.writeDur.WithLabelValues(ep).Observe(time.Since(start).Seconds())
	})
}

// monitorCollector reads the store, the peer states and the election at
// scrape time.
type monitorCollector Monitor

// Describe sends nothing: an unchecked collector, because its series
// (groups, states) vary from scrape to scrape.
func (c *monitorCollector) Describe(chan<- *prometheus.Desc) {}

func desc(name string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, metricHelp(name), labels, nil)
}

func (c *monitorCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Monitor)(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := m.cfg.Store.Status(ctx)
	emit := func(t prometheus.ValueType, name string, v float64, labels []string) {
		var names, vals []string
		for i := 0; i+1 < len(labels); i += 2 {
			names, vals = append(names, labels[i]), append(vals, labels[i+1])
		}
		ch <- prometheus.MustNewConstMetric(desc(name, names...), t, v, vals...)
	}
	gauge := func(name string, v float64, labels ...string) { emit(prometheus.GaugeValue, name, v, labels) }
	counter := func(name string, v float64, labels ...string) { emit(prometheus.CounterValue, name, v, labels) }
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge("starling_node_info", 1, "node_id", m.cfg.NodeID, "peer_id", m.cfg.P2P.ID().String(), "env", m.cfg.Env)
	b := m.cfg.Build
	gauge("starling_build_info", 1, "version", b.Version, "commit", b.Commit, "goversion", b.GoVersion,
		"crdt_version", b.Deps["github.com/ipfs/go-ds-crdt"], "libp2p_version", b.Deps["github.com/libp2p/go-libp2p"])
	counter("starling_writes_total", float64(st.OpsCommitted))
	counter("starling_commits_total", float64(st.Commits))
	counter("starling_replication_messages_total", float64(st.Received), "result", "received")
	counter("starling_replication_messages_total", float64(st.Rejected), "result", "rejected")
	counter("starling_replication_messages_total", float64(st.Dropped), "result", "dropped")
	counter("starling_replication_blocks_total", float64(st.Requested), "direction", "requested")
	counter("starling_replication_blocks_total", float64(st.Served), "direction", "served")
	gauge("starling_dag_heads", float64(len(st.Heads)))
	gauge("starling_dag_height", float64(st.MaxHeight))
	gauge("starling_dag_queued_jobs", float64(st.QueuedJobs))
	gauge("starling_replication_queue", float64(st.ReceiveQueue))
	gauge("starling_pending_writes", float64(st.PendingOps))
	gauge("starling_store_dirty", b2f(st.Dirty))
	gauge("starling_store_live_bytes", float64(st.LiveBytes))
	gauge("starling_store_history_bytes", float64(st.HistoryBytes))
	counter("starling_compaction_rounds_total", float64(st.CompactRounds))
	counter("starling_compaction_reclaimed_bytes_total", float64(st.CompactReclaimed))
	var last float64
	if !st.LastCompacted.IsZero() {
		last = float64(st.LastCompacted.UnixMilli()) / 1000
	}
	gauge("starling_compaction_last_timestamp_seconds", last)
	gauge("starling_compaction_members", float64(st.CompactMembers))
	gauge("starling_compaction_evicted_members", float64(st.CompactEvicted))
	cs := m.ClockStatus()
	gauge("starling_clock_median_offset_seconds", cs.MedianOffsetMS/1000)
	gauge("starling_clock_skewed", b2f(cs.Skewed))
	counter("starling_clock_far_future_versions_total", float64(cs.FarFuture))
	ls := m.LinkStatus()
	gauge("starling_election_link_budget_seconds", ls.BudgetMS/1000)
	gauge("starling_election_slow_links", float64(len(ls.Slow)))
	m.mu.Lock()
	rtts := maps.Clone(m.linkRTTs)
	m.mu.Unlock()
	for id, d := range rtts {
		gauge("starling_peer_rtt_seconds", d.Seconds(), "peer_id", id)
	}

	m.mu.Lock()
	views := m.states.Peers(m.now())
	failovers := make(map[string]uint64, len(m.failovers))
	for g, v := range m.failovers {
		failovers[g] = v
	}
	m.mu.Unlock()
	byState := make(map[nodestate.NodeState]int)
	byHealth := make(map[nodestate.SyncHealth]int)
	for _, v := range views {
		byState[v.State]++
		byHealth[v.Health]++
	}
	for _, s := range nodestate.AllNodeStates {
		gauge("starling_peers", float64(byState[s]), "state", string(s))
	}
	// Per peer heard from: how far behind the highest node known it is
	// (as cluster status's LAG) and how long ago its last report came.
	top := st.MaxHeight
	for _, v := range views {
		if v.Heard {
			top = max(top, v.Report.Height)
		}
	}
	for _, v := range views {
		if !v.Heard || v.State == nodestate.StateLeft {
			continue
		}
		gauge("starling_peer_lag", float64(top-v.Report.Height), "node_id", v.Node, "peer_id", v.Peer)
		gauge("starling_peer_last_seen_seconds", v.Age.Seconds(), "node_id", v.Node, "peer_id", v.Peer)
	}
	gauge("starling_lag", float64(top-st.MaxHeight))
	for _, h := range nodestate.AllSyncHealth {
		gauge("starling_peers_sync", float64(byHealth[h]), "health", string(h))
	}

	ecfg := m.cfg.Election.Config()
	for _, g := range m.cfg.Election.Groups() {
		if g.Leader.HasLeader() {
			gauge("starling_election_leader", 1, "group", g.Name, "leader", g.Leader.Leader)
		}
		gauge("starling_election_term", float64(g.Leader.Term), "group", g.Name)
		gauge("starling_election_is_leader", b2f(g.Leader.HasLeader() && g.Leader.Peer == ecfg.Peer), "group", g.Name)
		counter("starling_election_failovers_total", float64(failovers[g.Name]), "group", g.Name)
	}

	sp := m.cfg.Sync()
	for _, p := range []nodestate.SyncPhase{nodestate.PhaseJoining, nodestate.PhaseSyncing, nodestate.PhaseActive} {
		gauge("starling_sync_phase", b2f(sp.Phase == p), "phase", string(p))
	}
	gauge("starling_sync_entries", float64(sp.EntriesDone), "kind", "done")
	gauge("starling_sync_entries", float64(sp.EntriesTotal), "kind", "total")
	gauge("starling_sync_bytes", float64(sp.BytesDone), "kind", "done")
	gauge("starling_sync_bytes", float64(sp.BytesTotal), "kind", "total")
	counter("starling_state_transfers_total", float64(sp.Transfers))

	nat := m.cfg.P2P.NATStatus()
	for _, r := range []string{p2p.ReachabilityPublic, p2p.ReachabilityPrivate, p2p.ReachabilityUnknown} {
		gauge("starling_nat_reachability", b2f(nat.Reachability == r), "reachability", r)
	}
	counter("starling_holepunch_total", float64(nat.HolePunchAttempts), "result", "attempt")
	counter("starling_holepunch_total", float64(nat.HolePunchSuccesses), "result", "success")
	counter("starling_relay_bytes_total", float64(nat.RelayedBytes))
	counter("starling_relay_circuits_total", float64(nat.RelayCircuits))
	for _, t := range m.cfg.P2P.Traffic() {
		if t.MsgsIn+t.MsgsOut > 0 {
			counter("starling_p2p_messages_total", float64(t.MsgsIn), "source", t.Source, "dir", "in")
			counter("starling_p2p_messages_total", float64(t.MsgsOut), "source", t.Source, "dir", "out")
		}
		counter("starling_p2p_bytes_total", float64(t.BytesIn), "source", t.Source, "dir", "in")
		counter("starling_p2p_bytes_total", float64(t.BytesOut), "source", t.Source, "dir", "out")
		counter("starling_p2p_dropped_total", float64(t.DroppedIn), "source", t.Source, "dir", "in")
		counter("starling_p2p_dropped_total", float64(t.DroppedOut), "source", t.Source, "dir", "out")
	}
	byConn := make(map[p2p.ConnKind]int)
	for _, p := range m.cfg.P2P.Peers() {
		if p.Connected {
			byConn[p.Conn]++
		}
	}
	for _, k := range []p2p.ConnKind{p2p.ConnDirect, p2p.ConnHolePunched, p2p.ConnRelayed} {
		gauge("starling_peer_connections", float64(byConn[k]), "kind", string(k))
	}
}
