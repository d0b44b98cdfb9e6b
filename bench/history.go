package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/node"
)

// ---- 7. bounded history (issue 13) ----
//
// One node overwrites the same 1,000 fields in calls of 10 writes (one
// entity-tree Update of 10 field writes, as POST /v1/fields/batch makes;
// raw: a go-ds-crdt Batch of 10 Puts). It is stopped and measured at
// every point of a plan (historyPlan) and started again on the same data
// directory, so the disk rows and the acceptance check of the issue come
// from one chain of writes. Then a fresh node joins it. Apart from that,
// 64 writers run with and without compaction rounds back to back.

// historyCluster is what the history workload needs beyond cluster: stop
// a node cleanly and start it again on its data directory, and the size
// of the live state.
type historyCluster interface {
	cluster
	// Stop closes node i; its data directory stays.
	Stop(i int) error
	// Restart opens node i again on its data directory.
	Restart(ctx context.Context, i int) error
	// LiveBytes is the bytes of every current key and value of node i.
	LiveBytes(ctx context.Context, i int) (int64, error)
}

var (
	_ historyCluster = (*starlingCluster)(nil)
	_ historyCluster = (*rawCluster)(nil)
)

const (
	// histFields is how many distinct fields the history workload
	// overwrites: fields f0..f999 of entity e0.
	histFields = 1000
	// histCall is the field writes per call.
	histCall = 10
	// histWriters is the concurrent writers of the compaction-load rows.
	histWriters = 64
	// checkGrowth, checkSlack and checkCap are the acceptance
	// check: the second size at most checkGrowth x the first plus
	// checkSlack, and at most checkCap.
	checkGrowth = 1.25
	checkSlack  = 2 << 20
	checkCap    = 16 << 20
)

// histField is the field of the i-th write: the 1,000 fields in turn, so
// a call of 10 writes 10 fields of the one entity and the i-th write
// overwrites the (i-1000)-th.
func histField(i int) field { return field{0, i % histFields} }

// histStop is a point of the history chain: after writes overwrites in
// all, the node is stopped, measured and started again.
type histStop struct {
	writes int
	disk   bool // a row "disk after N overwrites"
	check  int  // 1 or 2: the first or second half of the acceptance check; 0: neither
}

// historyPlan merges the sizes of the disk rows and the two halves of
// the acceptance check (check, then check more) into the stops of one
// chain, in order, with writes no more than limit (0: no limit).
func historyPlan(disk []int, check, limit int) []histStop {
	var plan []histStop
	at := func(n int) *histStop {
		for i := range plan {
			if plan[i].writes == n {
				return &plan[i]
			}
		}
		plan = append(plan, histStop{writes: n})
		return &plan[len(plan)-1]
	}
	for _, n := range disk {
		at(n).disk = true
	}
	if check > 0 {
		at(check).check = 1
		at(2 * check).check = 2
	}
	plan = slices.DeleteFunc(plan, func(s histStop) bool { return s.writes <= 0 || (limit > 0 && s.writes > limit) })
	slices.SortFunc(plan, func(a, b histStop) int { return a.writes - b.writes })
	return plan
}

// checkLimit is the largest second size the acceptance check allows
// after a first size of first bytes.
func checkLimit(first float64) float64 {
	return min(checkGrowth*first+checkSlack, checkCap)
}

// checkVerdict says, in words, whether sizes first and second pass the
// acceptance check.
func checkVerdict(first, second float64) string {
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "NO"
	}
	grow := checkGrowth*first + checkSlack
	return fmt.Sprintf("first %s, second %s: second <= 1.25 x first + 2 MiB (%s): %s; <= 16 MiB: %s",
		fmtBytes(first), fmtBytes(second), fmtBytes(grow), yes(second <= grow), yes(second <= checkCap))
}

// histPoint is what was measured at one stop.
type histPoint struct {
	stop       histStop
	disk, live int64
	note       string // what compaction did (Starling)
}

func (r *runner) history(ctx context.Context) ([]Row, []string) {
	sz := r.sz
	disk := slices.Clone(sz.histDisk)
	rawLimit := sz.histRaw
	if rawLimit == 0 {
		rawLimit = slices.Max(sz.histDisk)
	}
	if r.cfg.History10M {
		disk = append(disk, 10_000_000)
	}
	plan := historyPlan(disk, sz.histCheck, 0)
	last := plan[len(plan)-1].writes

	// The rows of the chain: per disk stop disk, live, disk/live; the
	// check's two sizes; the joins.
	var specs []spec
	diskRow := make(map[int]int) // stop writes -> index of its disk row
	for _, s := range plan {
		if !s.disk {
			continue
		}
		diskRow[s.writes] = len(specs)
		specs = append(specs,
			spec{label: fmt.Sprintf("disk after %s overwrites of 1k fields", count(s.writes)), kind: KindBytes,
				note: "du of the data dir after a clean stop; target: 2 x live + LevelDB's fixed overhead (du of the same node's data dir, stopped after its one entity was made, before any field write)"},
			spec{label: fmt.Sprintf("live state after %s overwrites", count(s.writes)), kind: KindBytes,
				note: "key + value bytes of every current key, as the store's Query returns them (Starling: entity records and registers; raw: one key per field), measured before the stop"},
			spec{label: fmt.Sprintf("disk / live after %s overwrites", count(s.writes)), kind: KindFactor,
				note: "the two rows above divided"},
		)
	}
	checkRow := len(specs)
	specs = append(specs,
		spec{label: fmt.Sprintf("check: disk after %s overwrites, stopped", count(sz.histCheck)), kind: KindBytes,
			note: "issue 13's check, first half: du of the data dir after a clean stop"},
		spec{label: fmt.Sprintf("check: disk after %s more, stopped", count(sz.histCheck)), kind: KindBytes,
			note: "the same node restarted, as many overwrites more, stopped again, du; target: 1.25 x the first + 2 MiB, at most 16 MiB"},
	)
	joinRow := len(specs)
	specs = append(specs,
		spec{label: fmt.Sprintf("join: 1k fields after %s overwrites, compacted", count(last)), kind: KindTime,
			note: "a fresh node (empty data dir, the source as static peer) joins by state transfer the node of the rows above, restarted after its last stop; timed until every one of the 1k fields holds the source's value and the node is ACTIVE"},
		spec{label: "join: the same 1k fields written once", kind: KindTime,
			note: "the same, into a fresh source whose 1k fields were each written once (calls of 10) with the values the compacted source holds"},
		spec{label: fmt.Sprintf("join: bytes transferred, after %s overwrites", count(last)), kind: KindBytes,
			note: "the state transfer's bytes, as the joining node's sync progress counts them"},
		spec{label: "join: bytes transferred, written once", kind: KindBytes,
			note: "the same, for the source without history"},
	)

	var starOverhead int64
	rows := r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
		out := make([]Result, len(specs))
		p := plan
		if sys.name != "starling" {
			p = historyPlan(disk, sz.histCheck, rawLimit)
		}
		for i := range out {
			out[i] = Result{Skipped: fmt.Sprintf("not run: %s's chain stops at %s", sys.name, count(p[len(p)-1].writes))}
		}
		dir, err := r.dir(sys.name)
		if err != nil {
			return nil, err
		}
		c0, err := sys.open(ctx, dir, 1)
		if err != nil {
			return nil, err
		}
		c, ok := c0.(historyCluster)
		if !ok {
			c0.Close()
			return nil, fmt.Errorf("bench: %s cannot stop and restart a node", sys.name)
		}
		defer r.closeCluster(c, sys.name)
		sc, _ := c.(*starlingCluster)
		overhead, points, cerr := r.historyChain(ctx, sys, c, sc, p, sc != nil)
		if sc != nil {
			starOverhead = overhead
		}
		for _, pt := range points {
			if pt.stop.disk {
				i := diskRow[pt.stop.writes]
				out[i] = Result{Value: float64(pt.disk), Note: pt.note}
				out[i+1] = Result{Value: float64(pt.live)}
				out[i+2] = Result{Value: float64(pt.disk) / float64(max(1, pt.live))}
			}
			if pt.stop.check > 0 {
				out[checkRow+pt.stop.check-1] = Result{Value: float64(pt.disk)}
			}
		}
		if cerr != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// Keep what was measured; the first row not reached says why.
			r.progress("%s: error: %v", sys.name, cerr)
			first := true
			for i := range out[:joinRow] {
				if !out[i].ok() {
					if first {
						out[i] = Result{Err: cerr.Error()}
						first = false
					} else {
						out[i] = Result{Skipped: "error above"}
					}
				}
			}
			return out, nil
		}
		if first, second := out[checkRow], out[checkRow+1]; first.ok() && second.ok() {
			out[checkRow+1].Note = checkVerdict(first.Value, second.Value)
		}
		if sc == nil {
			for i := joinRow; i < len(out); i++ {
				out[i] = Result{Skipped: "n/a: no state transfer"}
			}
			return out, nil
		}
		joins, err := r.historyJoins(ctx, sys, sc)
		if err != nil {
			return nil, err
		}
		copy(out[joinRow:], joins)
		return out, nil
	})

	// Targets from Starling's own figures.
	for _, i := range diskRow {
		live, dk := rows[i+1].Starling, rows[i].Starling
		if live.ok() && dk.ok() && starOverhead > 0 {
			rows[i].Target = below(2*live.Value + float64(starOverhead))
		}
	}
	if first := rows[checkRow].Starling; first.ok() {
		rows[checkRow+1].Target = below(checkLimit(first.Value))
	}
	loadRows := r.compactionLoad(ctx)
	notes := []string{fmt.Sprintf("history: one node overwrites the same 1k fields (entity e0's f0..f999) in calls of %d writes: Starling, %d concurrent callers, each call one entity-tree Update of %d field writes (what POST /v1/fields/batch does, without HTTP); raw, one caller, each call a go-ds-crdt Batch of %d Puts. The writes are one chain: the node is stopped cleanly, measured and restarted at %s overwrites in all, so \"disk after N\" is after N overwrites with stops on the way. Starling runs with the automatic compaction policy at its defaults (crdt.DefaultOptions) and, before every stop, one forced round (Store().Compact) so that the figure does not depend on when the policy last ran; the Starling disk rows' notes say what that round did. The chain's last stop before the join is reused for the join rows. Raw go-ds-crdt has no compaction%s",
		histCall, r.systems[0].writers, histCall, histCall, stopList(plan), rawNote(plan, rawLimit))}
	return append(rows, loadRows...), notes
}

// rawNote says where the raw chain stops when it stops earlier.
func rawNote(plan []histStop, rawLimit int) string {
	if plan[len(plan)-1].writes <= rawLimit {
		return "."
	}
	return fmt.Sprintf("; its chain stops at %s (it makes 5-8k writes/s in calls of 10 here, so 10M would take it half an hour).", count(rawLimit))
}

// stopList renders the plan's stops: "300k, 600k and 1M".
func stopList(plan []histStop) string {
	var s []string
	for _, p := range plan {
		s = append(s, count(p.writes))
	}
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	out := s[0]
	for _, x := range s[1 : len(s)-1] {
		out += ", " + x
	}
	return out + " and " + s[len(s)-1]
}

// historyChain makes one node's chain of overwrites: it measures the
// fixed overhead (the data dir of the node stopped right after Prepare),
// then writes up to each stop of plan and measures there. sc is the
// Starling cluster (nil for raw): a forced compaction round before every
// stop. The node is left running after the last stop when keepOpen. It
// returns the points measured so far with the error that ended it.
func (r *runner) historyChain(ctx context.Context, sys system, c historyCluster, sc *starlingCluster, plan []histStop, keepOpen bool) (int64, []histPoint, error) {
	sctx, cancel := r.setup(ctx)
	defer cancel()
	if err := c.Prepare(sctx, 1); err != nil {
		return 0, nil, err
	}
	dir := c.Dir(0)
	stopMeasure := func(restart bool) (int64, error) {
		if err := c.Stop(0); err != nil {
			return 0, fmt.Errorf("stop: %w", err)
		}
		du, err := diskUsage(dir)
		if err != nil {
			return 0, err
		}
		if restart {
			if err := c.Restart(sctx, 0); err != nil {
				return 0, err
			}
		}
		return du, nil
	}
	overhead, err := stopMeasure(true)
	if err != nil {
		return 0, nil, err
	}
	r.progress("%s: empty node: %s on disk after a clean stop", sys.name, fmtBytes(float64(overhead)))
	var points []histPoint
	done := 0
	for k, s := range plan {
		t0 := time.Now()
		if err := r.callLoad(sctx, c, done, s.writes, sys.writers); err != nil {
			return overhead, points, fmt.Errorf("overwrites %s..%s: %w", count(done), count(s.writes), err)
		}
		took := time.Since(t0)
		done = s.writes
		pt := histPoint{stop: s}
		if sc != nil {
			st, err := sc.compact(sctx, 0)
			if err != nil {
				return overhead, points, fmt.Errorf("compaction round at %s: %w", count(s.writes), err)
			}
			sizes := sc.node(0).Store().Sizes(sctx)
			pt.note = compactNote(st, sizes)
		}
		if pt.live, err = c.LiveBytes(sctx, 0); err != nil {
			return overhead, points, err
		}
		if pt.disk, err = stopMeasure(k < len(plan)-1 || keepOpen); err != nil {
			return overhead, points, err
		}
		r.progress("%s: %s overwrites (%s: %s/s): %s on disk, live %s%s", sys.name, count(s.writes), took.Round(100*time.Millisecond),
			thousands(float64(s.writes-plan0(plan, k))/took.Seconds()), fmtBytes(float64(pt.disk)), fmtBytes(float64(pt.live)), prefixed("; ", pt.note))
		points = append(points, pt)
	}
	return overhead, points, nil
}

// plan0 is the writes done before stop k.
func plan0(plan []histStop, k int) int {
	if k == 0 {
		return 0
	}
	return plan[k-1].writes
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

// compactNote says what the forced round before a stop did, and what the
// store then measured of itself.
func compactNote(st crdt.CompactStats, sz crdt.Sizes) string {
	if st.Skipped != "" {
		return fmt.Sprintf("the forced round was skipped (%s); on disk after it: live %s, history %s", st.Skipped, fmtBytes(float64(sz.Live)), fmtBytes(float64(sz.History)))
	}
	return fmt.Sprintf("forced round before the stop: %d of %d blocks deleted (%d pinned by a live element), %d dead elements and %d lone tombstones deleted, %s reclaimed in %s; the store's own sizes after it: live %s, history %s (processed markers and pinned blocks stay)",
		st.BlocksDeleted, st.Frontier, st.Pinned, st.ElementsDeleted, st.TombstonesDeleted, fmtBytes(float64(st.Reclaimed())),
		fmtSeconds(st.Took.Seconds()), fmtBytes(float64(sz.Live)), fmtBytes(float64(sz.History)))
}

// callLoad makes overwrites from..to-1 on node 0 in calls of histCall
// (WriteMany of histCall writes: one Update, one go-ds-crdt Batch), from
// writers concurrent callers.
func (r *runner) callLoad(ctx context.Context, c cluster, from, to, writers int) error {
	var next atomic.Int64
	next.Store(int64(from / histCall))
	calls := int64((to + histCall - 1) / histCall)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			ws := make([]write, 0, histCall)
			for {
				k := next.Add(1) - 1
				if k >= calls {
					return
				}
				ws = ws[:0]
				for i := int(k) * histCall; i < min(int(k+1)*histCall, to); i++ {
					ws = append(ws, write{histField(i), int64(i)})
				}
				if err := c.WriteMany(ctx, 0, ws); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return firstError(errs)
}

// historyJoins times a fresh node joining sc's node 0 (the compacted
// history, running) and then a fresh source holding the same fields
// written once; it returns the four join rows' results.
func (r *runner) historyJoins(ctx context.Context, sys system, sc *starlingCluster) ([]Result, error) {
	sctx, cancel := r.setup(ctx)
	defer cancel()
	want := make(map[field]int64, histFields)
	for f := range histFields {
		v, ok, err := sc.Value(sctx, 0, histField(f))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("field %s missing on the source", histField(f).key())
		}
		want[histField(f)] = v
	}
	counts := []int{histFields}
	r.progress("%s: a fresh node joins the compacted source", sys.name)
	hist, j, err := r.timeJoin(ctx, sc, sys.name, counts, want)
	if err != nil {
		return nil, fmt.Errorf("join the compacted source: %w", err)
	}
	histBytes := Result{Skipped: "no joined node"}
	if j > 0 {
		histBytes = transferred(sc, j)
	}

	dir2, err := r.dir(sys.name)
	if err != nil {
		return nil, err
	}
	c2, err := sys.open(ctx, dir2, 1)
	if err != nil {
		return nil, err
	}
	defer r.closeCluster(c2, sys.name)
	if err := c2.Prepare(sctx, 1); err != nil {
		return nil, err
	}
	for f := 0; f < histFields; f += histCall {
		ws := make([]write, 0, histCall)
		for k := f; k < f+histCall; k++ {
			ws = append(ws, write{histField(k), want[histField(k)]})
		}
		if err := c2.WriteMany(sctx, 0, ws); err != nil {
			return nil, fmt.Errorf("set up the source without history: %w", err)
		}
	}
	r.progress("%s: a fresh node joins the source without history", sys.name)
	once, j2, err := r.timeJoin(ctx, c2, sys.name, counts, want)
	if err != nil {
		return nil, fmt.Errorf("join the source without history: %w", err)
	}
	onceBytes := Result{Skipped: "no joined node"}
	if s2, ok := c2.(*starlingCluster); ok && j2 > 0 {
		onceBytes = transferred(s2, j2)
	}
	return []Result{hist, once, histBytes, onceBytes}, nil
}

// transferred is the bytes node j's last state transfer carried.
func transferred(sc *starlingCluster, j int) Result {
	p := sc.node(j).SyncProgress()
	b := max(p.BytesDone, p.BytesTotal)
	if b == 0 {
		return Result{Skipped: "not reported"}
	}
	return Result{Value: float64(b)}
}

// compactionLoad: 64 writers make a fixed count of field writes on a
// node, once with compaction rounds run back to back in a goroutine and
// once without any (the automatic policy is off in both).
func (r *runner) compactionLoad(ctx context.Context) []Row {
	n := r.sz.histLoad
	specs := []spec{
		{label: "field writes/s, 64 writers, no compaction", kind: KindRate},
		{label: "field writes/s, 64 writers, compaction rounds back to back", kind: KindRate},
		{label: "write latency p99, 64 writers, no compaction", kind: KindTime},
		{label: "write latency p99, 64 writers, compaction rounds back to back", kind: KindTime,
			note: fmt.Sprintf("%s single field writes (Entities().Set) by 64 writers over the 1k fields of one entity (written once before), each timed until durable; first run: automatic compaction off; second run: the store's automatic policy made to run a round whenever it looks, every millisecond (CompactInterval 1ms, CompactMaxAge 1ns), so rounds run back to back as the policy runs them (LevelDB gives the space back after rounds that delete 1 MiB or more); the Starling note says how many rounds ran", count(n))},
	}
	return r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
		if sys.name != "starling" {
			na := Result{Skipped: "n/a: no compaction"}
			return []Result{na, na, na, na}, nil
		}
		var rates, p99s [2]Result
		for k, compacting := range []bool{false, true} {
			rate, p99, err := r.compactionLoadOnce(ctx, sys, n, compacting)
			if err != nil {
				return nil, err
			}
			rates[k], p99s[k] = rate, p99
		}
		return []Result{rates[0], rates[1], p99s[0], p99s[1]}, nil
	})
}

func (r *runner) compactionLoadOnce(ctx context.Context, sys system, n int, compacting bool) (Result, Result, error) {
	dir, err := r.dir(sys.name)
	if err != nil {
		return Result{}, Result{}, err
	}
	// Compacting: the store's own automatic policy, made to run a round
	// every millisecond it is due (always): the rounds a node runs, back
	// to back. Not compacting: the policy off.
	copts := crdt.Options{CompactInterval: -1}
	if compacting {
		copts = crdt.Options{CompactInterval: time.Millisecond, CompactMaxAge: time.Nanosecond}
	}
	open := openStarling(r.cfg.Logger, node.WithCRDTOptions(copts))
	c0, err := open(ctx, dir, 1)
	if err != nil {
		return Result{}, Result{}, err
	}
	c := c0.(*starlingCluster)
	defer r.closeCluster(c, sys.name)
	sctx, cancel := r.setup(ctx)
	defer cancel()
	if err := c.Prepare(sctx, 1); err != nil {
		return Result{}, Result{}, err
	}
	ws := make([]write, histFields)
	for i := range ws {
		ws[i] = write{histField(i), int64(i)}
	}
	if err := c.WriteMany(sctx, 0, ws); err != nil {
		return Result{}, Result{}, err
	}
	store := c.node(0).Store()
	before := store.Status(ctx)
	what := "no compaction"
	if compacting {
		what = "compaction rounds back to back"
	}
	r.progress("%s: %s field writes, %d writers, %s", sys.name, count(n), histWriters, what)
	rate, lat, done, err := r.writeLoad(ctx, c, 0, n, histWriters, histField)
	if err != nil {
		return Result{}, Result{}, err
	}
	after := store.Status(ctx)
	rr := Result{Value: rate}
	if done < n {
		rr = r.timedOut(float64(done) / float64(n))
		rr.Value = rate
	}
	p99 := Result{Value: percentile(lat, 0.99)}
	if compacting {
		p99.Note = fmt.Sprintf("%d rounds of the automatic policy ran during the writes, reclaiming %s", after.CompactRounds-before.CompactRounds,
			fmtBytes(float64(after.CompactReclaimed-before.CompactReclaimed)))
	}
	r.progress("%s: %s: %s, p99 %s%s", sys.name, what, FormatValue(KindRate, rr), fmtSeconds(p99.Value), prefixed("; ", p99.Note))
	return rr, p99, nil
}
