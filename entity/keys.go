package entity

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	ds "github.com/ipfs/go-datastore"
)

// ID identifies an entity: 26 characters of Crockford base32 (a ULID:
// 48 bits of milliseconds, then 80 random bits), so IDs made on different
// nodes without coordination do not collide, and sort roughly by creation
// time.
type ID string

// Root is the ID of the root entity, the parent of top-level entities. It
// always exists and has no type, name or fields.
const Root ID = "00000000000000000000000000"

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ErrBadID means a string is not an entity ID.
var ErrBadID = errors.New("entity: bad entity ID")

// Validate checks the form of an ID.
func (id ID) Validate() error {
	if len(id) != 26 {
		return fmt.Errorf("%w %q: want 26 characters", ErrBadID, string(id))
	}
	for _, c := range id {
		if !strings.ContainsRune(crockford, c) {
			return fmt.Errorf("%w %q: %q is not a Crockford base32 digit", ErrBadID, string(id), c)
		}
	}
	if id[0] > '7' { // 130 bits would overflow 128
		return fmt.Errorf("%w %q: first digit above 7", ErrBadID, string(id))
	}
	return nil
}

// newID makes an ID from a millisecond time and randomness from r.
func newID(ms int64, r io.Reader) (ID, error) {
	var b [16]byte
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b[6:]); err != nil {
		return "", fmt.Errorf("entity: new ID: %w", err)
	}
	// 128 bits as 26 base32 digits, most significant first.
	var out [26]byte
	var acc uint64
	bits := 2 // leading pad so 130 bits fit 128
	bi := 0
	for i := 0; i < 26; i++ {
		for bits < 5 {
			acc = acc<<8 | uint64(b[bi])
			bi++
			bits += 8
		}
		bits -= 5
		out[i] = crockford[(acc>>uint(bits))&31]
	}
	return ID(out[:]), nil
}

// ErrBadName means an entity, field or type name is not allowed.
var ErrBadName = errors.New("entity: bad name")

// MaxNameBytes bounds entity names.
const MaxNameBytes = 255

// ValidateName checks an entity name: non-empty UTF-8 text of at most 255
// bytes, without '/', control characters, or the names "." and "..".
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: a name cannot be empty", ErrBadName)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w %.20q...: %d bytes, at most %d", ErrBadName, name, len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w %q: not valid UTF-8", ErrBadName, name)
	case strings.Contains(name, "/"):
		return fmt.Errorf("%w %q: '/' separates path elements and cannot be part of a name", ErrBadName, name)
	case name == "." || name == "..":
		return fmt.Errorf("%w %q: reserved", ErrBadName, name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w %q: control character %U", ErrBadName, name, r)
		}
	}
	return nil
}

// ValidateIdent checks a field or type name: a letter or '_', then up to
// 63 letters, digits, '_', '-' or '.'. what names it in the message.
func ValidateIdent(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s name cannot be empty", ErrBadName, what)
	}
	if len(s) > 64 {
		return fmt.Errorf("%w: %s name %.20q...: %d characters, at most 64", ErrBadName, what, s, len(s))
	}
	for i, c := range s {
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if i > 0 {
			ok = ok || (c >= '0' && c <= '9') || c == '-' || c == '.'
		}
		if !ok {
			return fmt.Errorf("%w: %s name %q: use letters, digits, '_', '-' and '.', starting with a letter or '_'", ErrBadName, what, s)
		}
	}
	return nil
}

// ValidateWriter checks a node ID used as a writer: 1 to 64 of
// [A-Za-z0-9._-], not "." or "..".
func ValidateWriter(s string) error {
	if s == "" || len(s) > 64 || s == "." || s == ".." {
		return fmt.Errorf("%w: node ID %q: 1 to 64 of letters, digits, '.', '_' and '-'", ErrBadName, s)
	}
	for _, c := range s {
		if !(c == '.' || c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return fmt.Errorf("%w: node ID %q: 1 to 64 of letters, digits, '.', '_' and '-'", ErrBadName, s)
		}
	}
	return nil
}

// Version names one write of a register: its timestamp and its writer.
// Versions order by timestamp, then writer: the total order of
// last-writer-wins.
type Version struct {
	Timestamp Timestamp `json:"timestamp"`
	Writer    string    `json:"writer"`
}

// Compare returns -1, 0 or +1.
func (v Version) Compare(o Version) int {
	if c := v.Timestamp.Compare(o.Timestamp); c != 0 {
		return c
	}
	return strings.Compare(v.Writer, o.Writer)
}

// String is the stored form: timestamp, '-', writer. It sorts like
// Compare for writers of equal length; Compare is authoritative.
func (v Version) String() string { return v.Timestamp.String() + "-" + v.Writer }

// ParseVersion reads String's form.
func ParseVersion(s string) (Version, error) {
	if len(s) < timestampLen+2 || s[timestampLen] != '-' {
		return Version{}, fmt.Errorf("%w: version %q", ErrBadTimestamp, s)
	}
	ts, err := ParseTimestamp(s[:timestampLen])
	if err != nil {
		return Version{}, err
	}
	w := s[timestampLen+1:]
	if err := ValidateWriter(w); err != nil {
		return Version{}, err
	}
	return Version{Timestamp: ts, Writer: w}, nil
}

// The key layout in the replicated store. Every write of a register (an
// entity attribute, a field, a schema) is a new key ending in its
// version; a write also deletes the versions it has seen. Concurrent
// versions from both sides of a partition survive the merge, and the
// greatest version wins on every node.
//
//	/e/<id>/a/<attr>/<version>   attribute: t (type), n (name), p (parent), x (exists)
//	/e/<id>/f/<field>/<version>  field
//	/s/<type>/<version>          schema of a type
const (
	entitiesPrefix = "/e"
	schemasPrefix  = "/s"
)

// Attributes of an entity, stored as registers.
const (
	attrType   = "t"
	attrName   = "n"
	attrParent = "p"
	attrExists = "x"
)

// regKey identifies a register: an attribute or field of an entity, or a
// schema.
type regKey struct {
	entity ID     // empty for schemas
	kind   byte   // 'a' attribute, 'f' field, 's' schema
	name   string // attribute letter, field name, or type name
}

func (r regKey) prefix() string {
	if r.kind == 's' {
		return schemasPrefix + "/" + r.name + "/"
	}
	return entitiesPrefix + "/" + string(r.entity) + "/" + string(r.kind) + "/" + r.name + "/"
}

func (r regKey) key(v Version) ds.Key { return ds.RawKey(r.prefix() + v.String()) }

// ErrBadKey means a stored key does not follow the layout.
var ErrBadKey = errors.New("entity: bad key")

// parseKey reads a stored key.
func parseKey(k string) (regKey, Version, error) {
	parts := strings.Split(k, "/")
	bad := func(why string) (regKey, Version, error) {
		return regKey{}, Version{}, fmt.Errorf("%w %q: %s", ErrBadKey, k, why)
	}
	if len(parts) < 2 || parts[0] != "" {
		return bad("not absolute")
	}
	var r regKey
	var vs string
	switch parts[1] {
	case "e":
		if len(parts) != 6 {
			return bad("want /e/<id>/<a|f>/<name>/<version>")
		}
		r.entity = ID(parts[2])
		if err := r.entity.Validate(); err != nil {
			return bad(err.Error())
		}
		switch parts[3] {
		case "a":
			switch parts[4] {
			case attrType, attrName, attrParent, attrExists:
			default:
				return bad("unknown attribute")
			}
		case "f":
			if err := ValidateIdent("field", parts[4]); err != nil {
				return bad(err.Error())
			}
		default:
			return bad("want a or f")
		}
		r.kind, r.name, vs = parts[3][0], parts[4], parts[5]
	case "s":
		if len(parts) != 4 {
			return bad("want /s/<type>/<version>")
		}
		if err := ValidateIdent("type", parts[2]); err != nil {
			return bad(err.Error())
		}
		r.kind, r.name, vs = 's', parts[2], parts[3]
	default:
		return bad("unknown prefix")
	}
	v, err := ParseVersion(vs)
	if err != nil {
		return bad(err.Error())
	}
	return r, v, nil
}

// parentValue is the stored value of a parent attribute: the new parent,
// and the parent the mover saw before (used to undo a move that would
// close a cycle; see the package doc).
type parentValue struct {
	parent, prev ID
}

func (p parentValue) encode() []byte {
	return []byte(string(p.parent) + "/" + string(p.prev))
}

func decodeParent(b []byte) (parentValue, error) {
	s := string(b)
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return parentValue{}, fmt.Errorf("%w: parent value %q", ErrBadValue, s)
	}
	p := parentValue{parent: ID(s[:i]), prev: ID(s[i+1:])}
	if err := p.parent.Validate(); err != nil {
		return parentValue{}, err
	}
	if p.prev != "" {
		if err := p.prev.Validate(); err != nil {
			return parentValue{}, err
		}
	}
	return p, nil
}
