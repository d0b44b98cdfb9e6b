package election

import (
	"container/heap"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/starling-sync/starling/internal/jitter"
)

// The benchmarks below measure what one node's election costs in a
// cluster of bench200 nodes that has settled (issue #16: 200 nodes in
// one process): one runner, driven as its loop and receive goroutines
// would drive it, hears the heartbeats of 199 scripted peers, the
// leader and the two next in line every Interval and the others at the
// idle period, with the spread of Runner.sendGap.
const bench200 = 200

// benchPeer is a scripted peer: its heartbeat and when it sends the next.
type benchPeer struct {
	hb   Heartbeat
	peer string
	next time.Duration
}

// benchPeers orders the peers by their next heartbeat.
type benchPeers []*benchPeer

func (h benchPeers) Len() int           { return len(h) }
func (h benchPeers) Less(i, j int) bool { return h[i].next < h[j].next }
func (h benchPeers) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *benchPeers) Push(x any)        { *h = append(*h, x.(*benchPeer)) }
func (h *benchPeers) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// nopTransport drops what the runner publishes; the benchmark hands it
// the peers' heartbeats itself (Runner.handle).
type nopTransport struct{}

func (nopTransport) Publish(context.Context, []byte) error { return nil }
func (nopTransport) Receive(ctx context.Context) (string, []byte, error) {
	<-ctx.Done()
	return "", nil, ctx.Err()
}

// bench200Sim is one node (n150: neither leader nor next in line) of a
// settled 200-node cluster (LANConfig) on a fake clock.
type bench200Sim struct {
	clock *fakeClock
	r     *Runner
	peers benchPeers
	now   time.Duration // since the runner started
	due   time.Duration // the runner's next step
}

func newBench200Sim(tb testing.TB) *bench200Sim {
	clock := newFakeClock()
	cfg := LANConfig()
	cfg.NodeID, cfg.Peer, cfg.Clock = "n150", "peer-n150", clock
	r, err := newRunner(cfg, nopTransport{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.SetNodeAvailable(true); err != nil {
		tb.Fatal(err)
	}
	s := &bench200Sim{clock: clock, r: r}
	// The peers run since an hour: this node joins a running cluster.
	inc := uint64(clock.Now().Add(-time.Hour).UnixNano())
	idle := min(max(10*cfg.Interval, cfg.Interval*bench200/2), maxPeriod)
	for i := 1; i <= bench200; i++ {
		id := fmt.Sprintf("n%03d", i)
		if id == cfg.NodeID {
			continue
		}
		period := idle
		if i <= frontSize {
			period = cfg.Interval
		}
		p := &benchPeer{peer: "peer-" + id, hb: Heartbeat{
			NodeID: id, Incarnation: inc, Seq: 1000, Period: period,
			Candidates: []CandidateState{{Group: ClusterGroup, ID: id, Available: true, Healthy: true}},
			Views:      []View{{Group: ClusterGroup, Leader: "n001", LeaderPeer: "peer-n001", Term: 1}},
		}}
		p.next = time.Duration(jitter.Fraction(id, 0) * float64(period))
		s.peers = append(s.peers, p)
	}
	heap.Init(&s.peers)
	return s
}

// run plays d of fake time: the runner steps when its timer is due or a
// kick is pending, and takes each peer's heartbeat when it is sent.
func (s *bench200Sim) run(d time.Duration) {
	end := s.now + d
	for {
		kicked := false
		select {
		case <-s.r.kick:
			kicked = true
		default:
		}
		if kicked || s.due <= s.now {
			wait, _ := s.r.step(kicked)
			s.due = s.now + wait
			continue
		}
		p := s.peers[0]
		at := min(p.next, s.due)
		if at > end {
			s.clock.Advance(end - s.now)
			s.now = end
			return
		}
		s.clock.Advance(at - s.now)
		s.now = at
		if s.due <= s.now {
			continue
		}
		p.hb.Seq++
		s.r.handle(p.peer, p.hb.Encode())
		gap := p.hb.Period
		if gap > s.r.cfg.Interval {
			gap -= time.Duration(jitter.Fraction(p.hb.NodeID, p.hb.Incarnation, p.hb.Seq) * float64(gap) / 4)
		}
		p.next = s.now + gap
		heap.Fix(&s.peers, 0)
	}
}

// settled plays the first minute (every idle peer has been heard, the
// start is long over) and checks that n001 leads.
func (s *bench200Sim) settled(tb testing.TB) {
	s.run(time.Minute)
	if l := s.r.Leader(ClusterGroup); l.Leader != "n001" || l.Term != 1 {
		tb.Fatalf("after a minute: leader %+v, want n001 at term 1", l)
	}
	if n := len(s.r.rule.nodes); n != bench200-1 {
		tb.Fatalf("after a minute: %d peers heard, want %d", n, bench200-1)
	}
}

// BenchmarkRule200 plays a settled 200-node cluster's heartbeats to one
// node: an op is one second of fake time. evals/s is how many times the
// rule evaluated its groups in that second.
func BenchmarkRule200(b *testing.B) {
	s := newBench200Sim(b)
	s.settled(b)
	evals := s.r.rule.evals
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.run(time.Second)
	}
	b.StopTimer()
	b.ReportMetric(float64(s.r.rule.evals-evals)/float64(b.N), "evals/s")
	if l := s.r.Leader(ClusterGroup); l.Leader != "n001" || l.Term != 1 {
		b.Fatalf("leader %+v, want n001 at term 1", l)
	}
}

// BenchmarkRule200Evaluate is one evaluation of the groups of a node of
// a settled 200-node cluster.
func BenchmarkRule200Evaluate(b *testing.B) {
	s := newBench200Sim(b)
	s.settled(b)
	r := s.r.rule
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.evaluate()
	}
}
