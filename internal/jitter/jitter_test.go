package jitter

import (
	"fmt"
	"testing"
)

// Similar inputs (node1..node64, sequence 0..3) spread over [0, 1):
// every tenth of the range gets a share, and the same input gives the
// same fraction.
func TestFractionSpreads(t *testing.T) {
	var deciles [10]int
	for i := range 64 {
		for seq := range uint64(4) {
			f := Fraction(fmt.Sprintf("node%d", i), 42, seq)
			if f < 0 || f >= 1 {
				t.Fatalf("Fraction = %v, want within [0, 1)", f)
			}
			if again := Fraction(fmt.Sprintf("node%d", i), 42, seq); again != f {
				t.Fatalf("Fraction not repeatable: %v then %v", f, again)
			}
			deciles[int(f*10)]++
		}
	}
	for d, n := range deciles {
		if n < 10 { // 25.6 expected
			t.Errorf("256 fractions: %d in [%.1f, %.1f), want about 26 (all: %v)", n, float64(d)/10, float64(d+1)/10, deciles)
		}
	}
}
