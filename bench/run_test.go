package bench

import (
	"bytes"
	"context"
	"os"
	"runtime"
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
