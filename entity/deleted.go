package entity

import (
	"slices"
	"strings"
)

// Deleted is a deleted entity that Restore can bring back.
type Deleted struct {
	ID   ID     `json:"id"`
	Type string `json:"type"`
	// Path is where the entity was: its parent's path (where that parent
	// is now, or was, if it is deleted too) and its name.
	Path string `json:"path"`
	// Version is the delete's: when and by which node.
	Version
	// WithParent is true when an ancestor is deleted too: restoring
	// the ancestor brings this one back with it.
	WithParent bool `json:"with_parent,omitempty"`
}

// Deleted lists the deleted entities under path ("/" or "" for all,
// matched against where they were), newest delete first, at most limit
// (0: all).
func (s *Store) Deleted(path string, limit int) []Deleted {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := "/" + strings.Trim(NormalizeName(strings.Trim(path, "/")), "/")
	var out []Deleted
	for id := range s.st.ents {
		if id == Root || s.st.exists(id) {
			continue
		}
		x, ok := s.st.attr(id, attrExists)
		if !ok {
			continue // never created here
		}
		if v, err := DecodeValue(x.value); err != nil || v.Kind != KindBool || v.Bool {
			continue
		}
		d := Deleted{ID: id, Type: s.st.typ(id), Version: x.Version}
		d.Path, d.WithParent = s.lastPath(id)
		if prefix != "/" && d.Path != prefix && !strings.HasPrefix(d.Path, prefix+"/") {
			continue
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Deleted) int {
		if c := b.Version.Compare(a.Version); c != 0 {
			return c
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// lastPath is where a deleted entity was, and whether an ancestor is
// deleted too. Called with s.mu held.
func (s *Store) lastPath(id ID) (string, bool) {
	var parts []string
	withParent := false
	cur := id
	for range 10_000 {
		if cur == Root {
			break
		}
		if cur != id && s.st.visible(cur) {
			p := s.st.path(cur)
			if p == "/" {
				p = ""
			}
			slices.Reverse(parts)
			return p + "/" + strings.Join(parts, "/"), withParent
		}
		if cur != id && !s.st.exists(cur) {
			withParent = true
		}
		parts = append(parts, s.st.name(cur))
		pv, _ := s.st.rawParent(cur)
		cur = pv.parent
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/"), withParent
}
