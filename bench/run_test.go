package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestRunLeavesNothing runs two small workloads on both systems and
// checks that every run produced figures, and that Run stops every
// goroutine it started and removes its data.
func TestRunLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 real nodes and 4 mocknet nodes per system")
	}
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Only: []string{WorkloadVisible, WorkloadMocknet}, Quick: true, Nodes: 4,
		Budget: 20 * time.Second, Dir: dir, Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(progress.String())
	if len(rep.Rows) != 4 {
		t.Fatalf("%d rows, want 4", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		for _, res := range []Result{r.Starling, r.Raw} {
			if res.Err != "" || res.Skipped != "" {
				t.Errorf("%s: %+v", r.Workload, res)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("data left in %s: %v", dir, entries)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before Run, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestIdleRows runs the idle workload at its quick sizes: every size
// gives CPU figures and RSS per node, and an agreement time and term or,
// if the nodes did not agree within the budget (today's election flaps
// on a loaded machine), a timeout that says what each node saw; the
// smallest size agrees. The raw column says why it has no figures.
func TestIdleRows(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 4 and then 8 whole nodes on a mocknet")
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Only: []string{WorkloadIdle}, Quick: true, Budget: 30 * time.Second, Dir: t.TempDir(), Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(progress.String())
	sizes := sizesFor(true).idle
	if len(rep.Rows) != idleRowsPerSize*len(sizes) {
		t.Fatalf("%d rows, want %d", len(rep.Rows), idleRowsPerSize*len(sizes))
	}
	for i, r := range rep.Rows {
		if want := fmt.Sprintf("idle %d nodes", sizes[i/idleRowsPerSize]); !strings.HasPrefix(r.Workload, want) {
			t.Errorf("row %d is %q, want %s...", i, r.Workload, want)
		}
		if r.Raw.Skipped == "" {
			t.Errorf("%s: raw %+v, want skipped", r.Workload, r.Raw)
		}
		st := r.Starling
		agreed := rep.Rows[i-i%idleRowsPerSize].Starling.ok()
		switch {
		case st.ok() && st.Value > 0:
		case i%idleRowsPerSize == 0 && st.TimedOut && strings.Contains(st.Note, "@") && i > 0:
			// Not agreed: the note lists the views.
		case i%idleRowsPerSize == 1 && !agreed && st.Skipped != "":
		default:
			t.Errorf("%s: starling %+v", r.Workload, st)
		}
	}
	var out bytes.Buffer
	if err := rep.Format(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "%") {
		t.Errorf("no percentage in the table:\n%s", out.String())
	}
}

// TestLoopbackRows runs the mocknet workload's write rows on real hosts
// on loopback: both systems start, connect along the topology and show
// every write on every node; the rows say which network they ran on.
func TestLoopbackRows(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 4 whole nodes and 4 raw replicas on loopback")
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Only: []string{WorkloadMocknet}, Quick: true, Nodes: 4, Net: NetLoopback, Budget: 60 * time.Second, Dir: t.TempDir(), Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(progress.String())
	if len(rep.Rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		if !strings.Contains(r.Workload, "(loopback)") {
			t.Errorf("row %q does not say it ran on loopback", r.Workload)
		}
		if !r.Starling.ok() || !r.Raw.ok() {
			t.Errorf("%s: starling %+v, raw %+v", r.Workload, r.Starling, r.Raw)
		}
	}
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "127.0.0.1") {
		t.Errorf("notes do not describe the loopback network: %q", rep.Notes)
	}
}
