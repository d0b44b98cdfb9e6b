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
