package monitor

import "testing"

// TestAppendRing: the ring keeps the last limit items in order and never
// holds more than limit slots (the history keeps 300 samples per peer).
func TestAppendRing(t *testing.T) {
	for _, limit := range []int{1, 7, 300} {
		var s []int
		for i := range 1000 {
			s = appendRing(s, i, limit)
			if cap(s) > limit {
				t.Fatalf("limit %d: cap %d after %d appends", limit, cap(s), i+1)
			}
			if want := min(i+1, limit); len(s) != want {
				t.Fatalf("limit %d: len %d after %d appends, want %d", limit, len(s), i+1, want)
			}
		}
		for j, v := range s {
			if want := 1000 - limit + j; v != want {
				t.Fatalf("limit %d: s[%d] = %d, want %d", limit, j, v, want)
			}
		}
	}
}
