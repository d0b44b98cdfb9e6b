package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when told to. Timers behave like
// Go ≥1.23 timers: Reset and Stop discard a value not yet received. The
// testCluster reads Now only; the timers serve runners whose own
// goroutines drive them.
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

// syncNet is a synchronous in-memory broadcast network. Publish queues
// the message for every other node whose link is not cut, and nothing
// moves until the test delivers the queue (testCluster.deliver), in
// publish order, on the test goroutine. Receive serves runners whose own
// goroutines drive them (Runner.run).
type syncNet struct {
	mu    sync.Mutex
	nodes map[string]*syncTransport
	cut   map[[2]string]bool
	queue []netMsg
	wake  chan struct{}  // closed and replaced when a message is queued
	sent  map[string]int // messages published, by author
}

type netMsg struct {
	from, to string
	data     []byte
}

type syncTransport struct {
	net  *syncNet
	peer string
	done chan struct{}
}

var errNetClosed = errors.New("syncnet: closed")

func newSyncNet() *syncNet {
	return &syncNet{nodes: map[string]*syncTransport{}, cut: map[[2]string]bool{}, wake: make(chan struct{}), sent: map[string]int{}}
}

func (n *syncNet) join(peer string) *syncTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := &syncTransport{net: n, peer: peer, done: make(chan struct{})}
	n.nodes[peer] = t
	return t
}

// isolate cuts (or restores) every link of peer, both ways.
func (n *syncNet) isolate(peer string, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for p := range n.nodes {
		n.cut[[2]string{p, peer}], n.cut[[2]string{peer, p}] = cut, cut
	}
}

// published is how many messages peer has published.
func (n *syncNet) published(peer string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent[peer]
}

// pop takes the oldest queued message.
func (n *syncNet) pop() (netMsg, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.queue) == 0 {
		return netMsg{}, false
	}
	m := n.queue[0]
	n.queue = n.queue[1:]
	return m, true
}

func (t *syncTransport) Publish(_ context.Context, data []byte) error {
	if t.closed() {
		return errNetClosed
	}
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent[t.peer]++
	for _, p := range slices.Sorted(maps.Keys(n.nodes)) {
		if p != t.peer && !n.cut[[2]string{t.peer, p}] {
			n.queue = append(n.queue, netMsg{t.peer, p, data})
		}
	}
	close(n.wake)
	n.wake = make(chan struct{})
	return nil
}

func (t *syncTransport) Receive(ctx context.Context) (string, []byte, error) {
	n := t.net
	for {
		if t.closed() {
			return "", nil, errNetClosed
		}
		n.mu.Lock()
		i := slices.IndexFunc(n.queue, func(m netMsg) bool { return m.to == t.peer })
		if i >= 0 {
			m := n.queue[i]
			n.queue = slices.Delete(n.queue, i, i+1)
			n.mu.Unlock()
			return m.from, m.data, nil
		}
		wake := n.wake
		n.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-t.done:
		}
	}
}

func (t *syncTransport) close() { close(t.done) }

func (t *syncTransport) closed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

var _ Transport = (*syncTransport)(nil)

// testCluster runs runners without their goroutines: on the test
// goroutine, it does what each runner's loop and receive goroutines
// would (step when the timer is due or a kick is pending, handle each
// message), over a syncNet and a fakeClock that only the test moves.
// Every run is deterministic and nothing waits on the wall clock.
type testCluster struct {
	t       *testing.T
	clock   *fakeClock
	net     *syncNet
	logs    *logRecorder
	runners []*Runner
	nodes   []*testNode
	byPeer  map[string]*testNode
}

// testNode is a runner as its loop goroutine would see it.
type testNode struct {
	r       *Runner
	tr      *syncTransport
	due     time.Time // when the loop's timer fires
	stopped bool      // step or handle reported the runner closed
}

func newTestCluster(t *testing.T, ids ...string) *testCluster {
	tc := &testCluster{t: t, clock: newFakeClock(), net: newSyncNet(), logs: &logRecorder{}, byPeer: map[string]*testNode{}}
	for _, id := range ids {
		r := tc.add(id, nil)
		if err := r.SetNodeAvailable(true); err != nil {
			t.Fatal(err)
		}
	}
	return tc
}

// add starts a runner with FastConfig timings, adjusted by edit when it
// is not nil. Like New's timer, its first step is due at once.
func (tc *testCluster) add(id string, edit func(*Config)) *Runner {
	tc.t.Helper()
	cfg := FastConfig()
	cfg.NodeID, cfg.Peer, cfg.Clock = id, "peer-"+id, tc.clock
	cfg.LeaveLinger = time.Millisecond
	cfg.Logger = slog.New(tc.logs)
	if edit != nil {
		edit(&cfg)
	}
	tr := tc.net.join(cfg.Peer)
	r, err := newRunner(cfg, tr)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { _ = r.Close() })
	n := &testNode{r: r, tr: tr, due: tc.clock.Now()}
	tc.runners = append(tc.runners, r)
	tc.nodes = append(tc.nodes, n)
	tc.byPeer[cfg.Peer] = n
	return r
}

// deliver does what the runners' goroutines would do at the current
// time, without moving the clock: it steps every runner whose timer is
// due or that was kicked, delivers every queued message in order, and
// repeats until nothing is left to do.
func (tc *testCluster) deliver() {
	tc.t.Helper()
	for range 10_000 {
		busy := false
		now := tc.clock.Now()
		for _, n := range tc.nodes {
			if n.stopped {
				continue
			}
			kicked := false
			select {
			case <-n.r.kick:
				kicked = true
			default:
			}
			if !kicked && now.Before(n.due) {
				continue
			}
			busy = true
			wait, ok := n.r.step(kicked)
			n.due, n.stopped = now.Add(wait), !ok
		}
		for m, ok := tc.net.pop(); ok; m, ok = tc.net.pop() {
			busy = true
			if n := tc.byPeer[m.to]; n != nil && !n.stopped && !n.tr.closed() {
				n.stopped = !n.r.handle(m.from, m.data)
			}
		}
		if !busy {
			return
		}
	}
	tc.t.Fatal("the runners kept stepping or sending without time passing")
}

// nextDue is the earliest time a running runner's timer fires.
func (tc *testCluster) nextDue() (at time.Time, ok bool) {
	for _, n := range tc.nodes {
		if !n.stopped && (!ok || n.due.Before(at)) {
			at, ok = n.due, true
		}
	}
	return at, ok
}

// advance moves the clock forward by d, stopping at every moment a
// runner is due so that each step happens at its own time.
func (tc *testCluster) advance(d time.Duration) {
	tc.t.Helper()
	end := tc.clock.Now().Add(d)
	for {
		tc.deliver()
		at, ok := tc.nextDue()
		if !ok || at.After(end) {
			break
		}
		tc.clock.Advance(at.Sub(tc.clock.Now()))
	}
	tc.clock.Advance(end.Sub(tc.clock.Now()))
	tc.deliver()
}

// until moves the clock from one due moment to the next until cond
// holds; the test fails if it does not within max of fake time.
func (tc *testCluster) until(max time.Duration, what string, cond func() bool) {
	tc.t.Helper()
	start := tc.clock.Now()
	tc.deliver()
	for !cond() {
		at, ok := tc.nextDue()
		if !ok || at.Sub(start) > max {
			tc.t.Fatalf("not within %v of fake time: %s", max, what)
		}
		tc.clock.Advance(at.Sub(tc.clock.Now()))
		tc.deliver()
	}
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

// next returns the watcher's next event. The harness has already run
// everything due, so the event is there now or never: Next gets a
// context that has ended and must not need to wait.
func next(t *testing.T, w *Watcher) Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("watcher: no event: %v", err)
	}
	return ev
}

// logRecorder is a slog.Handler that keeps the level and message of
// every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// has reports whether a record at level starts with msg.
func (h *logRecorder) has(level slog.Level, msg string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.ContainsFunc(h.recs, func(r slog.Record) bool {
		return r.Level == level && strings.HasPrefix(r.Message, msg)
	})
}

func TestRunnerElectsFailsOverAndHandsOver(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	n1, n2, n3 := tc.runners[0], tc.runners[1], tc.runners[2]
	w := n3.Watch(ClusterGroup)
	defer w.Close()
	if first := next(t, w); first.HasLeader() || first.Seq != 1 {
		t.Fatalf("first event = %+v; want no leader yet, seq 1", first)
	}

	tc.until(2*time.Second, "n1 leads everywhere", func() bool { return tc.agree(ClusterGroup, "n1", n1, n2, n3) })
	if ev := next(t, w); ev.Leader != "n1" || ev.Term != 1 || ev.Reason != ReasonElected {
		t.Fatalf("event = %+v", ev)
	}
	// A silent crash: n1 is cut off and never says goodbye. Nothing may
	// change before Timeout−Interval of silence.
	tc.net.isolate("peer-n1", true)
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
	if ev := next(t, w); ev.Leader != "n2" || ev.Reason != ReasonFailed || ev.Previous.Leader != "n1" {
		t.Errorf("event = %+v", ev)
	}

	// Graceful: closing n2 hands over to n3 with no time passing at all,
	// on the goodbye alone.
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	before := tc.clock.Now()
	tc.deliver()
	if l := n3.Leader(ClusterGroup); l.Leader != "n3" || !tc.clock.Now().Equal(before) {
		t.Fatalf("n3 did not take over on n2's goodbye without the clock moving: %+v", l)
	}
	if ev := next(t, w); ev.Leader != "n3" || ev.Reason != ReasonLeft || ev.Term != 3 {
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
	// Off the heartbeat beat, so that c2's session ends between two
	// heartbeats: the runner must step at the rule's deadline.
	tc.advance(7 * time.Millisecond)
	joined := tc.clock.Now()
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
		ev = next(t, w)
	}
	if !ev.Joined || !ev.Active || ev.Candidate != "n1:a" {
		t.Errorf("event %+v", ev)
	}
	// c2's session expires (no ReportHealth within 1s): it leaves by itself.
	tc.until(2*time.Second, "c2 expired", func() bool {
		_, err := c2.Status()
		return errors.Is(err, ErrNoCandidate)
	})
	if took := tc.clock.Now().Sub(joined); took != time.Second {
		t.Errorf("c2 expired %v after it joined, want its TTL (1s)", took)
	}
	if err := c1.Leave(); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, w); ev.Joined || ev.IsLeader {
		t.Errorf("after leave: %+v", ev)
	}
	if err := c1.Leave(); !errors.Is(err, ErrNoCandidate) {
		t.Errorf("second leave: %v", err)
	}
	// The heartbeat that no longer lists c1 goes out at once.
	tc.deliver()
	if gs := n2.Groups(); len(gs) != 1 || gs[0].Name != ClusterGroup {
		t.Errorf("n2 lists %+v, want only the cluster group once every db candidate left, with no time passing", gs)
	}
}

func TestRunnerSuspendedHeartbeatsNoFalseFailover(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2")
	n1, n2 := tc.runners[0], tc.runners[1]
	tc.until(2*time.Second, "n1 leads", func() bool { return tc.agree(ClusterGroup, "n1", n1, n2) })
	cfg := FastConfig()
	pause := cfg.Timeout - cfg.Interval - 10*time.Millisecond
	n1.SuspendHeartbeats(pause)
	start, sent := tc.clock.Now(), tc.net.published("peer-n1")
	for range 2 * cfg.Timeout / (10 * time.Millisecond) {
		tc.advance(10 * time.Millisecond)
		if l := n2.Leader(ClusterGroup); l.Leader != "n1" || l.Term != 1 {
			t.Fatalf("during a pause shorter than Timeout−Interval: %+v", l)
		}
		if in := tc.clock.Now().Sub(start); in < pause && tc.net.published("peer-n1") != sent {
			t.Fatalf("n1 sent a heartbeat %v into a pause of %v", in, pause)
		}
	}
	if tc.net.published("peer-n1") == sent {
		t.Error("n1 sent no heartbeat after its pause")
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
	store := &termFile{terms: map[string]uint64{ClusterGroup: 41}}
	tc := newTestCluster(t)
	r := tc.add("solo", func(c *Config) { c.Terms = store })
	if err := r.SetNodeAvailable(true); err != nil {
		t.Fatal(err)
	}
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

// TestRunnerCloseLeaksNothing hands an elected cluster to the runners'
// own goroutines (the production driver) and closes it: every watcher
// ends and no goroutine is left.
func TestRunnerCloseLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	tc := newTestCluster(t, "a", "b")
	tc.until(time.Second, "a leads", func() bool { return tc.agree(ClusterGroup, "a", tc.runners...) })
	w := tc.runners[0].Watch(ClusterGroup)
	for _, r := range tc.runners {
		r.run()
	}
	if n := runnerGoroutines(); n != 3*len(tc.runners) {
		t.Fatalf("%d runner goroutines, want %d (loop, receive, saver)", n, 3*len(tc.runners))
	}
	for _, r := range tc.runners {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		_ = r.Close()
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel() // the runners are closed: Next must not wait
	for {
		if _, err := w.Next(ended); err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Next after Close: %v, want ErrClosed", err)
			}
			break
		}
	}
	// Close has waited for the goroutines; they may still be returning.
	deadline := time.Now().Add(5 * time.Second)
	for runnerGoroutines() > 0 || runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
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

// runnerGoroutines counts the live goroutines that Runner.run started,
// whether they have begun to run or not (each trace ends "created by
// ...(*Runner).run").
func runnerGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "election.(*Runner).run in goroutine")
}

// TestRunnerTransportEnds: a transport that ends (the node's network
// closed first) stops the receive loop; the runner keeps answering and
// closes cleanly.
func TestRunnerTransportEnds(t *testing.T) {
	tc := newTestCluster(t, "a")
	r := tc.runners[0]
	tc.nodes[0].tr.close()
	r.wg.Add(1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		r.receive()
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the receive loop did not stop when its transport ended")
	}
	if !tc.logs.has(slog.LevelWarn, "election transport stopped") {
		t.Error("no warning that the transport stopped")
	}
	tc.until(time.Second, "a leads alone", func() bool { return r.Leader(ClusterGroup).Leader == "a" })
	if _, err := r.Join(Spec{Group: "svc"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewChecksItsArguments(t *testing.T) {
	if _, err := New(Config{Peer: "p"}, newSyncNet().join("p")); !errors.Is(err, ErrInvalid) {
		t.Errorf("New without NodeID: %v, want ErrInvalid", err)
	}
	if _, err := New(Config{NodeID: "n", Peer: "p"}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("New without Transport: %v, want ErrInvalid", err)
	}
}

// Only the leader and the next in line heartbeat every Interval; the
// others every idle period, and they are timed out after as many idle
// periods as Timeout holds Intervals. When the leader fails, the new
// next in line turns fast at once.
func TestRunnerIdleNodesHeartbeatSlowly(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3", "n4", "n5")
	rs := tc.runners
	tc.until(2*time.Second, "n1 leads everywhere", func() bool { return tc.agree(ClusterGroup, "n1", rs...) })
	tc.advance(time.Second) // settled: n3-n5 announced their idle period
	cfg := FastConfig()
	idle := rs[4].rule.IdlePeriod()
	if want := 10 * cfg.Interval; idle != want {
		t.Fatalf("idle period of 5 nodes = %v, want max(10×Interval, 5×Interval/2) = %v", idle, want)
	}
	count := func() []int {
		var c []int
		for _, id := range []string{"n1", "n2", "n3", "n4", "n5"} {
			c = append(c, tc.net.published("peer-"+id))
		}
		return c
	}
	before := count()
	span := 5 * time.Second
	tc.advance(span)
	after := count()
	fast, slow := int(span/cfg.Interval), int(span/idle)
	for i, id := range []string{"n1", "n2", "n3", "n4", "n5"} {
		sent := after[i] - before[i]
		want := slow
		if i < 2 {
			want = fast // the leader and the next in line
		}
		if sent < want-1 || sent > want+1 {
			t.Errorf("%s sent %d heartbeats in %v, want %d", id, sent, span, want)
		}
	}

	// An idle node that goes silent is still alive after Timeout, and
	// timed out after Timeout/Interval idle periods.
	tc.net.isolate("peer-n5", true)
	cut := tc.clock.Now()
	member := func(r *Runner, id string) Member {
		g, err := r.Group(ClusterGroup)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range g.Members {
			if m.ID == id {
				return m
			}
		}
		t.Fatalf("no member %s", id)
		return Member{}
	}
	tc.advance(2 * cfg.Timeout)
	if !member(rs[0], "n5").Alive {
		t.Errorf("n5 (idle) timed out after %v, before its idle timeout", tc.clock.Now().Sub(cut))
	}
	idleTimeout := time.Duration(float64(cfg.Timeout) * float64(idle) / float64(cfg.Interval))
	tc.until(idleTimeout+idle, "n1 times n5 out", func() bool { return !member(rs[0], "n5").Alive })

	// The leader crashes: n2 (fast) takes over within Timeout, and n3,
	// next in line now, sends at once and then every Interval.
	tc.net.isolate("peer-n1", true)
	crash := tc.clock.Now()
	tc.until(cfg.Timeout+cfg.Interval, "n2 leads", func() bool { return tc.agree(ClusterGroup, "n2", rs[1], rs[2], rs[3]) })
	if took := tc.clock.Now().Sub(crash); took > cfg.Timeout+cfg.Interval {
		t.Errorf("failover took %v", took)
	}
	if p := rs[2].rule.lastPeriod; p != cfg.Interval {
		t.Errorf("n3, next in line, last announced %v, want a heartbeat at once announcing %v", p, cfg.Interval)
	}
	before = count()
	tc.advance(time.Second)
	if sent := count()[2] - before[2]; sent < int(time.Second/cfg.Interval)-1 {
		t.Errorf("n3 (next in line) sent %d heartbeats in 1s, want about %d", sent, time.Second/cfg.Interval)
	}
}

// Nodes started one after another, each lower than the last (the worst
// order: each newcomer would preempt), elect once the starts stop: the
// lowest, at term 1, without a change before it.
func TestRunnerStaggeredStartElectsOnce(t *testing.T) {
	tc := newTestCluster(t)
	ids := []string{"n8", "n7", "n6", "n5", "n4", "n3", "n2", "n1"}
	cfg := FastConfig()
	for _, id := range ids {
		r := tc.add(id, nil)
		if err := r.SetNodeAvailable(true); err != nil {
			t.Fatal(err)
		}
		tc.advance(cfg.Warmup / 3)
	}
	tc.until(8*cfg.Warmup, "n1 leads everywhere", func() bool { return tc.agree(ClusterGroup, "n1", tc.runners...) })
	for i, r := range tc.runners {
		if l := r.Leader(ClusterGroup); l.Term != 1 {
			t.Errorf("%s: term %d after a staggered start, want 1 (one election)", ids[i], l.Term)
		}
	}
}

// A node whose own timer fired late extends its timeouts by that much:
// its own stall is not taken for its peers' failure. A node that ran on
// time fails over after Timeout as before.
func TestRunnerLateTimerExtendsTimeouts(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	n1, n2, n3 := tc.runners[0], tc.runners[1], tc.runners[2]
	tc.until(2*time.Second, "n1 leads everywhere", func() bool { return tc.agree(ClusterGroup, "n1", n1, n2, n3) })
	cfg := FastConfig()
	late := 3 * cfg.Timeout
	n2.mu.Lock()
	n2.noteLate(n2.now(), late) // as a transport lag
	n2.mu.Unlock()
	tc.net.isolate("peer-n1", true)
	tc.until(cfg.Timeout+cfg.Interval, "n3 fails over", func() bool { return n3.Leader(ClusterGroup).Leader != "n1" })
	if l := n2.Leader(ClusterGroup); l.Leader != "n1" {
		t.Fatalf("n2, whose timer fired %v late, failed over after %v: %+v", late, cfg.Timeout+cfg.Interval, l)
	}
	tc.until(late+cfg.Timeout, "n2 fails over once its slack is used up", func() bool { return n2.Leader(ClusterGroup).Leader != "n1" })
}

// A leader whose own timer fired late tells its peers in the period it
// announces: they allow its silence that much more before they fail it
// over (the peers ran on time, so their own slack does not cover it:
// 24 nodes in one starved process failed their late leaders over, term
// 12-16). Once the allowance is used up, they fail over. Lateness under
// an Interval is not announced.
func TestRunnerLateLeaderAnnouncesItsLateness(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	n1, n2, n3 := tc.runners[0], tc.runners[1], tc.runners[2]
	tc.until(2*time.Second, "n1 leads everywhere", func() bool { return tc.agree(ClusterGroup, "n1", n1, n2, n3) })
	cfg := FastConfig()
	// Under an Interval late: nothing to announce (Timeout allows it).
	n1.mu.Lock()
	n1.noteLate(n1.now(), cfg.Interval/2)
	n1.mu.Unlock()
	tc.advance(cfg.Interval)
	if p := n2.rule.nodes["peer-n1"].period; p != cfg.Interval {
		t.Fatalf("n2 got n1's period as %v after n1 ran %v late, want Interval (%v)", p, cfg.Interval/2, cfg.Interval)
	}
	late := 2 * cfg.Timeout
	n1.mu.Lock()
	n1.noteLate(n1.now(), late) // as a transport lag
	n1.mu.Unlock()
	tc.advance(cfg.Interval) // n1's next heartbeat announces it
	if p, want := n2.rule.nodes["peer-n1"].period, cfg.Interval+late*cfg.Interval/cfg.Timeout; p != want {
		t.Fatalf("n2 got n1's period as %v, want %v: Interval plus late×Interval/Timeout", p, want)
	}
	tc.net.isolate("peer-n1", true)
	cut := tc.clock.Now()
	tc.advance(cfg.Timeout + cfg.Interval)
	for _, r := range []*Runner{n2, n3} {
		if l := r.Leader(ClusterGroup); l.Leader != "n1" {
			t.Fatalf("%s failed n1 over %v after its last heartbeat, which allowed %v more: %+v", r.cfg.NodeID, tc.clock.Now().Sub(cut), late, l)
		}
	}
	tc.until(late+cfg.Timeout, "n2 and n3 fail over once n1's allowance is used up", func() bool {
		return n2.Leader(ClusterGroup).Leader == "n2" && n3.Leader(ClusterGroup).Leader == "n2"
	})
}

// A node stopped for longer than Timeout (SIGSTOP, a paused VM) takes
// no live peer for failed when it wakes, whether its late timer or a
// heartbeat read on waking runs first: the rule only judged the silence
// after the lateness was noted by the loop's timer, so a heartbeat
// handled first made the woken node fail the leader over at once (seen
// in the WAN soak, 4 times in 28 pause rounds). Its peers, which ran,
// do time it out.
func TestRunnerStoppedNodeWakesWithoutFailover(t *testing.T) {
	for _, first := range []string{"heartbeat", "timer"} {
		t.Run(first+" first", func(t *testing.T) {
			tc := newTestCluster(t, "n1", "n2", "n3")
			n1, n2, n3 := tc.runners[0], tc.runners[1], tc.runners[2]
			tc.until(2*time.Second, "n1 leads everywhere", func() bool { return tc.agree(ClusterGroup, "n1", n1, n2, n3) })
			term := n3.Leader(ClusterGroup).Term
			cfg := FastConfig()
			stopped := tc.byPeer["peer-n3"]
			stopped.stopped = true // neither steps nor handles: a stopped process
			tc.net.isolate("peer-n3", true)
			tc.advance(3 * cfg.Timeout)
			if l := n1.Leader(ClusterGroup); l.Leader != "n1" {
				t.Fatalf("n1 lost its leadership while n3 was stopped: %+v", l)
			}
			tc.net.isolate("peer-n3", false)
			stopped.stopped = false
			if first == "heartbeat" {
				n2.mu.Lock()
				hb := n2.rule.Heartbeat(n2.now()).Encode()
				n2.mu.Unlock()
				n3.handle("peer-n2", hb)
			} else {
				if _, ok := n3.step(false); !ok {
					t.Fatal("step: runner closed")
				}
			}
			tc.advance(cfg.Interval)
			if l := n3.Leader(ClusterGroup); l.Leader != "n1" || l.Term != term {
				t.Fatalf("n3, woken after %v stopped, sees %+v: want n1 at term %d still", 3*cfg.Timeout, l, term)
			}
		})
	}
}

// laggyTransport reports a lag of its own messages (p2p.Topic.Lag).
type laggyTransport struct {
	Transport
	lag time.Duration
}

func (l laggyTransport) Lag(time.Duration) time.Duration { return l.lag }

// A transport whose own messages lagged extends the timeouts like a late
// timer does: the peers' messages waited in the same queue.
func TestRunnerTransportLagExtendsTimeouts(t *testing.T) {
	cfg := FastConfig()
	cfg.NodeID, cfg.Peer, cfg.Clock = "n1", "peer-n1", newFakeClock()
	r, err := newRunner(cfg, laggyTransport{newSyncNet().join("peer-n1"), 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.step(false); !ok {
		t.Fatal("step: runner closed")
	}
	if r.slack != 2*time.Second || r.rule.slack != 2*time.Second {
		t.Errorf("slack = %v (rule %v), want the transport's lag of 2s", r.slack, r.rule.slack)
	}
}

// blockingTerms is a TermStore whose SaveTerms waits for release (a
// slow disk).
type blockingTerms struct {
	release chan struct{}
	saved   chan map[string]uint64
}

func (b *blockingTerms) LoadTerms() (map[string]uint64, error) { return nil, nil }
func (b *blockingTerms) SaveTerms(t map[string]uint64) error {
	<-b.release
	b.saved <- t
	return nil
}

// Terms are saved on a goroutine of their own: a slow disk never holds
// the heartbeat loop or the receive loop, which ask for a save and go on.
func TestRunnerSavesTermsOffTheHeartbeatPath(t *testing.T) {
	store := &blockingTerms{release: make(chan struct{}), saved: make(chan map[string]uint64, 4)}
	cfg := FastConfig()
	cfg.NodeID, cfg.Peer, cfg.Clock, cfg.Terms = "n1", "peer-n1", newFakeClock(), store
	r, err := newRunner(cfg, newSyncNet().join("peer-n1"))
	if err != nil {
		t.Fatal(err)
	}
	r.started = true
	r.wg.Add(1)
	go r.saver()
	defer func() { close(store.release); r.cancel(); r.wg.Wait() }()
	r.mu.Lock()
	r.termsVer++ // terms changed
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for range 3 {
			r.requestSave()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("requestSave waited for a slow TermStore")
	}
}

// Idle heartbeats go out a little early, by a fraction that differs
// from node to node and heartbeat to heartbeat, so that nodes started
// together do not send them all at once, every idle period; fast ones
// keep Interval.
func TestIdleHeartbeatsDoNotMarchInStep(t *testing.T) {
	r := newTestCluster(t, "n1").runners[0]
	interval := r.cfg.Interval
	idle := 10 * interval
	if got := r.sendGap(interval, &Heartbeat{NodeID: "n1", Incarnation: 1, Seq: 7}); got != interval {
		t.Errorf("fast heartbeat: next after %v, want Interval %v", got, interval)
	}
	gaps := map[time.Duration]bool{}
	lo, hi := idle, time.Duration(0)
	for i := range 64 {
		for seq := range uint64(4) {
			g := r.sendGap(idle, &Heartbeat{NodeID: fmt.Sprintf("node%d", i), Incarnation: 42, Seq: seq})
			if g > idle || g < idle*3/4 {
				t.Fatalf("node%d seq %d: next after %v, want within [%v, %v]", i, seq, g, idle*3/4, idle)
			}
			gaps[g] = true
			lo, hi = min(lo, g), max(hi, g)
		}
	}
	if len(gaps) < 200 || hi-lo < idle/5 {
		t.Errorf("256 idle heartbeats of 64 nodes: %d distinct gaps within %v..%v, want them spread over most of the last quarter", len(gaps), lo, hi)
	}
}
