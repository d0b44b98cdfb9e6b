package election

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when told to. Timers behave like
// Go ≥1.23 timers: Reset and Stop discard a value not yet received.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c      *fakeClock
	ch     chan time.Time
	at     time.Time
	active bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1), at: c.now.Add(d), active: true}
	c.timers = append(c.timers, t)
	c.fire()
	return t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fire()
}

func (c *fakeClock) fire() {
	for _, t := range c.timers {
		if t.active && !t.at.After(c.now) {
			t.active = false
			select {
			case t.ch <- c.now:
			default:
			}
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	select {
	case <-t.ch:
	default:
	}
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	select {
	case <-t.ch:
	default:
	}
	t.at, t.active = t.c.now.Add(d), true
	t.c.fire()
	return was
}

// memNet is an in-memory broadcast network: every transport receives
// what the others publish, unless the link is cut.
type memNet struct {
	mu    sync.Mutex
	nodes map[string]*memTransport
	cut   map[[2]string]bool
}

type memMsg struct {
	from string
	data []byte
}

type memTransport struct {
	net   *memNet
	peer  string
	inbox chan memMsg
	done  chan struct{}
}

func newMemNet() *memNet {
	return &memNet{nodes: map[string]*memTransport{}, cut: map[[2]string]bool{}}
}

func (n *memNet) join(peer string) *memTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := &memTransport{net: n, peer: peer, inbox: make(chan memMsg, 1024), done: make(chan struct{})}
	n.nodes[peer] = t
	return t
}

// isolate cuts (or restores) every link of peer, both ways.
func (n *memNet) isolate(peer string, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for p := range n.nodes {
		n.cut[[2]string{p, peer}], n.cut[[2]string{peer, p}] = cut, cut
	}
}

func (t *memTransport) Publish(_ context.Context, data []byte) error {
	select {
	case <-t.done:
		return errors.New("memnet: closed")
	default:
	}
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	for p, o := range t.net.nodes {
		if p == t.peer || t.net.cut[[2]string{t.peer, p}] {
			continue
		}
		select {
		case o.inbox <- memMsg{t.peer, data}:
		default:
		}
	}
	return nil
}

func (t *memTransport) Receive(ctx context.Context) (string, []byte, error) {
	select {
	case m := <-t.inbox:
		return m.from, m.data, nil
	case <-ctx.Done():
		return "", nil, ctx.Err()
	case <-t.done:
		return "", nil, errors.New("memnet: closed")
	}
}

func (t *memTransport) close() { close(t.done) }

var _ Transport = (*memTransport)(nil)

type testCluster struct {
	t       *testing.T
	clock   *fakeClock
	net     *memNet
	runners []*Runner
}

func newTestCluster(t *testing.T, ids ...string) *testCluster {
	tc := &testCluster{t: t, clock: newFakeClock(), net: newMemNet()}
	for _, id := range ids {
		cfg := FastConfig()
		cfg.NodeID, cfg.Peer, cfg.Clock = id, "peer-"+id, tc.clock
		cfg.LeaveLinger = time.Millisecond
		r, err := New(cfg, tc.net.join(cfg.Peer))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.SetNodeAvailable(true); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		tc.runners = append(tc.runners, r)
	}
	return tc
}

// until advances the fake clock 10ms at a time until cond holds, within
// max of fake time; real time only bounds the wait for goroutines.
func (tc *testCluster) until(max time.Duration, what string, cond func() bool) {
	tc.t.Helper()
	realDeadline := time.Now().Add(20 * time.Second)
	start := tc.clock.Now()
	for !cond() {
		if tc.clock.Now().Sub(start) > max || time.Now().After(realDeadline) {
			tc.t.Fatalf("not within %v of fake time: %s", max, what)
		}
		tc.settle()
		tc.clock.Advance(10 * time.Millisecond)
		tc.settle()
	}
}

// settle waits until every inbox is empty, so that what was sent has
// been taken by the runners (a few scheduler rounds).
func (tc *testCluster) settle() {
	for range 100 {
		busy := false
		tc.net.mu.Lock()
		for _, n := range tc.net.nodes {
			busy = busy || len(n.inbox) > 0
		}
		tc.net.mu.Unlock()
		if !busy {
			break
		}
		runtime.Gosched()
		time.Sleep(100 * time.Microsecond)
	}
	time.Sleep(time.Millisecond)
}

func (tc *testCluster) agree(group, leader string, among ...*Runner) bool {
	var term uint64
	for i, r := range among {
		l := r.Leader(group)
		if l.Leader != leader || (i > 0 && l.Term != term) {
			return false
		}
		term = l.Term
	}
	return true
}

func TestRunnerElectsFailsOverAndHandsOver(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	n1, n2, n3 := tc.runners[0], tc.runners[1], tc.runners[2]
	w := n3.Watch(ClusterGroup)
	defer w.Close()
	first, err := w.Next(context.Background())
	if err != nil || first.HasLeader() || first.Seq != 1 {
		t.Fatalf("first event = %+v, %v; want no leader yet, seq 1", first, err)
	}

	tc.until(2*time.Second, "n1 leads everywhere", func() bool { return tc.agree(ClusterGroup, "n1", n1, n2, n3) })
	ev, err := w.Next(context.Background())
	if err != nil || ev.Leader != "n1" || ev.Term != 1 || ev.Reason != ReasonElected {
		t.Fatalf("event = %+v, %v", ev, err)
	}
	// A silent crash: n1 is cut off and never says goodbye. Nothing may
	// change before Timeout−Interval of silence.
	tc.net.isolate("peer-n1", true)
	tc.settle()
	crash := tc.clock.Now()
	tc.until(FastConfig().Timeout+50*time.Millisecond, "n2 leads n2 and n3", func() bool {
		return tc.agree(ClusterGroup, "n2", n2, n3)
	})
	if took := tc.clock.Now().Sub(crash); took < FastConfig().Timeout-FastConfig().Interval {
		t.Errorf("failover after %v of silence, before Timeout−Interval", took)
	}
	if l := n2.Leader(ClusterGroup); l.Term != 2 {
		t.Errorf("term after failover = %d, want 2", l.Term)
	}
	ev, _ = w.Next(context.Background())
	if ev.Leader != "n2" || ev.Reason != ReasonFailed || ev.Previous.Leader != "n1" {
		t.Errorf("event = %+v", ev)
	}

	// Graceful: closing n2 hands over to n3 with no time passing at all.
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n3.Leader(ClusterGroup).Leader != "n3" {
		if time.Now().After(deadline) {
			t.Fatalf("n3 did not take over after n2's goodbye without the clock moving: %+v", n3.Leader(ClusterGroup))
		}
		time.Sleep(time.Millisecond)
	}
	ev, _ = w.Next(context.Background())
	if ev.Leader != "n3" || ev.Reason != ReasonLeft || ev.Term != 3 {
		t.Errorf("event = %+v", ev)
	}
	if _, err := n2.Join(Spec{Group: "svc"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Close: %v, want ErrClosed", err)
	}
}

func TestRunnerCandidateLifecycle(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2")
	n1, n2 := tc.runners[0], tc.runners[1]
	if _, err := n1.Join(Spec{Group: ClusterGroup}); !errors.Is(err, ErrReservedGroup) {
		t.Errorf("join cluster: %v, want ErrReservedGroup", err)
	}
	if _, err := n1.Join(Spec{Group: "bad name"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("join bad name: %v, want ErrInvalid", err)
	}
	if _, err := n1.Group("nope"); !errors.Is(err, ErrNoGroup) {
		t.Errorf("unknown group: %v, want ErrNoGroup", err)
	}
	c1, err := n1.Join(Spec{Group: "db", Instance: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if c1.ID() != "n1:a" {
		t.Errorf("ID = %q", c1.ID())
	}
	if _, err := n1.Join(Spec{Group: "db", Instance: "a"}); !errors.Is(err, ErrCandidateExists) {
		t.Errorf("second join: %v, want ErrCandidateExists", err)
	}
	c2, err := n2.Join(Spec{Group: "db", Available: true, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w := c1.Watch()
	defer w.Close()
	tc.until(2*time.Second, "n2 leads db", func() bool { return tc.agree("db", "n2", n1, n2) })
	if st, _ := c2.Status(); !st.IsLeader || !st.Active {
		t.Errorf("c2 status %+v, want leader", st)
	}
	if err := c1.SetAvailable(true); err != nil {
		t.Fatal(err)
	}
	tc.until(time.Second, "n1:a leads db", func() bool { return tc.agree("db", "n1:a", n1, n2) })
	var ev Event
	for !ev.IsLeader {
		if ev, err = w.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if !ev.Joined || !ev.Active || ev.Candidate != "n1:a" {
		t.Errorf("event %+v", ev)
	}
	// c2's session expires (no ReportHealth within 1s): it leaves by itself.
	tc.until(2*time.Second, "c2 expired", func() bool {
		_, err := c2.Status()
		return errors.Is(err, ErrNoCandidate)
	})
	if err := c1.Leave(); err != nil {
		t.Fatal(err)
	}
	ev, _ = w.Next(context.Background())
	if ev.Joined || ev.IsLeader {
		t.Errorf("after leave: %+v", ev)
	}
	if err := c1.Leave(); !errors.Is(err, ErrNoCandidate) {
		t.Errorf("second leave: %v", err)
	}
	tc.until(time.Second, "n2 lists only the cluster group once every db candidate left", func() bool {
		gs := n2.Groups()
		return len(gs) == 1 && gs[0].Name == ClusterGroup
	})
}

func TestRunnerSuspendedHeartbeatsNoFalseFailover(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2")
	n1, n2 := tc.runners[0], tc.runners[1]
	tc.until(2*time.Second, "n1 leads", func() bool { return tc.agree(ClusterGroup, "n1", n1, n2) })
	cfg := FastConfig()
	n1.SuspendHeartbeats(cfg.Timeout - cfg.Interval - 10*time.Millisecond)
	for range 2 * cfg.Timeout / (10 * time.Millisecond) {
		tc.settle()
		tc.clock.Advance(10 * time.Millisecond)
		if l := n2.Leader(ClusterGroup); l.Leader != "n1" || l.Term != 1 {
			t.Fatalf("during a pause shorter than Timeout−Interval: %+v", l)
		}
	}
}

type termFile struct {
	mu    sync.Mutex
	terms map[string]uint64
	saves int
}

func (f *termFile) LoadTerms() (map[string]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.terms, nil
}

func (f *termFile) SaveTerms(m map[string]uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.terms, f.saves = m, f.saves+1
	return nil
}

func TestRunnerTermsPersist(t *testing.T) {
	clock, net := newFakeClock(), newMemNet()
	store := &termFile{terms: map[string]uint64{ClusterGroup: 41}}
	cfg := FastConfig()
	cfg.NodeID, cfg.Peer, cfg.Clock, cfg.Terms = "solo", "p", clock, store
	r, err := New(cfg, net.join("p"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.SetNodeAvailable(true); err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, clock: clock, net: net}
	tc.until(time.Second, "solo leads", func() bool { return r.Leader(ClusterGroup).Leader == "solo" })
	if got := r.Leader(ClusterGroup).Term; got != 42 {
		t.Errorf("term %d, want 42 (restored 41 + 1)", got)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.terms[ClusterGroup] != 42 || store.saves == 0 {
		t.Errorf("saved %v after %d saves", store.terms, store.saves)
	}
}

func TestRunnerCloseLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	tc := newTestCluster(t, "a", "b")
	tc.until(time.Second, "a leads", func() bool { return tc.agree(ClusterGroup, "a", tc.runners...) })
	w := tc.runners[0].Watch(ClusterGroup)
	for _, r := range tc.runners {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		_ = r.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for {
		if _, err := w.Next(ctx); err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Next after Close: %v, want ErrClosed", err)
			}
			break
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, name := range []string{"lan", "wan", "fast", ""} {
		c, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		c.NodeID, c.Peer = "n", "p"
		if err := c.Validate(); err != nil {
			t.Errorf("preset %q: %v", name, err)
		}
	}
	if _, err := Preset("moon"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Preset(moon): %v", err)
	}
	bad := Config{NodeID: "a:b", Interval: time.Second, Timeout: time.Second, Warmup: time.Millisecond, Retain: time.Millisecond}
	err := bad.Validate()
	for _, field := range []string{"NodeID", "Peer", "Timeout", "Warmup", "Retain"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("Validate() = %v, want it to name %s", err, field)
		}
	}
}

// TestRunnerTransportEnds: a transport that ends (the node's network
// closed first) stops the receive loop; the runner keeps answering and
// closes cleanly.
func TestRunnerTransportEnds(t *testing.T) {
	tc := newTestCluster(t, "a")
	r := tc.runners[0]
	tc.net.nodes["peer-a"].close()
	tc.until(time.Second, "a leads alone", func() bool { return r.Leader(ClusterGroup).Leader == "a" })
	if _, err := r.Join(Spec{Group: "svc"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
