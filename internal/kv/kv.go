// Package kv holds the vocabulary that package crdt (the replicated
// key-value store) and package entity (the tree stored in it) share
// without importing each other: a write (Op), an entry of the change feed
// (Change) and a subscription to that feed (Feed). Both packages alias
// these types, so *crdt.Store is an entity.Backend as it is, and changes
// reach the entity tree on the channel the store's feed fills, with no
// goroutine copying them from one type to another.
package kv

import ds "github.com/ipfs/go-datastore"

// Op is one write: a Put of Value under Key, or a Delete when Delete is
// true.
type Op struct {
	Key    ds.Key
	Value  []byte
	Delete bool
}

// Change is one entry of a change feed: Key now has Value, or was
// deleted. Local is true for writes made through this node's store.
type Change struct {
	Key     ds.Key
	Value   []byte
	Deleted bool
	Local   bool
}

// Feed is a subscription to a store's changes.
type Feed interface {
	// C delivers changes in the order the store applied them. It is
	// closed by Close and when the store closes.
	C() <-chan Change
	// Overflowed reports, and clears, whether changes were dropped
	// because the subscriber fell behind; the subscriber should then read
	// the store again.
	Overflowed() bool
	// Close ends the subscription. Safe to call twice.
	Close()
}
