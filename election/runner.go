package election

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/starling-sync/starling/internal/jitter"
)

// Transport carries heartbeats: a broadcast topic whose messages are
// authenticated by their author. The runner consumes it; p2p.Topic
// supplies it (gossipsub on "starling/<env>/election", accepting only
// trusted authors).
type Transport interface {
	// Publish sends data to every node on the topic, best effort.
	Publish(ctx context.Context, data []byte) error
	// Receive returns the next message from another node, with its
	// author's peer ID, until ctx ends or the transport closes.
	Receive(ctx context.Context) (from string, data []byte, err error)
}

// Runner drives a Rule: it owns the goroutines, the clock and the
// network. It sends a heartbeat every Interval, or every idle period
// while no local candidate leads or stands next (and at once when a local
// candidate changes), feeds received heartbeats to the rule stamped with
// the local monotonic clock, ticks the rule at its deadlines, and
// delivers leadership changes to watchers.
//
// The runner joins the built-in cluster group with the node itself as a
// candidate, not available until SetNodeAvailable(true).
//
// Its methods are safe for concurrent use.
//
// Its goroutines are the driver, and the only one in production
// (compare raft's node.go around RawNode): loop waits for the timer or a
// kick and calls step, receive takes messages off the Transport (through
// a reader goroutine, so that it can take what queued up at once) and
// calls handleAll. The package's tests call step and handle themselves, on
// the test goroutine, over a synchronous network and a clock they
// advance, so that a runner test is deterministic and never sleeps.
type Runner struct {
	cfg     Config
	tr      Transport
	log     *slog.Logger
	clock   Clock
	start   time.Time
	started bool // the goroutines run (New); false while a test drives step and handle

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // step now, and send a heartbeat (buffered 1)
	save   chan struct{} // save the terms (buffered 1; saver)

	mu        sync.Mutex
	rule      *Rule
	closed    bool
	watchers  map[*Watcher]struct{}
	nextSend  time.Duration // the next periodic heartbeat is due then (0: at once)
	suspended time.Duration // no heartbeats are sent before this time
	termsVer  uint64        // bumped on every change (terms may have moved)

	// due is when the loop's next step is due (step sets it), ran when
	// step or handle last ran; slack is the largest stall noted since
	// slackAt (noteLate).
	due, ran       time.Duration
	slack, slackAt time.Duration

	termsMu  sync.Mutex // serialises SaveTerms; taken before mu
	savedVer uint64

	closeOnce sync.Once
}

// New validates cfg, starts the runner on tr, and joins the node's
// cluster candidate (not yet available). The first heartbeat goes out at
// once. Close stops it.
func New(cfg Config, tr Transport) (*Runner, error) {
	r, err := newRunner(cfg, tr)
	if err != nil {
		return nil, err
	}
	r.run()
	r.log.Info("election started", "interval", r.cfg.Interval, "timeout", r.cfg.Timeout, "warmup", r.cfg.Warmup, "preemption", !r.cfg.NoPreemption)
	return r, nil
}

// newRunner is New without the goroutines: nothing happens until run
// starts them, or a test calls step and handle.
func newRunner(cfg Config, tr Transport) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tr == nil {
		return nil, fmt.Errorf("%w: nil Transport", ErrInvalid)
	}
	cfg = cfg.EnsureDefaults()
	r := &Runner{
		cfg:      cfg,
		tr:       tr,
		log:      cfg.Logger.With("component", "election"),
		clock:    cfg.Clock,
		kick:     make(chan struct{}, 1),
		save:     make(chan struct{}, 1),
		watchers: make(map[*Watcher]struct{}),
	}
	r.start = r.clock.Now()
	rule, err := NewRule(cfg, uint64(r.start.UnixNano()), 0)
	if err != nil {
		return nil, err
	}
	r.rule = rule
	if cfg.Terms != nil {
		terms, err := cfg.Terms.LoadTerms()
		if err != nil {
			return nil, fmt.Errorf("election: load terms: %w", err)
		}
		for g, t := range terms {
			rule.RestoreTerm(g, t)
		}
	}
	if err := rule.Join(0, Spec{Group: ClusterGroup, ID: cfg.NodeID}); err != nil {
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// run starts the driver: the goroutines that call step and handle.
// Close stops them.
func (r *Runner) run() {
	r.started = true
	r.wg.Add(3)
	go r.loop()
	go r.receive()
	go r.saver()
}

// requestSave asks for the terms to be saved. The saver goroutine
// writes them, so that a slow disk (the file is synced) never holds the
// heartbeats: saving on the loop and receive goroutines made a node
// under disk contention miss its heartbeats after each change, which
// caused the next change (a storm of failovers when 24 nodes started on
// a busy machine). A runner a test drives saves at once.
func (r *Runner) requestSave() {
	if !r.started {
		r.saveTerms()
		return
	}
	select {
	case r.save <- struct{}{}:
	default: // a save is pending; it will write the latest terms
	}
}

// saver saves the terms when asked, until the runner closes (Close
// saves once more at the end).
func (r *Runner) saver() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.save:
			r.saveTerms()
		}
	}
}

// now is the rule's clock: monotonic time since the runner started.
func (r *Runner) now() time.Duration { return r.clock.Now().Sub(r.start) }

// Config returns the runner's configuration (with defaults applied).
func (r *Runner) Config() Config { return r.cfg }

// Close says goodbye (so the others fail over at once instead of after
// Timeout), waits LeaveLinger for it to leave, stops the goroutines and
// ends every watcher. Safe to call twice. Call it before closing the
// transport.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		bye := r.rule.Goodbye(r.now()).Encode()
		for w := range r.watchers {
			w.notify()
		}
		r.mu.Unlock()

		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Interval+r.cfg.LeaveLinger)
		if err := r.tr.Publish(ctx, bye); err != nil {
			r.log.Debug("goodbye not sent", "err", err)
		} else if r.started {
			// Gossip has no delivery receipt; give the goodbye time to
			// leave before the caller closes the network. Real time: this
			// waits on the network, not on the rule's clock. (A runner
			// that a test drives publishes on a synchronous network: its
			// goodbye is queued when Publish returns.)
			time.Sleep(r.cfg.LeaveLinger)
		}
		cancel()
		r.cancel()
		r.wg.Wait()
		r.saveTerms()
		r.log.Info("election stopped")
	})
	return nil
}

// loop steps the runner when the timer fires (at the time step asked
// for) or when a kick asks for a heartbeat now.
func (r *Runner) loop() {
	defer r.wg.Done()
	timer := r.clock.NewTimer(0) // the first heartbeat goes out at once
	defer timer.Stop()
	for {
		kicked := false
		select {
		case <-r.ctx.Done():
			return
		case <-timer.C():
		case <-r.kick:
			kicked = true
		}
		wait, ok := r.step(kicked)
		if !ok {
			return
		}
		timer.Reset(wait)
	}
}

// lagger is a Transport that knows how long its own messages took
// through its pipeline lately (p2p.Topic.Lag): its peers' messages
// waited as long.
type lagger interface {
	Lag(within time.Duration) time.Duration
}

// lag is how long the transport's own messages took through its
// pipeline lately (0 for a transport that does not know).
func (r *Runner) lag() time.Duration {
	if l, ok := r.tr.(lagger); ok {
		return l.Lag(2 * r.cfg.Timeout)
	}
	return 0
}

// noteLate records this node's own stall, measured at now: how far past
// its due time the loop's step runs, or a heartbeat is handled, or how
// long the transport's own messages lagged (lag). A step at least an
// Interval late means the process was stopped or starved, since any
// moment after it last ran: all of the time since then counts (a
// stopped node's silence began when it stopped, not when its timer was
// due). A node whose own timers fire late (a starved process, a paused
// VM, a saturated machine) has also read its peers' heartbeats late: it
// extends its timeouts by the largest lateness of the last 2×Timeout
// (Rule.SetSlack), so that its own stall is not taken for its peers'
// failure (HashiCorp's Lifeguard calls this local health awareness).
// Measured: 24 nodes started at once in one process on 2 busy cores
// changed leaders hundreds of times on failures that were the process's
// own delays. Both step and handle note it before they feed the rule:
// after a stop (SIGSTOP, a VM paused), the first heartbeat read may be
// handled before the late timer fires, and the rule then judged the
// silence of a stopped node as its peers' (the WAN soak: a node resumed
// after 10-20 s took the live leader for failed at once). Callers hold
// r.mu.
func (r *Runner) noteLate(now, lag time.Duration) {
	late := now - r.due
	if late >= r.cfg.Interval {
		late = now - r.ran
	}
	late = max(late, lag)
	r.ran = now
	if late > r.slack || now-r.slackAt > 2*r.cfg.Timeout {
		r.slack, r.slackAt = min(max(late, 0), 10*r.cfg.Timeout), now
		r.rule.SetSlack(r.slack)
	}
}

// sendGap is how long after hb, sent on period (the rule's SendPeriod:
// hb.Period less the allowance for this node's lateness), the next
// heartbeat is due: period while that is Interval, up to a quarter less
// for an idle period.
// Nodes started together otherwise send their idle heartbeats in step,
// every idle period all at once: at 200 nodes, 200 heartbeats, each
// copied to every peer, in one burst that the leader's heartbeats wait
// behind. Receivers time a node out by the period it announced, so
// sending early is always safe; it costs at most a third more idle
// heartbeats (an eighth on average). The fraction comes from a hash of
// the node's ID, incarnation and the heartbeat's sequence number:
// different from node to node and heartbeat to heartbeat, and the same
// in a test that replays them.
func (r *Runner) sendGap(period time.Duration, hb *Heartbeat) time.Duration {
	if period <= r.cfg.Interval {
		return period
	}
	u := jitter.Fraction(hb.NodeID, hb.Incarnation, hb.Seq)
	return period - time.Duration(u*float64(period)/4)
}

// step ticks the rule, sends a heartbeat if one is due (or kicked asks
// for one) and delivers what changed. It returns how long until the
// next step is due (the next heartbeat or rule deadline, whichever comes
// first); ok is false once the runner is closed. The loop goroutine
// calls it; so do the tests, in its place.
func (r *Runner) step(kicked bool) (wait time.Duration, ok bool) {
	lag := r.lag()
	now := r.now()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, false
	}
	r.noteLate(now, lag)
	r.rule.Tick(now)
	out := r.rule.Take()
	var data []byte
	suspended := now < r.suspended
	if (kicked || out.Send || now >= r.nextSend) && !suspended {
		hb := r.rule.Heartbeat(now)
		data = hb.Encode()
		r.nextSend = now + r.sendGap(r.rule.SendPeriod(), hb)
	}
	// A suspension acts like a paused process: what falls due meanwhile
	// is sent the moment it ends.
	sendAt := r.nextSend
	if suspended {
		sendAt = max(r.nextSend, r.suspended)
	}
	deadline, hasDeadline := r.rule.NextDeadline()
	changed := r.dispatch(out)
	wait = sendAt - now
	if hasDeadline && deadline-now < wait {
		wait = deadline - now
	}
	wait = max(wait, 0)
	r.due = now + wait
	r.mu.Unlock()

	if data != nil {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
		if err := r.tr.Publish(ctx, data); err != nil && r.ctx.Err() == nil {
			r.log.Debug("heartbeat not sent", "err", err)
		}
		cancel()
	}
	if changed {
		r.requestSave()
	}
	return wait, true
}

// receive takes messages off the transport and hands them to handle,
// until the transport ends or the runner closes.
func (r *Runner) receive() {
	defer r.wg.Done()
	in := make(chan message, receiveBatch)
	r.wg.Go(func() {
		defer close(in)
		for {
			from, data, err := r.tr.Receive(r.ctx)
			if err != nil {
				if r.ctx.Err() == nil {
					r.log.Warn("election transport stopped: no more heartbeats will be received", "err", err)
				}
				return
			}
			select {
			case in <- message{from, data}:
			case <-r.ctx.Done():
				return
			}
		}
	})
	batch := make([]message, 0, receiveBatch)
	for m := range in {
		batch = append(batch[:0], m)
	more:
		for len(batch) < receiveBatch {
			select {
			case m, ok := <-in:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		if !r.handleAll(batch) {
			return
		}
	}
}

// receiveBatch bounds how many queued heartbeats the runner hands the
// rule at once (Rule.ReceiveAll).
const receiveBatch = 64

// message is a heartbeat as the transport delivered it.
type message struct {
	from string
	data []byte
}

// handle feeds a message from peer from to the rule, stamped with the
// time it is handled, and delivers what changed. A message that is not a
// heartbeat is logged and dropped. It reports false once the runner is
// closed. The tests call it in the receive goroutine's place.
func (r *Runner) handle(from string, data []byte) bool {
	return r.handleAll([]message{{from, data}})
}

// handleAll is handle for messages that queued up together: the rule
// takes them at once (Rule.ReceiveAll).
func (r *Runner) handleAll(msgs []message) bool {
	hbs := make([]Received, 0, len(msgs))
	for _, m := range msgs {
		hb, err := DecodeHeartbeat(m.data)
		if err != nil {
			r.log.Warn("dropped a bad heartbeat", "peer", m.from, "err", err)
			continue
		}
		hbs = append(hbs, Received{m.from, hb})
	}
	if len(hbs) == 0 {
		return true
	}
	lag := r.lag()
	now := r.now()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.noteLate(now, lag)
	r.rule.ReceiveAll(now, hbs)
	changed := r.dispatch(r.rule.Take())
	r.mu.Unlock()
	if changed {
		r.requestSave()
	}
	return true
}

// dispatch logs the output, asks for a heartbeat if needed and updates
// the watchers. It reports whether leadership changed. Callers hold r.mu.
func (r *Runner) dispatch(out Output) bool {
	for _, c := range out.Changes {
		r.log.Info("leadership changed", "group", c.Group, "leader", orNone(c.Leader), "leader_node", c.Node,
			"term", c.Term, "previous", orNone(c.Previous.Leader), "reason", c.Reason)
	}
	for _, n := range out.Notices {
		if n.Kind == NoticeDuplicateNode {
			r.log.Error("duplicate node ID: "+n.String(), "node_id", n.ID, "peers", n.Peers)
		} else {
			r.log.Warn(n.String(), "group", n.Group, "candidate", n.ID)
		}
	}
	if out.Send {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	last := make(map[string]Change)
	for _, c := range out.Changes {
		last[c.Group] = c
	}
	for w := range r.watchers {
		w.refresh(last)
	}
	if len(out.Changes) > 0 {
		r.termsVer++
		return true
	}
	return false
}

// saveTerms hands the current terms to the TermStore if they may have
// changed since the last save.
func (r *Runner) saveTerms() {
	if r.cfg.Terms == nil {
		return
	}
	r.termsMu.Lock()
	defer r.termsMu.Unlock()
	r.mu.Lock()
	ver, terms := r.termsVer, r.rule.Terms()
	r.mu.Unlock()
	if ver == r.savedVer {
		return
	}
	if err := r.cfg.Terms.SaveTerms(terms); err != nil {
		r.log.Warn("cannot save election terms", "err", err)
		return
	}
	r.savedVer = ver
}

// apply runs an input on the rule and dispatches its output.
func (r *Runner) apply(f func(now time.Duration) error) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	err := f(r.now())
	changed := r.dispatch(r.rule.Take())
	r.mu.Unlock()
	if changed {
		r.requestSave()
	}
	return err
}

// SetNodeAvailable marks this node's cluster candidate available (ready
// to lead the cluster) or not. A node that is still joining or syncing
// must not be available; node.Open marks it available once the node has
// started (the state-transfer work hooks in there).
func (r *Runner) SetNodeAvailable(available bool) error {
	return r.apply(func(now time.Duration) error {
		return r.rule.SetAvailable(now, ClusterGroup, r.cfg.NodeID, available)
	})
}

// Join adds a candidate of this node: spec.ID is set from the node ID
// and spec.Instance. ErrReservedGroup for the cluster group,
// ErrCandidateExists if that candidate is already joined, ErrInvalid for
// a bad name, kind, mode or TTL. A heartbeat announcing it goes out at
// once.
func (r *Runner) Join(spec Spec) (*Candidate, error) {
	if spec.Group == ClusterGroup {
		return nil, fmt.Errorf("%w: %q: its candidates are the nodes themselves", ErrReservedGroup, ClusterGroup)
	}
	if err := CheckInstance(spec.Instance); err != nil {
		return nil, err
	}
	spec.ID = CandidateID(r.cfg.NodeID, spec.Instance)
	err := r.apply(func(now time.Duration) error { return r.rule.Join(now, spec) })
	if err != nil {
		return nil, err
	}
	return &Candidate{r: r, group: spec.Group, id: spec.ID}, nil
}

// Leave removes a candidate of this node; the others learn it with the
// heartbeat sent at once, so a leader hands over without waiting for
// Timeout. ErrNoCandidate if it is not joined.
func (r *Runner) Leave(group, id string) error {
	if group == ClusterGroup {
		return fmt.Errorf("%w: the node leaves the cluster group when it stops", ErrReservedGroup)
	}
	return r.apply(func(now time.Duration) error { return r.rule.Leave(now, group, id) })
}

// SetAvailable marks a candidate of this node available or not.
func (r *Runner) SetAvailable(group, id string, available bool) error {
	return r.apply(func(now time.Duration) error { return r.rule.SetAvailable(now, group, id, available) })
}

// ReportHealth records a candidate's health and renews its session.
func (r *Runner) ReportHealth(group, id string, healthy bool) error {
	return r.apply(func(now time.Duration) error { return r.rule.ReportHealth(now, group, id, healthy) })
}

// Candidate returns the status of a candidate of this node.
func (r *Runner) Candidate(group, id string) (st CandidateStatus, err error) {
	err = r.apply(func(now time.Duration) error {
		r.rule.Tick(now) // a session that just expired is gone
		st, err = r.rule.Candidate(group, id)
		return err
	})
	return st, err
}

// Candidates lists the candidates of this node (the cluster one included).
func (r *Runner) Candidates() []CandidateStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rule.Candidates()
}

// Leader returns the leadership of group as this node sees it; the zero
// Leader ("") when it has none.
func (r *Runner) Leader(group string) Leadership {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, _ := r.rule.Leader(group)
	return l
}

// Groups returns every group this node knows, sorted by name.
func (r *Runner) Groups() []GroupStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rule.Status()
}

// GroupNames lists, sorted, the groups Groups would return, without
// building their status (a sorted member list of each): what a caller
// that polls every second for new groups needs.
func (r *Runner) GroupNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rule.GroupNames()
}

// Group returns one group's status; ErrNoGroup if no candidate of it is
// known.
func (r *Runner) Group(name string) (GroupStatus, error) {
	if err := CheckGroupName(name); err != nil {
		return GroupStatus{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rule.Group(name)
}

// SuspendHeartbeats stops sending heartbeats for d, as a paused process
// would (receiving and deciding go on). For fault-injection tests: a
// suspension shorter than Timeout−Interval must not cause a failover.
func (r *Runner) SuspendHeartbeats(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.suspended = r.now() + d
}

// Candidate is a handle on a candidate of this node (the Go lifecycle
// API; the HTTP API offers the same by group and ID).
type Candidate struct {
	r     *Runner
	group string
	id    string
}

// Group is the candidate's group.
func (c *Candidate) Group() string { return c.group }

// ID is the candidate's ID ("<node-id>" or "<node-id>:<instance>").
func (c *Candidate) ID() string { return c.id }

// SetAvailable marks the candidate ready to lead, or not.
func (c *Candidate) SetAvailable(available bool) error {
	return c.r.SetAvailable(c.group, c.id, available)
}

// ReportHealth reports the candidate healthy or not, and renews its
// session (Spec.TTL).
func (c *Candidate) ReportHealth(healthy bool) error {
	return c.r.ReportHealth(c.group, c.id, healthy)
}

// Status returns whether the candidate leads, and the group's leadership.
func (c *Candidate) Status() (CandidateStatus, error) { return c.r.Candidate(c.group, c.id) }

// Leave removes the candidate; a leader hands over at once.
func (c *Candidate) Leave() error { return c.r.Leave(c.group, c.id) }

// Watch returns a watcher of this candidate's leadership (see Watcher).
func (c *Candidate) Watch() *Watcher { return c.r.watch(c.group, c.id) }
