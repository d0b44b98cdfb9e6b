package monitor

import (
	"context"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/nodestate"
)

// A new connection gets this node's report at once (connectReportDelay
// later), so that the peer does not wait for the next period (5 s to a
// minute, with the cluster's size) to learn this node's state: a node
// that joins or restarts shows its peers ACTIVE within a second.
//
// How it goes depends on whether this node was hearing the peer's
// reports on time when the connection came up:
//
//   - It was: the peer is in this node's gossip component, and so are
//     the others; only the peer itself may lack this node's state (it
//     restarted, or is new and was heard of through others first). The
//     report goes to it alone, over a direct stream (reportProtocol).
//   - It was not (a node joining, or a partition healing): the report is
//     published on the topic, for every node the connection has just
//     joined to this one's side; but at most once per idle report period
//     (idleReportPeriod) for new connections, and directly to the new
//     peers otherwise. A node whose process is saturated hears few peers
//     on time (gossipsub drops reports at full queues), and its
//     connections change all the time (the bound, liveness cuts): 200
//     nodes on a mocknet published 35 reports a second for new
//     connections, each delivered to every node, which kept them
//     saturated. Bounded so, the cluster's publications for new
//     connections stay within its idle reports' rate, whatever its size;
//     a second heal within that period is announced to the far side by
//     the periodic reports (and to the peers the heal connected by the
//     direct ones).
//
// Publishing on every new connection, as this node did before, made
// every connection a message to the whole cluster. In a cluster larger
// than the connection bound (p2p.Config.MaxPeers), nodes close and open
// connections all the time: 200 idle nodes on a mocknet (WAN election
// timings) sent 70 nodestate messages per node per second, 35 without
// any publication on connect; with this rule, 100 idle nodes send 31
// against 43. (200 nodes saturate the test machine: most peers are
// late there, and still about 70.)

// reportProtocol is the stream on which a node sends its report to one
// new peer: one NodeReport, then the writer closes.
const reportProtocol = "nodestate/report/1"

// reportReadTimeout bounds reading a report from a direct stream.
const reportReadTimeout = 5 * time.Second

// greetings collects the peers that connected since the last report to
// new connections. Not safe for concurrent use: the monitor holds mu.
type greetings struct {
	peers   []peer.ID
	publish bool
	// published is when the last publication for new connections went.
	published time.Time
}

// add notes a new connection to id; onTime reports whether this node
// was hearing id's reports on time when it came up.
func (g *greetings) add(id peer.ID, onTime bool) {
	if !slices.Contains(g.peers, id) {
		g.peers = append(g.peers, id)
	}
	g.publish = g.publish || !onTime
}

// take returns what to do at now and starts afresh: publish the report
// on the topic, or send it to each of peers directly. A publication goes
// at most once per gap; within it, the peers are sent to directly.
func (g *greetings) take(now time.Time, gap time.Duration) (peers []peer.ID, publish bool) {
	peers, publish = g.peers, g.publish && now.Sub(g.published) >= gap
	g.peers, g.publish = nil, false
	if publish {
		g.published = now
		return nil, true
	}
	return peers, false
}

// greet reports to the peers that connected lately (see greetings).
// Called from loop.
func (m *Monitor) greet() {
	m.mu.Lock()
	peers, publish := m.greetings.take(time.Now(), idleReportPeriod(max(m.live, 1)))
	m.mu.Unlock()
	if publish {
		m.publishIfDue(true)
		return
	}
	if len(peers) == 0 {
		return
	}
	r := m.report()
	m.mu.Lock()
	r.PeriodMS = m.lastPeriod.Milliseconds()
	m.mu.Unlock()
	data := r.Encode()
	for _, id := range peers {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := m.sendReport(id, data); err != nil && m.ctx.Err() == nil {
				m.log.Debug("report to a new connection not sent", "peer", id, "err", err)
			}
		}()
	}
}

// sendReport writes data, an encoded report, to id on reportProtocol.
func (m *Monitor) sendReport(id peer.ID, data []byte) error {
	ctx, cancel := context.WithTimeout(m.ctx, reportReadTimeout)
	defer cancel()
	s, err := m.cfg.P2P.OpenStream(ctx, id, reportProtocol)
	if err != nil {
		return err
	}
	_ = s.SetWriteDeadline(time.Now().Add(reportReadTimeout))
	if _, err := s.Write(data); err != nil {
		_ = s.Reset()
		return err
	}
	return s.Close()
}

// serveReport reads one report from a peer's direct stream and takes it
// as if gossip had brought it.
func (m *Monitor) serveReport(from peer.ID, s io.ReadWriteCloser) {
	defer s.Close()
	if d, ok := s.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Now().Add(reportReadTimeout))
	}
	data, err := io.ReadAll(io.LimitReader(s, nodestate.MaxReportSize+1))
	if err != nil || m.ctx.Err() != nil {
		return
	}
	m.take(from.String(), data)
}
