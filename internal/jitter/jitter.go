// Package jitter gives periodic senders a spread that is the same in
// every replay: a fraction derived from what identifies the sender and
// the send, instead of a random source that tests would have to inject.
package jitter

import (
	"encoding/binary"
	"hash/fnv"
)

// Fraction is a number in [0, 1) derived from name and the numbers:
// different for different inputs, evenly spread however alike they are
// (node1, node2, ... and sequence numbers 1, 2, ...), and the same for
// the same inputs.
func Fraction(name string, nums ...uint64) float64 {
	h := fnv.New64a()
	var b [8]byte
	for _, n := range nums {
		binary.LittleEndian.PutUint64(b[:], n)
		h.Write(b[:])
	}
	h.Write([]byte(name))
	// FNV-1a alone leaves the high bits of short, similar inputs
	// clustered; the splitmix64 finalizer spreads them.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
