package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/starling-sync/starling/bench"
)

// TestBenchQuickWrites runs `starling bench --quick --only writes` end to
// end: real Starling nodes and raw go-ds-crdt replicas, the table on
// stdout, progress on stderr. A short budget bounds it (the raw side with
// concurrent writers needs far longer than that); no figure is asserted.
func TestBenchQuickWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes and writes for several seconds")
	}
	t.Setenv("TMPDIR", t.TempDir())
	start := time.Now()
	r := runApp(t, "", "bench", "--quick", "--only", "writes", "--budget", "3s")
	t.Logf("took %v\nstdout:\n%s\nstderr:\n%s", time.Since(start), r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("exit code %d", r.code)
	}
	for _, want := range []string{
		"cores, GOMAXPROCS", "quick sizes", "budget 3s per run",
		"| starling ", "| raw go-ds-crdt ", "| ratio",
		"field writes/s, 1 writer ", "write latency p50, 1 writer", "write latency p99, 1 writer",
		"field writes/s, 64 writers", "write latency p99, 64 writers",
		"field writes/s, 256 writers", "write latency p99, 256 writers", ">= 50,000/s",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if strings.Contains(r.stdout, "error") {
		t.Errorf("a run failed:\n%s", r.stdout)
	}
	for _, want := range []string{"writes", "starling:", "raw:"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress on stderr lacks %q", want)
		}
	}
	for _, w := range []string{"visible", "heal", "join", "mocknet"} {
		if strings.Contains(r.stdout, w) {
			t.Errorf("--only writes ran %s too", w)
		}
	}
}

// TestBenchJSON checks that --json prints the report as JSON, with every
// flag given through its environment variable.
func TestBenchJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes")
	}
	t.Setenv("STARLING_BENCH_WORK_DIR", t.TempDir())
	t.Setenv("STARLING_BENCH_ONLY", "writes")
	t.Setenv("STARLING_BENCH_QUICK", "true")
	t.Setenv("STARLING_BENCH_BUDGET", "1s")
	t.Setenv("STARLING_BENCH_NODES", "5")
	t.Setenv("STARLING_JSON", "true")
	r := runApp(t, "", "bench")
	if r.code != 0 {
		t.Fatalf("exit code %d\n%s", r.code, r.stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, r.stdout)
	}
	if !rep.Header.Quick || rep.Header.Budget != time.Second || rep.Header.Cores < 1 || rep.Header.GoVersion == "" || rep.Header.FsyncP50 <= 0 {
		t.Errorf("header %+v", rep.Header)
	}
	if len(rep.Rows) != 8 {
		t.Fatalf("%d rows, want the 8 of the writes workload", len(rep.Rows))
	}
	for _, row := range rep.Rows {
		if row.Group != bench.WorkloadWrites {
			t.Errorf("row %q of workload %q", row.Workload, row.Group)
		}
		if row.Starling.Err != "" || row.Raw.Err != "" {
			t.Errorf("row %q: errors %q / %q", row.Workload, row.Starling.Err, row.Raw.Err)
		}
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		mention string
	}{
		{[]string{"bench", "--only", "writes,bogus"}, `unknown workload "bogus"`},
		{[]string{"bench", "--budget", "0s"}, "--budget"},
		{[]string{"bench", "--nodes", "1000"}, "--nodes"},
		{[]string{"bench", "--net", "tcp"}, `--net: unknown network "tcp"`},
		{[]string{"bench", "extra"}, "no arguments"},
	} {
		r := runApp(t, "", tt.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.mention) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tt.args, r.code, r.stderr, exitUsage, tt.mention)
		}
	}
}

func TestBenchHelp(t *testing.T) {
	r := runApp(t, "", "bench", "--help")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, w := range append(bench.Workloads, "--only", "--quick", "--budget", "--nodes", "--net", "loopback", "--json", "STARLING_BENCH_BUDGET", "timed out", "ratio") {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("help lacks %q", w)
		}
	}
}
