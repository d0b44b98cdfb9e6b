package monitor

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestJudgeClocks: the median counts this node as 0 and takes, of an
// even count, the value nearer it; stale and removed peers are left out;
// the list of peers beyond the bound comes out the same from tick to
// tick (it was in map order, so the warning about them was logged at
// every tick).
func TestJudgeClocks(t *testing.T) {
	now := time.Unix(1000, 0)
	samples := map[string]clockSample{}
	for i := range 6 {
		samples[fmt.Sprintf("odd%d", i)] = clockSample{diff: time.Duration(i+1) * time.Hour, at: now}
	}
	samples["near"] = clockSample{diff: time.Second, at: now}
	samples["stale"] = clockSample{diff: -time.Hour, at: now.Add(-time.Minute)}
	samples["gone"] = clockSample{diff: -time.Hour, at: now}
	removed := map[string]bool{"gone": true}

	med, peers, first := judgeClocks(samples, removed, now, 5*time.Minute)
	if peers != 7 || med != 2*time.Hour || len(first) != 6 { // 0, 1s, 1h..6h: the middle 2h and 3h
		t.Fatalf("median %v over %d peers, %d beyond the bound: want 2h, 7, 6", med, peers, len(first))
	}
	for range 20 {
		if _, _, odd := judgeClocks(samples, removed, now, 5*time.Minute); !slices.Equal(odd, first) {
			t.Fatalf("peers beyond the bound changed order between ticks: %v then %v", first, odd)
		}
	}
	// One peer: the two middle values are 0 and its difference; the one
	// nearer this node's own clock is taken, so neither refuses writes.
	if med, _, _ := judgeClocks(map[string]clockSample{"p": {diff: time.Hour, at: now}}, nil, now, 5*time.Minute); med != 0 {
		t.Fatalf("median with one peer an hour off: %v, want 0", med)
	}
}

// A report of an idle peer counts for two of the periods it announced:
// its clock stays in the median between its reports.
func TestJudgeClocksIdlePeer(t *testing.T) {
	now := time.Now()
	old := now.Add(-8 * time.Second)
	samples := map[string]clockSample{
		"idle": {diff: time.Hour, at: old, fresh: 12 * time.Second},
		"busy": {diff: time.Hour, at: old},
	}
	if _, peers, _ := judgeClocks(samples, nil, now, 5*time.Minute); peers != 1 {
		t.Errorf("peers counted = %d, want 1 (the idle one, within 2 of its periods)", peers)
	}
}

// A report that arrives late (it waited in a saturated node's queues)
// makes its sender look behind by the delay; the largest difference
// within the freshness window counts, so late reports do not make this
// node look ahead of peers that share its clock. A clock set back shows
// once the larger difference's window has passed.
func TestClockLateReportsDoNotCount(t *testing.T) {
	now := time.Unix(1000, 0)
	var s clockSample
	s = s.noted(time.Second, now, clockFresh)
	s = s.noted(-6*time.Minute, now.Add(time.Second), clockFresh) // 6 minutes late
	if d, ok := s.current(now.Add(2 * time.Second)); !ok || d != time.Second {
		t.Fatalf("after a late report the peer counts as %v (ok %v), want 1s", d, ok)
	}
	samples := map[string]clockSample{}
	for i := range 5 {
		samples[fmt.Sprint(i)] = s
	}
	if med, _, _ := judgeClocks(samples, nil, now.Add(2*time.Second), 5*time.Minute); med != time.Second {
		t.Fatalf("median over peers whose last reports came 6 minutes late: %v, want 1s", med)
	}

	// The peer's clock is set back by an hour: its earlier, larger
	// difference counts until its window ends, then the new one.
	later := now.Add(clockFresh / 2)
	s = s.noted(-time.Hour, later, clockFresh)
	if d, _ := s.current(later); d != time.Second {
		t.Fatalf("right after the clock was set back: %v, want the larger 1s within the window", d)
	}
	if d, ok := s.current(now.Add(clockFresh + time.Millisecond)); !ok || d != -time.Hour {
		t.Fatalf("after the window of the larger difference: %v (ok %v), want -1h", d, ok)
	}
	s = s.noted(-time.Hour, now.Add(clockFresh+2*time.Millisecond), clockFresh)
	if s.diff != -time.Hour {
		t.Fatalf("a report after the window starts anew: largest %v, want -1h", s.diff)
	}
	if _, ok := s.current(now.Add(3 * clockFresh)); ok {
		t.Fatal("a peer silent for longer than its freshness window still counts")
	}
}
