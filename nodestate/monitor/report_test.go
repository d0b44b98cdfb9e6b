package monitor

import (
	"fmt"
	"testing"
	"time"
)

func TestIdleReportPeriod(t *testing.T) {
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{1, 5 * time.Second}, {3, 5 * time.Second}, {24, 6 * time.Second}, {200, 50 * time.Second}} {
		if got := idleReportPeriod(c.n); got != c.want {
			t.Errorf("idleReportPeriod(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

// A node reports every interval while its report changes, announces the
// idle period once it stops changing, and then stays quiet until the
// period it announced is up; the announcement always holds.
func TestReportDue(t *testing.T) {
	s := time.Second
	for _, c := range []struct {
		name              string
		changed, force    bool
		last, idle, since time.Duration
		early             float64
		wantPeriod        time.Duration
		wantSend          bool
	}{
		{"changed", true, false, 6 * s, 6 * s, s, 0, ReportInterval, true},
		{"first report", true, false, 0, 6 * s, 0, 0, ReportInterval, true},
		{"going quiet", false, false, ReportInterval, 6 * s, s, 0, 6 * s, true},
		{"quiet, period not up", false, false, 6 * s, 6 * s, 5 * s, 0, 0, false},
		{"quiet, period up (half a tick early)", false, false, 6 * s, 6 * s, 5500 * time.Millisecond, 0, 6 * s, true},
		{"cluster grew: the shorter announced period holds", false, false, 6 * s, 10 * s, 6 * s, 0, 10 * s, true},
		{"cluster shrank: the shorter new period", false, false, 10 * s, 6 * s, 6 * s, 0, 6 * s, true},
		{"new connection", false, true, 6 * s, 6 * s, s, 0, 6 * s, true},
		{"quiet, a quarter early: not yet", false, false, 8 * s, 8 * s, 5 * s, 0.25, 0, false},
		{"quiet, a quarter early: due", false, false, 8 * s, 8 * s, 5500 * time.Millisecond, 0.25, 8 * s, true},
	} {
		p, send := reportDue(c.changed, c.force, c.last, c.idle, c.since, c.early)
		if p != c.wantPeriod || send != c.wantSend {
			t.Errorf("%s: reportDue = %v, %v; want %v, %v", c.name, p, send, c.wantPeriod, c.wantSend)
		}
	}
}

// Idle reports of nodes started together spread over the last quarter
// of the period instead of going out in the same second.
func TestEarlyFraction(t *testing.T) {
	seen := map[float64]bool{}
	lo, hi := 1.0, 0.0
	for i := range 64 {
		for seq := range uint64(4) {
			f := earlyFraction(fmt.Sprintf("node%d", i), seq)
			if f < 0 || f >= 0.25 {
				t.Fatalf("earlyFraction(node%d, %d) = %v, want within [0, 1/4)", i, seq, f)
			}
			seen[f] = true
			lo, hi = min(lo, f), max(hi, f)
		}
	}
	if len(seen) < 200 || hi-lo < 0.2 {
		t.Errorf("256 reports of 64 nodes: %d distinct fractions within %v..%v, want them spread over [0, 1/4)", len(seen), lo, hi)
	}
}
