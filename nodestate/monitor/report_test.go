package monitor

import (
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
		wantPeriod        time.Duration
		wantSend          bool
	}{
		{"changed", true, false, 6 * s, 6 * s, s, ReportInterval, true},
		{"first report", true, false, 0, 6 * s, 0, ReportInterval, true},
		{"going quiet", false, false, ReportInterval, 6 * s, s, 6 * s, true},
		{"quiet, period not up", false, false, 6 * s, 6 * s, 5 * s, 0, false},
		{"quiet, period up (half a tick early)", false, false, 6 * s, 6 * s, 5500 * time.Millisecond, 6 * s, true},
		{"cluster grew: the shorter announced period holds", false, false, 6 * s, 10 * s, 6 * s, 10 * s, true},
		{"cluster shrank: the shorter new period", false, false, 10 * s, 6 * s, 6 * s, 6 * s, true},
		{"new connection", false, true, 6 * s, 6 * s, s, 6 * s, true},
	} {
		p, send := reportDue(c.changed, c.force, c.last, c.idle, c.since)
		if p != c.wantPeriod || send != c.wantSend {
			t.Errorf("%s: reportDue = %v, %v; want %v, %v", c.name, p, send, c.wantPeriod, c.wantSend)
		}
	}
}
