package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/starling-sync/starling/node"
)

// Run runs the selected workloads on Starling and on raw go-ds-crdt and
// returns the report. A failed run is a row with an error, not an error
// of Run; Run fails only on a bad Config, when it cannot make its
// directory, or when ctx ends (the report then holds what was done).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nodesGiven := cfg.Nodes
	cfg = cfg.withDefaults()
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: make the work directory: %w", err)
		}
	}
	root, err := os.MkdirTemp(cfg.Dir, "starling-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: make the data directory: %w", err)
	}
	defer os.RemoveAll(root)
	r := &runner{cfg: cfg, sz: sizesFor(cfg.Quick), root: root, start: time.Now()}
	if nodesGiven > 0 {
		// --nodes picks the one size of the idle workload too.
		r.sz.idle = []int{nodesGiven}
	}
	preset, err := node.WithElectionPreset(cfg.ElectionPreset)
	if err != nil {
		return nil, fmt.Errorf("bench: --election-preset: %w", err)
	}
	starlingSim, rawSim := openStarlingMock(cfg.Logger, preset), openRawMock
	if cfg.Net == NetLoopback {
		starlingSim, rawSim = openStarlingLoopback(cfg.Logger, r.progress, preset), openRawLoopback(r.progress)
	}
	r.systems = []system{
		{name: "starling", writers: 16, open: openStarling(cfg.Logger, preset), openSim: starlingSim},
		{name: "raw", writers: 1, batchSetup: true, open: openRaw, openSim: rawSim},
	}
	rep := &Report{Header: Header{
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		Quick:      cfg.Quick,
		Budget:     cfg.Budget,
		Preset:     cfg.ElectionPreset,
		Started:    r.start.UTC(),
		Raw:        RawSetup,
	}}
	if p50, p99, err := fsyncLatency(root); err == nil {
		rep.Header.FsyncP50, rep.Header.FsyncP99 = p50, p99
	} else {
		r.progress("fsync latency not measured: %v", err)
	}
	run := map[string]func(context.Context) ([]Row, []string){
		WorkloadWrites:     r.writes,
		WorkloadVisible:    r.visible,
		WorkloadHeal:       r.heal,
		WorkloadJoin:       r.join,
		WorkloadDisk:       r.disk,
		WorkloadHistory:    r.history,
		WorkloadMocknet:    r.mocknet,
		WorkloadMocknetBig: r.mocknetBig,
		WorkloadIdle:       r.idle,
	}
	for _, w := range Workloads {
		if !slices.Contains(cfg.Only, w) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		r.workload = w
		r.progress("start: %s", WorkloadHelp[w])
		rows, notes := run[w](ctx)
		rep.Rows = append(rep.Rows, rows...)
		rep.Notes = append(rep.Notes, notes...)
	}
	rep.Header.Took = time.Since(r.start)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("bench: interrupted: %w", err)
	}
	return rep, nil
}

// runner holds one Run's state.
type runner struct {
	cfg      Config
	sz       sizes
	root     string
	start    time.Time
	systems  []system
	workload string
	dirSeq   int
	mu       sync.Mutex
}

// progress writes one line to Config.Progress.
func (r *runner) progress(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.cfg.Progress, "bench %6.1fs  %-8s %s\n", time.Since(r.start).Seconds(), r.workload, fmt.Sprintf(format, args...))
}

// dir makes a fresh directory for one cluster.
func (r *runner) dir(sys string) (string, error) {
	r.mu.Lock()
	r.dirSeq++
	d := filepath.Join(r.root, fmt.Sprintf("%02d-%s-%s", r.dirSeq, r.workload, sys))
	r.mu.Unlock()
	return d, os.MkdirAll(d, 0o700)
}

// measured returns a context that ends at the budget, for the measured
// part of a run.
func (r *runner) measured(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.Budget)
}

// setup returns a context for setting a run up (writing the data a join
// or heal starts from): generous, but bounded, so that a stuck setup
// cannot hang the bench.
func (r *runner) setup(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(10*r.cfg.Budget, 15*time.Minute))
}

// timedOut is the result of a run cut off at the budget with done of the
// work done.
func (r *runner) timedOut(done float64) Result {
	return Result{TimedOut: true, Done: max(0, min(done, 1)), Budget: r.cfg.Budget}
}

// spec describes one row.
type spec struct {
	label  string
	kind   Kind
	target *Target
	note   string
}

func below(v float64) *Target   { return &Target{Below: true, Value: v} }
func atLeast(v float64) *Target { return &Target{Value: v} }

// pair runs fn on every system and makes the rows of specs from their
// results (fn returns one Result per spec). An error fills every row of
// that system with it.
func (r *runner) pair(ctx context.Context, specs []spec, fn func(ctx context.Context, sys system) ([]Result, error)) []Row {
	rows := make([]Row, len(specs))
	for i, s := range specs {
		rows[i] = Row{Workload: s.label, Group: r.workload, Kind: s.kind, Target: s.target, Note: s.note}
	}
	for _, sys := range r.systems {
		t0 := time.Now()
		var res []Result
		var err error
		if ctx.Err() == nil {
			res, err = fn(ctx, sys)
		}
		if err == nil && len(res) != len(specs) && ctx.Err() == nil {
			err = fmt.Errorf("bench: %d results for %d rows", len(res), len(specs))
		}
		switch {
		case ctx.Err() != nil:
			// Interrupted: what this run measured is incomplete.
			res = make([]Result, len(specs))
			for i := range res {
				res[i] = Result{Skipped: "interrupted"}
			}
		case err != nil:
			r.progress("%s: error: %v", sys.name, err)
			res = make([]Result, len(specs))
			for i := range res {
				res[i] = Result{Err: err.Error()}
			}
			// One error note for the group is enough.
			for i := 1; i < len(res); i++ {
				res[i] = Result{Skipped: "error above"}
			}
		}
		for i := range rows {
			if sys.name == "starling" {
				rows[i].Starling = res[i]
			} else {
				rows[i].Raw = res[i]
			}
		}
		if ctx.Err() == nil {
			r.progress("%s: done in %s", sys.name, time.Since(t0).Round(100*time.Millisecond))
		}
	}
	return rows
}

// closeCluster closes c, reporting an error on the progress stream (a
// figure already measured stays valid).
func (r *runner) closeCluster(c cluster, sys string) {
	if err := c.Close(); err != nil {
		r.progress("%s: close: %v", sys, err)
	}
}

// isTimeout reports whether err is the measured run's budget running out
// (and not the caller's ctx).
func isTimeout(ctx context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
}
