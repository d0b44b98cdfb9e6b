package bench

import (
	"bytes"
	"context"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHistoryPlan(t *testing.T) {
	tests := []struct {
		name        string
		disk        []int
		check       int
		limit       int
		want        []histStop
		wantWritten string
	}{
		{"full", []int{300_000, 1_000_000}, 300_000, 0,
			[]histStop{{300_000, true, 1}, {600_000, false, 2}, {1_000_000, true, 0}}, "300k, 600k and 1M"},
		{"quick", []int{30_000, 100_000}, 30_000, 0,
			[]histStop{{30_000, true, 1}, {60_000, false, 2}, {100_000, true, 0}}, "30k, 60k and 100k"},
		{"10M, raw stops at 1M", []int{300_000, 1_000_000, 10_000_000}, 300_000, 1_000_000,
			[]histStop{{300_000, true, 1}, {600_000, false, 2}, {1_000_000, true, 0}}, "300k, 600k and 1M"},
		{"unsorted, check coincides with a disk row", []int{600_000, 100_000}, 300_000, 0,
			[]histStop{{100_000, true, 0}, {300_000, false, 1}, {600_000, true, 2}}, "100k, 300k and 600k"},
		{"no check", []int{5}, 0, 0, []histStop{{5, true, 0}}, "5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := historyPlan(tt.disk, tt.check, tt.limit)
			if !slices.Equal(got, tt.want) {
				t.Errorf("historyPlan = %+v, want %+v", got, tt.want)
			}
			if s := stopList(got); s != tt.wantWritten {
				t.Errorf("stopList = %q, want %q", s, tt.wantWritten)
			}
		})
	}
}

func TestCheckLimit(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		first, want float64
	}{
		{0, 2 * mib},
		{4 * mib, 7 * mib},       // 1.25 x 4 + 2
		{11.2 * mib, 16 * mib},   // 1.25 x 11.2 + 2 = 16
		{12 * mib, 16 * mib},     // capped
		{22.2 * mib, 16 * mib},   // the figure before compaction
		{0.5 * mib, 2.625 * mib}, // small stores: the slack dominates
		{8.8 * mib, 8.8*1.25*mib + 2*mib},
	}
	for _, tt := range tests {
		if got := checkLimit(tt.first); got != tt.want {
			t.Errorf("checkLimit(%s) = %s, want %s", fmtBytes(tt.first), fmtBytes(got), fmtBytes(tt.want))
		}
	}
}

func TestCheckVerdict(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		first, second float64
		want          []string
	}{
		{4 * mib, 6 * mib, []string{"first 4.0 MiB, second 6.0 MiB", "(7.0 MiB): yes", "<= 16 MiB: yes"}},
		{4 * mib, 8 * mib, []string{"(7.0 MiB): NO", "<= 16 MiB: yes"}},
		{14 * mib, 17 * mib, []string{"(19.5 MiB): yes", "<= 16 MiB: NO"}},
		{22.2 * mib, 37.9 * mib, []string{"first 22.2 MiB, second 37.9 MiB", "NO", "<= 16 MiB: NO"}},
	}
	for _, tt := range tests {
		got := checkVerdict(tt.first, tt.second)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("checkVerdict(%s, %s) = %q, lacks %q", fmtBytes(tt.first), fmtBytes(tt.second), got, w)
			}
		}
	}
}

func TestHistField(t *testing.T) {
	// A call of 10 writes 10 different fields; write i+1000 overwrites
	// write i.
	for call := range 300 {
		seen := make(map[field]bool)
		for i := call * histCall; i < (call+1)*histCall; i++ {
			f := histField(i)
			if f.ent != 0 || f.f < 0 || f.f >= histFields || seen[f] {
				t.Fatalf("call %d: write %d: field %v", call, i, f)
			}
			seen[f] = true
			if histField(i+histFields) != f {
				t.Fatalf("write %d does not overwrite write %d", i+histFields, i)
			}
		}
	}
}

// TestHistoryWorkload runs the history workload at tiny sizes on both
// systems: every Starling row has a figure, every raw row a figure or
// "n/a", the targets are set from Starling's figures, and nothing is
// left running.
func TestHistoryWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real nodes")
	}
	before := runtime.NumGoroutine()
	var progress bytes.Buffer
	cfg := Config{Only: []string{WorkloadHistory}, Budget: 30 * time.Second, Dir: t.TempDir(), Progress: &progress}.withDefaults()
	r := &runner{cfg: cfg, root: cfg.Dir, start: time.Now(), workload: WorkloadHistory,
		sz: sizes{histDisk: []int{400, 1000}, histCheck: 300, histLoad: 500}}
	r.systems = []system{
		{name: "starling", writers: 16, open: openStarling(cfg.Logger)},
		{name: "raw", writers: 1, batchSetup: true, open: openRaw},
	}
	rows, notes := r.history(context.Background())
	t.Log(progress.String())
	rep := &Report{Rows: rows, Notes: notes}
	var out bytes.Buffer
	if err := rep.Format(&out); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(rows) != 2*3+2+4+4 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, row := range rows {
		if !row.Starling.ok() {
			t.Errorf("%s: starling: %+v", row.Workload, row.Starling)
		}
		if !row.Raw.ok() && !strings.HasPrefix(row.Raw.Skipped, "n/a") {
			t.Errorf("%s: raw: %+v", row.Workload, row.Raw)
		}
		if strings.HasPrefix(row.Workload, "disk after") && row.Target == nil {
			t.Errorf("%s: no target", row.Workload)
		}
	}
	if !strings.Contains(out.String(), "second <= 1.25 x first + 2 MiB") {
		t.Errorf("no verdict of the check in the notes")
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
