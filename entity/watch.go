package entity

import (
	"strings"
	"sync/atomic"

	"github.com/starling-sync/starling/internal/mailbox"
)

// Event is one change seen by a watcher: the winner of a field or
// attribute changed, by a local or a remote write.
type Event struct {
	Entity ID     `json:"entity,omitempty"`
	Path   string `json:"path,omitempty"`
	// Field is the field name, or an attribute: "$type", "$name",
	// "$parent" (New is the parent's ID) or "$exists" (false: deleted);
	// "$schema" for a schema change (Path is the type); "$reload" when the
	// watcher may have missed changes and should read again.
	Field string `json:"field"`
	Old   *Value `json:"old,omitempty"`
	New   *Value `json:"new,omitempty"`
	// Timestamp and Writer are the new winner's version (the removed
	// version's when a field lost its last version).
	Timestamp Timestamp `json:"timestamp"`
	Writer    string    `json:"writer,omitempty"`
	Local     bool      `json:"local"`
}

// Watcher receives the events under a path. Its buffer holds what it has
// not read yet, up to the size asked for, rather than allocating that
// size up front (the node monitor's 4,096 events took 0.4 MiB per node).
type Watcher struct {
	path     string
	remote   bool // remote events only (WatchRemote)
	box      *mailbox.Mailbox[Event]
	overflow atomic.Bool
	s        *Store
}

// C delivers events; it is closed by Close and when the store closes.
func (w *Watcher) C() <-chan Event { return w.box.C() }

// Overflowed reports, and clears, whether events were dropped because the
// watcher fell behind.
func (w *Watcher) Overflowed() bool { return w.overflow.Swap(false) }

// Close ends the watch; C is closed when it returns. Safe to call twice.
func (w *Watcher) Close() {
	w.s.wmu.Lock()
	delete(w.s.watchers, w)
	w.s.wmu.Unlock()
	w.box.Close()
}

// Watch follows changes to the entity at path and everything below it
// ("/" for all), local or remote, buffering buf events (default 256).
// Delivery never blocks the store: a watcher that falls behind loses
// events and sees Overflowed() true.
func (s *Store) Watch(path string, buf int) *Watcher { return s.watch(path, buf, false) }

// WatchRemote is Watch for the events of remote writes only. A store
// whose watchers all watch remote writes does not describe its own
// writes at all, which takes work off every local commit.
func (s *Store) WatchRemote(path string, buf int) *Watcher { return s.watch(path, buf, true) }

func (s *Store) watch(path string, buf int, remote bool) *Watcher {
	if buf <= 0 {
		buf = 256
	}
	p := "/" + NormalizeName(strings.Trim(path, "/")) // event paths carry the names Create stored, in NFC
	w := &Watcher{path: p, remote: remote, s: s}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.watchers == nil {
		w.box = mailbox.Closed[Event]()
		return w
	}
	w.box = mailbox.New[Event](buf)
	s.watchers[w] = struct{}{}
	return w
}

// Watchers is the number of open watchers; each holds a goroutine and
// its unread events until Close.
func (s *Store) Watchers() int {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return len(s.watchers)
}

func (w *Watcher) matches(path string) bool {
	return w.path == "/" || path == w.path || strings.HasPrefix(path, w.path+"/")
}

func (s *Store) notify(ev Event) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for w := range s.watchers {
		if ev.Field != "$reload" && (!w.matches(ev.Path) || ev.Local && w.remote) {
			continue
		}
		if !w.box.Offer(ev) {
			w.overflow.Store(true)
		}
	}
}

// watchingLocal reports whether a watcher wants the events of local
// writes.
func (s *Store) watchingLocal() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for w := range s.watchers {
		if !w.remote {
			return true
		}
	}
	return false
}

// event describes a change of winner. Called with s.mu held.
func (s *Store) event(ch change, local bool) Event {
	ev := Event{Local: local}
	if ch.reg.kind == 's' {
		ev.Field, ev.Path = "$schema", ch.reg.name
	} else {
		ev.Entity = ch.reg.entity
		ev.Path = s.st.pathAny(ch.reg.entity)
		ev.Field = ch.reg.name
		if ch.reg.kind == 'a' {
			ev.Field = map[string]string{attrType: "$type", attrName: "$name", attrParent: "$parent", attrExists: "$exists"}[ch.reg.name]
		}
	}
	decode := func(v version) *Value {
		var val Value
		switch {
		case ch.reg.kind == 'a' && ch.reg.name == attrParent:
			p, err := decodeParent(v.value)
			if err != nil {
				return nil
			}
			val = RefValue(p.parent)
		case ch.reg.kind == 's':
			val = JSONValue(string(v.value))
		default:
			d, err := DecodeValue(v.value)
			if err != nil {
				return nil
			}
			val = d
		}
		return &val
	}
	if ch.hadOld {
		ev.Old = decode(ch.old)
	}
	if ch.hasNew {
		ev.New = decode(ch.new)
		ev.Timestamp, ev.Writer = ch.new.Timestamp, ch.new.Writer
	} else {
		ev.Timestamp, ev.Writer = ch.old.Timestamp, ch.old.Writer
	}
	return ev
}
