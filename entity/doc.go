// Package entity is Starling's data model: a tree of typed entities with
// fields, replicated to every node, writable on any node at any time, and
// identical everywhere once nodes can talk.
//
// # Model
//
// An entity has a stable ID (a ULID, made without coordination), a type,
// a name and a parent; the root (ID Root, path "/") has none. Paths like
// /Factory/Line1/Sensor7 resolve through names. Names are stored and
// compared in Unicode normal form C, so "é" typed either way is one name;
// Create and Rename refuse leading or trailing white space and control or
// bidirectional-formatting characters (ValidateName), while names stored
// before these rules still read. A field is a named value
// (bool, int, float, string, bytes, time between MinTime and MaxTime,
// json, or a ref to another entity) with the version of its write: a hybrid logical timestamp and
// the ID of the node that wrote it. A type may have a Schema; writes to
// entities of a type with a schema are checked against it.
//
// # Last-writer-wins on hybrid logical clocks
//
// Every register (a field, an entity's type, name, parent and existence,
// a schema) is a last-writer-wins register ordered by (timestamp, writer).
// Writes are stored in records, one per commit group (the writes of the
// Updates that waited together), each key written once; a register's value
// is its greatest version over all records, so concurrent versions from
// both sides of a partition survive the merge and the greatest wins on
// every node. go-ds-crdt's own rule (greatest DAG height) is never used. A
// record whose writes have all been beaten is garbage and is deleted (by
// the write that beat it, or by a GC pass after a heal); a deletion never
// changes a value. The
// clock is hybrid: a write is stamped after every version it replaces and
// after every timestamp received, so a write made after seeing another
// orders after it even when this node's clock is behind. Equal timestamps
// break by writer ID.
//
// # Concurrent structure edits
//
// The tree is derived from the registers' winners alone, so every node
// holding the same versions shows the same tree:
//
//   - Same path created twice (on both sides of a partition): both
//     entities survive. The path resolves to the one with the smallest ID
//     (in general the one created first); listings show both, and
//     Entity.Duplicates says how many share the path.
//   - A field written on an entity deleted concurrently: the entity stays
//     deleted (existence is its own register; a field write does not
//     revive it). The write is kept, hidden, and shows again if the entity
//     is restored (Tx.Restore).
//   - Concurrent moves that would form a cycle: in the cycle, the move
//     with the greatest version (the later move) loses: its entity goes
//     back to the parent its mover saw before, or to the root if that
//     still closes a cycle. No node ever shows a cycle.
//   - Deleting a parent with children: deletion hides the whole subtree
//     (the CLI asks for --recursive when there are children). An entity
//     created or moved under a parent that is deleted concurrently is
//     hidden with it, as if it had been there before the delete; restoring
//     the parent brings the subtree back.
//
// # Schemas
//
// Schemas evolve by adding fields; existing entities read a new field's
// default until it is written. Removing a field or changing its type is
// refused. A write is checked against the schema its node holds at the
// time; a value written before a schema reached the node keeps its type.
//
// # Writes
//
// Update checks its writes under the store's lock, stamps them with one
// version and hands them to the committer goroutine, which gathers the
// Updates waiting (see internal/groupcommit), packs their writes into a
// record, adds the deletion of the records they leave with no winner,
// and writes it all with one Backend.Commit: one delta, one fsync, one
// broadcast. Commit (crdt.Store's) writes at once, without gathering
// again, so an entity write passes one gathering stage. The backend's
// types (Op, Change, Feed) are aliases of internal/kv's, shared with
// package crdt, so *crdt.Store is the Backend with no adapter between.
//
// # Reads and watches
//
// A Store keeps a view of every register's winner, fed by the backend's change
// feed (local and remote writes alike) and by its own writes at once, so
// a node reads its own writes. Watch follows changes under a path, with
// old and new value, version and origin.
package entity
