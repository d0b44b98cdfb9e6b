// Package groupcommit gathers concurrent requests into groups, for the
// group committers of the crdt and entity packages: one backend write and
// one fsync serve every request of a group.
package groupcommit

import "time"

// Gatherer builds groups from the requests sent on a channel. A group
// takes every request already waiting (those that came while the last
// group was being written). When the last group held several requests,
// its writers come back together, so the group also waits, up to Window,
// until as many requests have come as the last group answered: a lone
// writer is never delayed, and writers that all came back do not wait
// for the rest of the window.
//
// A Gatherer is used by one goroutine.
type Gatherer[T any] struct {
	C      <-chan T
	Window time.Duration

	timer    *time.Timer
	answered int // requests in the last group, plus one carried over
	carry    T
	carried  bool
}

// Carried returns, and forgets, the request the last group had no room
// for: it begins the next group.
func (g *Gatherer[T]) Carried() (T, bool) {
	r, ok := g.carry, g.carried
	var zero T
	g.carry, g.carried = zero, false
	return r, ok
}

// Gather returns the group that begins with first. add is called for
// every further request and reports whether it fits the group; one that
// does not ends the group and begins the next (Carried). full reports
// whether the group can take no more. open is false when C was found
// closed.
func (g *Gatherer[T]) Gather(first T, add func(T) bool, full func() bool) (group []T, open bool) {
	group, open = []T{first}, true
	var wait <-chan time.Time // nil: take only what is waiting
	if g.answered > 1 && g.Window > 0 {
		if g.timer == nil {
			g.timer = time.NewTimer(g.Window)
		} else {
			g.timer.Reset(g.Window)
		}
		wait = g.timer.C
		// Since Go 1.23 Stop and Reset discard a pending expiry, so no
		// drain is needed.
		defer g.timer.Stop()
	}
	defer func() {
		g.answered = len(group)
		if g.carried {
			g.answered++
		}
	}()
	for !full() {
		if len(group) >= g.answered {
			wait = nil
		}
		var r T
		select {
		case r, open = <-g.C:
		default:
			if wait == nil {
				return group, true
			}
			select {
			case r, open = <-g.C:
			case <-wait:
				return group, true
			}
		}
		if !open {
			return group, false
		}
		if !add(r) {
			g.carry, g.carried = r, true
			return group, true
		}
		group = append(group, r)
	}
	return group, true
}
