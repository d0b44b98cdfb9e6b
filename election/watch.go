package election

import "context"

// Event is the state a Watcher reports: a group's leadership and, for a
// candidate's watcher, what it means for that candidate.
type Event struct {
	// Leadership is the group's current leadership.
	Leadership
	// Previous is the leadership the watcher reported before this event.
	Previous Leadership `json:"previous"`
	// Reason is why the leadership last changed (a Reason constant), ""
	// when only the candidate's own state changed or for the first event.
	Reason string `json:"reason,omitempty"`
	// Candidate is the watched candidate ("" for a group watcher).
	Candidate string `json:"candidate,omitempty"`
	// IsLeader: the watched candidate leads the group.
	IsLeader bool `json:"is_leader"`
	// Active: IsLeader, or eligible in an AllWarm endpoint group.
	Active bool `json:"active"`
	// Joined: the watched candidate is still joined (false once it left or
	// its session expired: the watcher reports nothing more for it).
	Joined bool `json:"joined"`
	// Warming: this node is still listening after its start.
	Warming bool `json:"warming,omitempty"`
	// Seq numbers the events of this watcher from 1; a gap means events
	// were coalesced (only the latest state is kept).
	Seq uint64 `json:"seq"`
}

func (e Event) sameState(o Event) bool {
	return e.Leadership == o.Leadership && e.IsLeader == o.IsLeader && e.Active == o.Active &&
		e.Joined == o.Joined && e.Warming == o.Warming
}

// Watcher follows one group's leadership (Runner.Watch) or one
// candidate's (Candidate.Watch).
//
// Contract: the first Next returns the current state at once; each later
// one returns as soon as the state differs from the last one returned.
// The runner never blocks on a watcher: if several changes happen between
// two calls, Next returns only the latest state (Event.Seq shows the
// gap), so a slow consumer may miss intermediate leaders but never the
// current one. Next, Latest and Changed may be called from any goroutine;
// Next is meant for one consumer. After Close, or once the runner is
// closed, Next returns ErrClosed (after any state not yet returned).
type Watcher struct {
	r     *Runner
	group string
	cand  string
	ch    chan struct{}

	// Guarded by r.mu.
	latest  Event
	pending bool
	closed  bool
	seq     uint64
}

// Watch returns a watcher of group's leadership. The group need not
// exist yet.
func (r *Runner) Watch(group string) *Watcher { return r.watch(group, "") }

// WatchCandidate returns a watcher of a candidate of this node;
// ErrNoCandidate if it is not joined.
func (r *Runner) WatchCandidate(group, id string) (*Watcher, error) {
	if _, err := r.Candidate(group, id); err != nil {
		return nil, err
	}
	return r.watch(group, id), nil
}

func (r *Runner) watch(group, cand string) *Watcher {
	w := &Watcher{r: r, group: group, cand: cand, ch: make(chan struct{}, 1)}
	r.mu.Lock()
	defer r.mu.Unlock()
	w.latest = w.compute(Change{})
	w.seq, w.latest.Seq = 1, 1
	w.pending = true
	if r.closed {
		w.closed = true
	} else {
		r.watchers[w] = struct{}{}
	}
	w.notify()
	return w
}

// compute builds the event for the rule's current state. Caller holds r.mu.
func (w *Watcher) compute(last Change) Event {
	rule := w.r.rule
	lead, _ := rule.Leader(w.group)
	ev := Event{Leadership: lead, Candidate: w.cand, Warming: !rule.Warm(), Reason: last.Reason}
	if lead.Group == "" {
		ev.Group = w.group
	}
	if w.cand != "" {
		if st, err := rule.Candidate(w.group, w.cand); err == nil {
			ev.Joined, ev.IsLeader, ev.Active = true, st.IsLeader, st.Active
		}
	}
	return ev
}

// refresh recomputes the state after an input. Caller holds r.mu.
func (w *Watcher) refresh(last map[string]Change) {
	if w.closed {
		return
	}
	ev := w.compute(last[w.group])
	if ev.sameState(w.latest) {
		return
	}
	ev.Previous = w.latest.Leadership
	w.seq++
	ev.Seq = w.seq
	w.latest, w.pending = ev, true
	w.notify()
}

func (w *Watcher) notify() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// Changed receives a value when there may be a state Next has not
// returned yet (for select loops; then call Next or Latest).
func (w *Watcher) Changed() <-chan struct{} { return w.ch }

// Peek returns the current state without marking it as returned.
func (w *Watcher) Peek() Event {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.latest
}

// Poll returns a state not returned yet, if there is one (ok), without
// waiting; ErrClosed once closed and nothing is left to return.
func (w *Watcher) Poll() (ev Event, ok bool, err error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.pending {
		w.pending = false
		return w.latest, true, nil
	}
	if w.closed || w.r.closed {
		return Event{}, false, ErrClosed
	}
	return Event{}, false, nil
}

// Latest returns the current state and marks it as returned.
func (w *Watcher) Latest() Event {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	w.pending = false
	return w.latest
}

// Next waits for a state not returned yet and returns it; ctx.Err()
// when ctx ends, ErrClosed once the watcher or the runner is closed.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	for {
		w.r.mu.Lock()
		if w.pending {
			w.pending = false
			ev := w.latest
			w.r.mu.Unlock()
			return ev, nil
		}
		closed := w.closed || w.r.closed
		w.r.mu.Unlock()
		if closed {
			return Event{}, ErrClosed
		}
		select {
		case <-w.ch:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Close stops the watcher; a Next in progress returns ErrClosed.
func (w *Watcher) Close() {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	w.closed = true
	delete(w.r.watchers, w)
	w.notify()
}
