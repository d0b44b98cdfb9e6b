package entity

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
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

// ValidateName checks a new entity name: non-empty UTF-8 text of at most
// 255 bytes, in Unicode normal form C (NormalizeName), without '/',
// control or bidirectional-formatting characters, leading or trailing
// white space, or the names "." and "..". Create and Rename check it;
// names already stored are read as they are.
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
			return fmt.Errorf("%w %q: control character %U; remove it", ErrBadName, name, r)
		}
		if isBidiControl(r) {
			return fmt.Errorf("%w %q: bidirectional formatting character %U, which can make a name display as another; remove it", ErrBadName, name, r)
		}
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Errorf("%w %q: leading or trailing white space, which paths cannot show; trim it (spaces inside a name are fine)", ErrBadName, name)
	}
	if !norm.NFC.IsNormalString(name) {
		return fmt.Errorf("%w %q: not in Unicode normal form C; pass it through NormalizeName", ErrBadName, name)
	}
	return nil
}

// isBidiControl reports the characters that change the display order
// of text (Unicode Bidi_Control).
func isBidiControl(r rune) bool {
	return r == 0x061C || r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

// NormalizeName returns name in Unicode normal form C, the form Create
// and Rename store and path lookups compare: "é" typed as one code point
// or as "e" and a combining accent names the same entity.
func NormalizeName(name string) string {
	if !utf8.ValidString(name) {
		return name // ValidateName refuses it
	}
	return norm.NFC.String(name)
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

// The layout in the replicated store. Every write of a register (an
// entity attribute, a field, a schema) carries its version; the writes of
// one commit group of one node travel together as one record:
//
//	/r/<version>   a record; <version> is that of its first write
//
// A register's value is its greatest version over all records. Concurrent
// versions from both sides of a partition survive the merge, and the
// greatest wins on every node. A record none of whose writes is still its
// register's winner is garbage: the node whose write beat it deletes it in
// the same commit, and any node deletes garbage it finds later (after a
// heal). A deletion never changes a value: only a greater version does.
//
// One record per commit group, not one key per write: go-ds-crdt pays
// several LevelDB queries per key it adds or removes, so a group of 500
// field writes costs one key instead of a thousand operations.
const recordsPrefix = "/r"

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

// String names the register in logs and tests.
func (r regKey) String() string {
	if r.kind == 's' {
		return "schema/" + r.name
	}
	return string(r.entity) + "/" + string(r.kind) + "/" + r.name
}

// ErrBadKey means a stored key does not follow the layout.
var ErrBadKey = errors.New("entity: bad key")

// ErrBadRecord means a stored record cannot be decoded.
var ErrBadRecord = errors.New("entity: bad record")

func recordKey(v Version) string { return recordsPrefix + "/" + v.String() }

// parseRecordKey reads a record's key.
func parseRecordKey(k string) (Version, error) {
	rest, ok := strings.CutPrefix(k, recordsPrefix+"/")
	if !ok {
		return Version{}, fmt.Errorf("%w %q: want %s/<version>", ErrBadKey, k, recordsPrefix)
	}
	v, err := ParseVersion(rest)
	if err != nil {
		return Version{}, fmt.Errorf("%w %q: %v", ErrBadKey, k, err)
	}
	return v, nil
}

// write is one write of a register in a record. The writer is the
// record's.
type write struct {
	reg   regKey
	ts    Timestamp
	value []byte
}

// recordFormat starts every encoded record.
const recordFormat = "R1"

// encodeRecord encodes ws:
//
//	"R1" uvarint(count) { kind [26-byte entity ID unless kind 's']
//	  uvarint(len) name  wall(8, big endian) logical(4)  uvarint(len) value }
func encodeRecord(ws []write) []byte {
	n := len(recordFormat) + binary.MaxVarintLen64
	for _, w := range ws {
		n += 1 + len(w.reg.entity) + 2*binary.MaxVarintLen64 + len(w.reg.name) + 12 + len(w.value)
	}
	b := make([]byte, 0, n)
	b = append(b, recordFormat...)
	b = binary.AppendUvarint(b, uint64(len(ws)))
	for _, w := range ws {
		b = append(b, w.reg.kind)
		if w.reg.kind != 's' {
			b = append(b, w.reg.entity...)
		}
		b = binary.AppendUvarint(b, uint64(len(w.reg.name)))
		b = append(b, w.reg.name...)
		b = binary.BigEndian.AppendUint64(b, uint64(w.ts.Wall))
		b = binary.BigEndian.AppendUint32(b, w.ts.Logical)
		b = binary.AppendUvarint(b, uint64(len(w.value)))
		b = append(b, w.value...)
	}
	return b
}

// decodeRecord reads encodeRecord's form, checking every name. Values
// are decoded where they are used.
func decodeRecord(b []byte) ([]write, error) {
	bad := func(format string, args ...any) ([]write, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadRecord, fmt.Sprintf(format, args...))
	}
	if len(b) < len(recordFormat) || string(b[:len(recordFormat)]) != recordFormat {
		return bad("unknown format")
	}
	b = b[len(recordFormat):]
	uvarint := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 || n != len(binary.AppendUvarint(nil, v)) { // refuse padded encodings
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	count, ok := uvarint()
	if !ok || count == 0 || count > uint64(len(b)) {
		return bad("bad count")
	}
	ws := make([]write, 0, count)
	for i := uint64(0); i < count; i++ {
		var w write
		if len(b) < 1 {
			return bad("write %d: truncated", i)
		}
		w.reg.kind, b = b[0], b[1:]
		switch w.reg.kind {
		case 'a', 'f':
			if len(b) < len(Root) {
				return bad("write %d: truncated entity ID", i)
			}
			w.reg.entity, b = ID(b[:len(Root)]), b[len(Root):]
			if err := w.reg.entity.Validate(); err != nil {
				return bad("write %d: %v", i, err)
			}
		case 's':
		default:
			return bad("write %d: unknown kind %q", i, w.reg.kind)
		}
		l, ok := uvarint()
		if !ok || l > uint64(len(b)) {
			return bad("write %d: bad name length", i)
		}
		w.reg.name, b = string(b[:l]), b[l:]
		var err error
		switch w.reg.kind {
		case 'a':
			switch w.reg.name {
			case attrType, attrName, attrParent, attrExists:
			default:
				err = fmt.Errorf("unknown attribute %q", w.reg.name)
			}
		case 'f':
			err = ValidateIdent("field", w.reg.name)
		case 's':
			err = ValidateIdent("type", w.reg.name)
		}
		if err != nil {
			return bad("write %d: %v", i, err)
		}
		if len(b) < 12 {
			return bad("write %d: truncated timestamp", i)
		}
		w.ts = Timestamp{Wall: int64(binary.BigEndian.Uint64(b)), Logical: binary.BigEndian.Uint32(b[8:])}
		b = b[12:]
		if w.ts.Wall < 0 {
			return bad("write %d: negative timestamp", i)
		}
		l, ok = uvarint()
		if !ok || l > uint64(len(b)) {
			return bad("write %d: bad value length", i)
		}
		w.value, b = b[:l:l], b[l:]
		ws = append(ws, w)
	}
	if len(b) != 0 {
		return bad("%d bytes after the last write", len(b))
	}
	return ws, nil
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
