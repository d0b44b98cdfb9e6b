package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-sync/starling/election"
)

// writeField is the field of the i-th write of the writes workload:
// spread over 100 entities of 100 fields, overwritten from the 10,001st
// write on.
func writeField(i int) field { return field{i % 100, (i / 100) % 100} }

// ---- 1. field writes/s on one node ----

func (r *runner) writes(ctx context.Context) ([]Row, []string) {
	n1, n64 := r.sz.single, r.sz.concurrent
	specs := []spec{
		{label: "field writes/s, 1 writer", kind: KindRate},
		{label: "write latency p50, 1 writer", kind: KindTime},
		{label: "write latency p99, 1 writer", kind: KindTime},
		{label: "field writes/s, 64 writers", kind: KindRate},
		{label: "write latency p99, 64 writers", kind: KindTime},
		{label: "field writes/s, 256 writers", kind: KindRate, target: atLeast(50_000)},
		{label: "write latency p99, 256 writers", kind: KindTime},
		{label: "field writes/s, batches of 100, 1 writer", kind: KindRate, target: atLeast(50_000)},
	}
	rows := r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
		dir, err := r.dir(sys.name)
		if err != nil {
			return nil, err
		}
		c, err := sys.open(ctx, dir, 1)
		if err != nil {
			return nil, err
		}
		defer r.closeCluster(c, sys.name)
		if err := c.Prepare(ctx, 100); err != nil {
			return nil, err
		}
		out := make([]Result, 0, len(specs))
		for _, writers := range []int{1, 64, 256} {
			total := n1
			if writers > 1 {
				total = n64
			}
			r.progress("%s: %d field writes, %d writer(s)", sys.name, total, writers)
			rate, lat, done, err := r.writeLoad(ctx, c, 0, total, writers, writeField)
			if err != nil {
				return nil, err
			}
			rr := Result{Value: rate}
			if done < total {
				rr = r.timedOut(float64(done) / float64(total))
				rr.Value = rate // a rate over what was done is still a figure
			}
			out = append(out, rr)
			if writers == 1 {
				out = append(out, Result{Value: percentile(lat, 0.5)})
			}
			out = append(out, Result{Value: percentile(lat, 0.99)})
			r.progress("%s: %d writers: %s, p99 %s", sys.name, writers, FormatValue(KindRate, rr), fmtSeconds(percentile(lat, 0.99)))
		}
		// Batches: one call writes 100 fields (Starling: one Update;
		// raw: one go-ds-crdt Batch), durable on return.
		r.progress("%s: %d field writes in batches of %d", sys.name, n64, writeBatch)
		bctx, cancel := context.WithTimeout(ctx, r.cfg.Budget)
		start, done := time.Now(), 0
		var berr error
		for done < n64 && berr == nil {
			ws := make([]write, 0, writeBatch)
			for i := done; i < done+writeBatch && i < n64; i++ {
				ws = append(ws, write{writeField(i), int64(i)})
			}
			if berr = c.WriteMany(bctx, 0, ws); berr == nil {
				done += len(ws)
			}
		}
		cancel()
		br := Result{Value: float64(done) / time.Since(start).Seconds()}
		if done < n64 {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rate := br.Value
			br = r.timedOut(float64(done) / float64(n64))
			br.Value = rate
		}
		out = append(out, br)
		r.progress("%s: batches: %s", sys.name, FormatValue(KindRate, br))
		return out, nil
	})
	return rows, []string{fmt.Sprintf("writes: %s writes by 1 writer, %s by 64 and by 256 concurrent writers, and as many in batches of 100 per call, on one node, over 10k fields (100 entities x 100 fields); Starling: entity field writes (Entities().Set), durable on return; raw: one Put per write (a field = a key). Concurrent Puts are slow on raw go-ds-crdt: it lists the heads, adds a block and processes it without a lock, so concurrent Puts branch the DAG and every later block links to many heads",
		count(n1), count(n64)),
		"writes, target row: each writer waits for its write to be durable, so N writers make at most N / (write latency) writes/s, and every write's latency holds one fsync (see the disk line above). 64 writers therefore cannot load a node to 50k writes/s (that needs 1.28 ms per write, fsync included); the node's capacity shows with 256 writers or with batches"}
}

// writeBatch is the writes per call of the batched write workload.
const writeBatch = 100

// writeLoad writes total fields on node from writers goroutines, within
// the budget; the i-th write is of fieldOf(i). It returns the
// rate, the latency of each write done, and how many were done. An error
// other than the budget running out is returned.
func (r *runner) writeLoad(ctx context.Context, c cluster, node, total, writers int, fieldOf func(int) field) (float64, []time.Duration, int, error) {
	mctx, cancel := r.measured(ctx)
	defer cancel()
	var next, done atomic.Int64
	lats := make([][]time.Duration, writers)
	errs := make([]error, writers)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total || mctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := c.Write(mctx, node, write{fieldOf(i), int64(i)}); err != nil {
					if mctx.Err() == nil {
						errs[w] = err
					}
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := firstError(errs); err != nil {
		return 0, nil, 0, err
	}
	if ctx.Err() != nil {
		return 0, nil, 0, ctx.Err()
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return float64(done.Load()) / elapsed.Seconds(), all, int(done.Load()), nil
}

// ---- 2. write -> visible on 3 nodes ----

func (r *runner) visible(ctx context.Context) ([]Row, []string) {
	n := r.sz.visible
	specs := []spec{
		{label: "write->visible on 3 nodes p50", kind: KindTime},
		{label: "write->visible on 3 nodes p99", kind: KindTime, target: below(0.005)},
	}
	rows := r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
		dir, err := r.dir(sys.name)
		if err != nil {
			return nil, err
		}
		c, err := sys.open(ctx, dir, 3)
		if err != nil {
			return nil, err
		}
		defer r.closeCluster(c, sys.name)
		sctx, cancel := r.setup(ctx)
		defer cancel()
		if err := c.Prepare(sctx, 1); err != nil {
			return nil, fmt.Errorf("start 3 connected nodes: %w", err)
		}
		r.progress("%s: %d writes on node 1, each until nodes 2 and 3 show it", sys.name, n)
		lat, done, err := r.visibleLoad(ctx, c, n, func(i int) int { return 0 })
		if err != nil {
			return nil, err
		}
		if done < n {
			tr := r.timedOut(float64(done) / float64(n))
			return []Result{tr, tr}, nil
		}
		return []Result{{Value: percentile(lat, 0.5)}, {Value: percentile(lat, 0.99)}}, nil
	})
	return rows, []string{fmt.Sprintf("visible: %d writes one at a time on node 1 of 3 (loopback TCP, real libp2p), each timed from the write call until the change feeds of nodes 2 and 3 show it (Starling: entity watch; raw: PutHook)", n)}
}

// visibleLoad makes n writes one at a time, the i-th on node writer(i),
// each timed until every other node's watcher shows it. It returns the
// latencies and how many writes became visible within the budget.
func (r *runner) visibleLoad(ctx context.Context, c cluster, n int, writer func(i int) int) ([]time.Duration, int, error) {
	ws := make([]watcher, c.Size())
	for i := range ws {
		ws[i] = c.Watch(i)
		defer ws[i].Close()
	}
	mctx, cancel := r.measured(ctx)
	defer cancel()
	// A few unmeasured writes first: the first ones open streams.
	for i := range 3 {
		f := field{0, 1_000_000 + i}
		if err := c.Write(mctx, 0, write{f, 1}); err != nil {
			return nil, 0, err
		}
		for j := 1; j < len(ws); j++ {
			if err := waitVisible(mctx, ws[j], f); err != nil {
				if isTimeout(ctx, err) {
					r.notVisible(c, j, 0, f)
					return nil, 0, nil
				}
				return nil, 0, err
			}
		}
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		f := field{0, i}
		from := writer(i)
		t0 := time.Now()
		if err := c.Write(mctx, from, write{f, int64(i)}); err != nil {
			if isTimeout(ctx, err) {
				return lat, i, nil
			}
			return nil, 0, err
		}
		for j := range ws {
			if j == from {
				continue
			}
			if err := waitVisible(mctx, ws[j], f); err != nil {
				if isTimeout(ctx, err) {
					r.notVisible(c, j, from, f)
					return lat, i, nil
				}
				return nil, 0, err
			}
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, n, nil
}

// notVisible says which node (by index) a timed-out write never showed
// on, and whether its store has it (if so, only the watch missed it).
func (r *runner) notVisible(c cluster, node, writer int, f field) {
	v, ok, err := c.Value(context.Background(), node, f)
	r.progress("a write (field %v) did not show on node #%d within the budget; read from its store: value %d, found %v, err %v", f, node, v, ok, err)
	if d, can := c.(diagnoser); can {
		r.progress("node #%d: %s", node, d.Diagnose(node))
		r.progress("writer #%d: %s", writer, d.Diagnose(writer))
	}
}

// diagnoser is a cluster that can say what state a node is in, for a
// time-out's message.
type diagnoser interface {
	Diagnose(i int) string
}

// ---- 3. heal after a partition ----

func (r *runner) heal(ctx context.Context) ([]Row, []string) {
	var rows []Row
	for _, n := range r.sz.heal {
		var target *Target
		if n == 10_000 {
			target = below(2)
		}
		specs := []spec{{label: fmt.Sprintf("heal after %s writes on one side", count(n)), kind: KindTime, target: target}}
		rows = append(rows, r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
			res, err := r.healOnce(ctx, sys, n)
			return []Result{res}, err
		})...)
	}
	return rows, []string{fmt.Sprintf("heal: 3 nodes; node 3 is cut off (connection gater on both sides, connections closed), node 1 makes N field writes (Starling: 16 concurrent writers, one Set each; raw: go-ds-crdt Batches of %d Puts, one DAG node each, for a setup of minutes rather than hours: %d times fewer blocks to walk than one Put per write, which only favours raw) and node 3 makes 100 one by one; timed from the heal until every node holds every write. Starling nodes re-dial on their own; raw go-ds-crdt has no re-dial loop, so the harness reconnects it at once and its heads travel only with its rebroadcast (every minute by default)", rawSetupBatch, rawSetupBatch)}
}

// healEnt is the entity node 3 writes during the partition.
const healEnt = 100

func (r *runner) healOnce(ctx context.Context, sys system, n int) (Result, error) {
	dir, err := r.dir(sys.name)
	if err != nil {
		return Result{}, err
	}
	c, err := sys.open(ctx, dir, 3)
	if err != nil {
		return Result{}, err
	}
	defer r.closeCluster(c, sys.name)
	sctx, cancel := r.setup(ctx)
	defer cancel()
	if err := c.Prepare(sctx, healEnt+1); err != nil {
		return Result{}, fmt.Errorf("start 3 connected nodes: %w", err)
	}
	if err := c.Partition(2); err != nil {
		return Result{}, err
	}
	how := fmt.Sprintf("%d writers", sys.writers)
	if sys.batchSetup {
		how = fmt.Sprintf("batches of %d", rawSetupBatch)
	}
	r.progress("%s: partitioned; %s writes on node 1 (%s), 100 on node 3", sys.name, count(n), how)
	t0 := time.Now()
	var werr [2]error
	var wg sync.WaitGroup
	wg.Go(func() {
		if !sys.batchSetup {
			werr[0] = r.writeMany(sctx, c, 0, n, sys.writers, func(i int) field { return writeFieldHeal(i, n) })
			return
		}
		ws := make([]write, n)
		for i := range ws {
			ws[i] = write{writeFieldHeal(i, n), int64(i)}
		}
		werr[0] = c.WriteMany(sctx, 0, ws)
	})
	wg.Go(func() { werr[1] = r.writeMany(sctx, c, 2, 100, 1, func(i int) field { return field{healEnt, i} }) })
	wg.Wait()
	if err := errors.Join(werr[:]...); err != nil {
		return Result{}, fmt.Errorf("writes during the partition: %w", err)
	}
	r.progress("%s: wrote in %s; healing", sys.name, time.Since(t0).Round(10*time.Millisecond))
	// Expected: on every node, entity e < 100 has n/100 fields (node 1's
	// writes), entity 100 has 100 (node 3's).
	want := func(e int) int {
		if e == healEnt {
			return 100
		}
		return perEnt(n, e)
	}
	ents := healEnt + 1
	before, err := totalFields(ctx, c, ents, nil)
	if err != nil {
		return Result{}, err
	}
	expected := c.Size() * (n + 100)
	if err := c.Heal(); err != nil {
		return Result{}, err
	}
	start := time.Now()
	mctx, mcancel := r.measured(ctx)
	defer mcancel()
	interval := 20 * time.Millisecond
	if n >= 100_000 {
		interval = 100 * time.Millisecond
	}
	complete := make([][]bool, c.Size())
	for i := range complete {
		complete[i] = make([]bool, ents)
	}
	err = poll(mctx, interval, func() (bool, error) {
		all := true
		for i := range c.Size() {
			for e := range ents {
				if complete[i][e] {
					continue
				}
				got, err := c.Count(mctx, i, e)
				if err != nil {
					return false, err
				}
				if got >= want(e) {
					complete[i][e] = true
				} else {
					all = false
					break // this node is not done; try the next
				}
			}
		}
		return all, nil
	})
	took := time.Since(start)
	if err != nil {
		if !isTimeout(ctx, err) {
			return Result{}, err
		}
		now, cerr := totalFields(ctx, c, ents, nil)
		if cerr != nil {
			return Result{}, cerr
		}
		frac := float64(now-before) / float64(max(1, expected-before))
		r.progress("%s: not healed within %s (%.0f%% of the missing writes arrived)", sys.name, r.cfg.Budget, frac*100)
		return r.timedOut(frac), nil
	}
	r.progress("%s: healed in %s", sys.name, took.Round(time.Millisecond))
	return Result{Value: took.Seconds()}, nil
}

// writeFieldHeal spreads n writes over 100 entities with n/100 fields each.
func writeFieldHeal(i, n int) field { return field{i % 100, i / 100} }

// perEnt is how many fields entity e (< 100) gets from writeFieldHeal.
func perEnt(n, e int) int {
	k := n / 100
	if e < n%100 {
		k++
	}
	return k
}

// writeMany writes total fields from writers goroutines (setup: no
// budget, no latency).
func (r *runner) writeMany(ctx context.Context, c cluster, node, total, writers int, f func(int) field) error {
	var next atomic.Int64
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				if err := c.Write(ctx, node, write{f(i), int64(i)}); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return firstError(errs)
}

// firstError is the first non-nil error of errs: writers that fail
// usually fail alike.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// totalFields sums the fields of entities 0..ents-1 over nodes (all
// nodes when nodes is nil).
func totalFields(ctx context.Context, c cluster, ents int, nodes []int) (int, error) {
	if nodes == nil {
		for i := range c.Size() {
			nodes = append(nodes, i)
		}
	}
	total := 0
	for _, i := range nodes {
		for e := range ents {
			n, err := c.Count(ctx, i, e)
			if err != nil {
				return 0, err
			}
			total += n
		}
	}
	return total, nil
}

// ---- 4. fresh node join ----

// joinCase is one join scenario: writes fields of ents entities (1,000
// fields each), of which the last write of each field is its value.
type joinCase struct {
	label  string
	target *Target
	writes int // field writes on the source
	fields int // distinct fields they write
}

func (j joinCase) ents() int         { return (j.fields + 999) / 1000 }
func (j joinCase) field(i int) field { f := i % j.fields; return field{f / 1000, f % 1000} }
func (j joinCase) final(f field) int64 { // the last write of f
	k := f.ent*1000 + f.f
	last := (j.writes-1-k)/j.fields*j.fields + k
	return int64(last)
}

func (r *runner) join(ctx context.Context) ([]Row, []string) {
	var cases []joinCase
	for _, n := range r.sz.joinKeys {
		var t *Target
		if n == 50_000 {
			t = below(3)
		}
		cases = append(cases, joinCase{label: fmt.Sprintf("join: fresh node into %s fields", count(n)), target: t, writes: n, fields: n})
	}
	var ht *Target
	if r.sz.histWrite == 1_000_000 {
		ht = below(10)
	}
	cases = append(cases, joinCase{
		label:  fmt.Sprintf("join: history of %s overwrites of %s fields", count(r.sz.histWrite), count(r.sz.histKeys)),
		target: ht, writes: r.sz.histWrite, fields: r.sz.histKeys,
	})
	var rows []Row
	for _, jc := range cases {
		specs := []spec{{label: jc.label, kind: KindTime, target: jc.target}}
		rows = append(rows, r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
			res, err := r.joinOnce(ctx, sys, jc)
			return []Result{res}, err
		})...)
	}
	return rows, []string{fmt.Sprintf("join: one node holds the store (written in batches: Starling %d field writes per Update, raw %d Puts per go-ds-crdt Batch); a fresh node with an empty data dir starts and is timed until it holds every field with its last value. Starling: the new node has the source as static peer and joins by state transfer on its own (node/transfer.go). Raw: a fresh replica connected to the source catches up by DAG walk; the source writes a key every second until the replica has seen a broadcast (go-ds-crdt announces heads only with writes or its 1-minute rebroadcast). Joined = every field holds its last value and the node has synced: Starling ACTIVE; raw: the source's heads, nothing queued, as many DAG blocks processed as the source (%% done = blocks processed; Starling: entries transferred)", starlingSetupBatch, rawSetupBatch)}
}

func (r *runner) joinOnce(ctx context.Context, sys system, jc joinCase) (Result, error) {
	dir, err := r.dir(sys.name)
	if err != nil {
		return Result{}, err
	}
	c, err := sys.open(ctx, dir, 1)
	if err != nil {
		return Result{}, err
	}
	defer r.closeCluster(c, sys.name)
	sctx, cancel := r.setup(ctx)
	defer cancel()
	if err := c.Prepare(sctx, jc.ents()); err != nil {
		return Result{}, err
	}
	r.progress("%s: writing %s field writes to %s fields on the source", sys.name, count(jc.writes), count(jc.fields))
	t0 := time.Now()
	const chunk = 100_000
	for start := 0; start < jc.writes; start += chunk {
		ws := make([]write, 0, chunk)
		for i := start; i < min(start+chunk, jc.writes); i++ {
			ws = append(ws, write{jc.field(i), int64(i)})
		}
		if err := c.WriteMany(sctx, 0, ws); err != nil {
			return Result{}, fmt.Errorf("set up the source: %w", err)
		}
		if jc.writes > chunk {
			r.progress("%s: %s of %s written", sys.name, count(start+len(ws)), count(jc.writes))
		}
	}
	r.progress("%s: source ready in %s; starting a fresh node", sys.name, time.Since(t0).Round(10*time.Millisecond))

	// Fields to check for their last value: the first and last 20.
	want := make(map[field]int64)
	for k := range min(20, jc.fields) {
		for _, f := range []field{{k / 1000, k % 1000}, jc.field(jc.fields - 1 - k)} {
			want[f] = jc.final(f)
		}
	}
	counts := make([]int, jc.ents())
	for e := range counts {
		counts[e] = min(1000, jc.fields-e*1000)
	}
	res, _, err := r.timeJoin(ctx, c, sys.name, counts, want)
	return res, err
}

// timeJoin starts a fresh node that joins c and times it until it is
// joined: entity e holds counts[e] fields, every field of want holds its
// value, and the node says it has synced. It returns the result and the
// new node's index.
func (r *runner) timeJoin(ctx context.Context, c cluster, sys string, counts []int, want map[field]int64) (Result, int, error) {
	mctx, mcancel := r.measured(ctx)
	defer mcancel()
	start := time.Now()
	j, err := c.Join(mctx)
	if err != nil {
		if isTimeout(ctx, err) {
			return r.timedOut(0), 0, nil
		}
		return Result{}, 0, fmt.Errorf("start the fresh node: %w", err)
	}
	complete := make([]bool, len(counts))
	// readable: every field holds its last value (a reader sees the
	// whole store), which may come before the node has synced.
	readable := func() (bool, error) {
		for e, n := range counts {
			if complete[e] {
				continue
			}
			got, err := c.Count(mctx, j, e)
			if err != nil {
				return false, err
			}
			if got < n {
				return false, nil
			}
			complete[e] = true
		}
		for f, wv := range want {
			v, ok, err := c.Value(mctx, j, f)
			if err != nil || !ok || v != wv {
				return false, err
			}
		}
		return true, nil
	}
	var readableAt time.Duration
	err = poll(mctx, 10*time.Millisecond, func() (bool, error) {
		if readableAt == 0 {
			ok, err := readable()
			if err != nil || !ok {
				return false, err
			}
			readableAt = time.Since(start)
		}
		return c.Synced(mctx, j), nil
	})
	took := time.Since(start)
	if err != nil {
		if !isTimeout(ctx, err) {
			return Result{}, 0, err
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		defer ccancel()
		frac := c.SyncDone(cctx, j)
		res := r.timedOut(frac)
		if readableAt > 0 {
			res.Note = fmt.Sprintf("every field readable with its last value after %s, but the sync was not done within the budget", fmtSeconds(readableAt.Seconds()))
		}
		r.progress("%s: not joined within %s (%.0f%% synced; readable after %v)", sys, r.cfg.Budget, frac*100, readableAt.Round(time.Millisecond))
		return res, j, nil
	}
	res := Result{Value: took.Seconds()}
	if readableAt < took*4/5 && took-readableAt > 100*time.Millisecond {
		res.Note = fmt.Sprintf("every field readable with its last value after %s; synced after %s", fmtSeconds(readableAt.Seconds()), fmtSeconds(took.Seconds()))
	}
	r.progress("%s: readable after %s, synced after %s", sys, readableAt.Round(time.Millisecond), took.Round(time.Millisecond))
	return res, j, nil
}

// ---- 5. disk bytes per write, memory per node ----

func (r *runner) disk(ctx context.Context) ([]Row, []string) {
	n := r.sz.disk
	specs := []spec{
		{label: "disk bytes per write", kind: KindBytes},
		{label: "RSS per node (estimate)", kind: KindBytes},
		{label: "Go heap per node (estimate)", kind: KindBytes},
	}
	rows := r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
		dir, err := r.dir(sys.name)
		if err != nil {
			return nil, err
		}
		before := sampleMemory()
		c, err := sys.open(ctx, dir, 1)
		if err != nil {
			return nil, err
		}
		closed := false
		defer func() {
			if !closed {
				r.closeCluster(c, sys.name)
			}
		}()
		sctx, cancel := r.setup(ctx)
		defer cancel()
		if err := c.Prepare(sctx, 100); err != nil {
			return nil, err
		}
		r.progress("%s: %s field writes (%d writers) on one node", sys.name, count(n), sys.writers)
		_, _, done, err := r.writeLoad(ctx, c, 0, n, sys.writers, func(i int) field { return field{i % 100, i / 100} })
		if err != nil {
			return nil, err
		}
		if done == 0 {
			tr := r.timedOut(0)
			return []Result{tr, tr, tr}, nil
		}
		after := sampleMemory()
		nodeDir := c.Dir(0)
		closed = true
		if err := c.Close(); err != nil {
			return nil, err
		}
		du, err := diskUsage(nodeDir)
		if err != nil {
			return nil, err
		}
		rss := Result{Value: delta(after.rss, before.rss)}
		switch {
		case after.rss == 0:
			rss = Result{Skipped: "no /proc"}
		case after.rss <= before.rss:
			// Memory freed by earlier workloads went back to the OS
			// meanwhile: the delta says nothing.
			rss = Result{Skipped: "RSS fell; see heap"}
		}
		r.progress("%s: %d writes, %s on disk, RSS +%s, heap +%s", sys.name, done, fmtBytes(float64(du)), fmtBytes(rss.Value), fmtBytes(delta(after.heapLive, before.heapLive)))
		res := []Result{{Value: float64(du) / float64(done)}, rss, {Value: delta(after.heapLive, before.heapLive)}}
		if done < n {
			res[0].Note = fmt.Sprintf("%s of %s writes made within the %s budget; bytes per write of those", thousands(float64(done)), thousands(float64(n)), fmtBudget(r.cfg.Budget))
		}
		return res, nil
	})
	return rows, []string{fmt.Sprintf("disk: %s distinct field writes on one node (Starling: 16 writers; raw: one at a time); bytes = apparent size of every file in the node's data dir after close (Starling's includes its identity, config and token) / writes. RSS and heap: nodes run in this process, so they are estimates: the growth of VmRSS and of the live Go heap (after a GC) from before the node started to after its writes (Starling: a whole node with HTTP API, election, monitor and entity view; raw: the replica alone)", count(n))}
}

// ---- 6. many simulated nodes ----

func (r *runner) mocknet(ctx context.Context) ([]Row, []string) {
	return r.mocknetVisible(ctx, r.cfg.Nodes)
}

func (r *runner) mocknetBig(ctx context.Context) ([]Row, []string) {
	return r.mocknetVisible(ctx, r.sz.mocknetBig)
}

// mocknetVisible times writes, each on another node, until all n nodes
// of a mocknet show them.
func (r *runner) mocknetVisible(ctx context.Context, n int) ([]Row, []string) {
	samples := r.sz.mocknet
	var target *Target
	if n >= 50 {
		target = below(1)
	}
	specs := []spec{
		{label: fmt.Sprintf("write visible on all %d nodes (%s) p50", n, r.cfg.Net), kind: KindTime},
		{label: fmt.Sprintf("write visible on all %d nodes (%s) p99", n, r.cfg.Net), kind: KindTime, target: target},
	}
	const seed = 1
	rows := r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
		dir, err := r.dir(sys.name)
		if err != nil {
			return nil, err
		}
		sctx, cancel := r.setup(ctx)
		defer cancel()
		r.progress("%s: starting %d nodes on %s", sys.name, n, r.netName())
		c, err := sys.openSim(sctx, dir, n, seed)
		if err != nil {
			return nil, err
		}
		defer r.closeCluster(c, sys.name)
		wctx, wcancel := r.measured(ctx)
		err = c.Prepare(wctx, 1)
		wcancel()
		if err != nil {
			if isTimeout(ctx, err) {
				r.progress("%s: %v", sys.name, err)
				tr := r.timedOut(0)
				return []Result{tr, tr}, nil
			}
			return nil, err
		}
		r.progress("%s: %d writes, each on another node, until all %d nodes show it", sys.name, samples, n)
		lat, done, err := r.visibleLoad(ctx, c, samples, func(i int) int { return (i * 7) % n })
		if err != nil {
			return nil, err
		}
		if done < samples {
			tr := r.timedOut(float64(done) / float64(samples))
			return []Result{tr, tr}, nil
		}
		return []Result{{Value: percentile(lat, 0.5)}, {Value: percentile(lat, 0.99)}}, nil
	})
	return rows, []string{fmt.Sprintf("%s (%d nodes): in this process on %s, each connected to its next %d ring neighbours and one random node (seed %d). Starling: whole nodes (node.Open: entity tree, election, node states, statesync; no HTTP API), each with its LevelDB in its own data dir, free to dial any other, so that their address exchange and re-dial loops connect each node to up to 12 others (p2p's MaxPeers), as on a LAN; writes and reads through the entity API (Set; Watch). Raw: go-ds-crdt with PubSubBroadcaster and bitswap %s, on the same topology (those pairs only). %d writes, from rotating nodes, each timed until every other node shows it", r.cfg.Net, n, r.netName(), mockDegree, seed, r.rawStore(), samples)}
}

// netName describes Config.Net for notes and progress lines.
func (r *runner) netName() string {
	if r.cfg.Net == NetLoopback {
		return "real libp2p hosts on 127.0.0.1 (TCP, TLS, yamux; Starling's inside its private network)"
	}
	return "libp2p's mocknet (in-memory connections, no latency)"
}

// rawStore says where the raw replicas of a simulated cluster keep
// their data.
func (r *runner) rawStore() string {
	if r.cfg.Net == NetLoopback {
		return "on LevelDB, each in its own data dir"
	}
	return "on map datastores"
}

// ---- 7. idle cost of many nodes ----

// idleWindow is how long the nodes idle while CPU is measured (with
// Quick, idleWindowQuick), idleSettle how long they idle first after
// they agree on a leader: a node reports every second while its state
// changes, and the last nodes to see the new leader only just did, so
// a window that starts at once measures the end of the start (24 nodes:
// 218-295 messages per node per s, against ~130 once calm).
const (
	// idleRowsPerSize: agreement, term, CPU, CPU per node, RSS per
	// node, messages and bytes per node per s.
	idleRowsPerSize = 7
	idleWindow      = 10 * time.Second
	idleWindowQuick = 2 * time.Second
	idleSettle      = 15 * time.Second
)

// idle starts N whole Starling nodes on a mocknet for each size, waits
// until all agree on a cluster leader, lets them idle, and measures.
// Raw go-ds-crdt has no election: its column is empty.
func (r *runner) idle(ctx context.Context) ([]Row, []string) {
	var specs []spec
	for _, n := range r.sz.idle {
		specs = append(specs,
			spec{label: fmt.Sprintf("idle %d nodes (%s): leader agreed after", n, r.cfg.Net), kind: KindTime},
			spec{label: fmt.Sprintf("idle %d nodes (%s): term at agreement", n, r.cfg.Net), kind: KindCount},
			spec{label: fmt.Sprintf("idle %d nodes (%s): process CPU", n, r.cfg.Net), kind: KindPercent},
			spec{label: fmt.Sprintf("idle %d nodes (%s): CPU per node", n, r.cfg.Net), kind: KindPercent},
			spec{label: fmt.Sprintf("idle %d nodes (%s): RSS per node", n, r.cfg.Net), kind: KindBytes},
			spec{label: fmt.Sprintf("idle %d nodes (%s): messages per node per s", n, r.cfg.Net), kind: KindCount},
			spec{label: fmt.Sprintf("idle %d nodes (%s): bytes per node per s", n, r.cfg.Net), kind: KindBytes},
		)
	}
	window, settle := idleWindow, idleSettle
	if r.cfg.Quick {
		window, settle = idleWindowQuick, 0
	}
	rows := r.pair(ctx, specs, func(ctx context.Context, sys system) ([]Result, error) {
		var out []Result
		if sys.name != "starling" {
			for range specs {
				out = append(out, Result{Skipped: "no leader election"})
			}
			return out, nil
		}
		for _, n := range r.sz.idle {
			res, err := r.idleRun(ctx, sys, n, window)
			if err != nil {
				return nil, err
			}
			out = append(out, res...)
		}
		return out, nil
	})
	return rows, []string{fmt.Sprintf("idle: N whole Starling nodes (as in the mocknet rows, on %s, election preset %s) are opened one by one, each alone until all are open (a node alone for longer than the election warmup leads itself), then connected; \"leader agreed after\" is from the connection until every node names the same cluster leader, and the term is that leadership's. The nodes then settle for %s and idle for %s: process CPU is the whole process's user+system time over the window (getrusage; 100%% = one core of %d), CPU per node that / N, RSS per node the growth of VmRSS from before the first node started to the end of the window, / N; messages and bytes per node per s are what p2p's traffic counters (starling_p2p_messages_total, _bytes_total: gossip messages in and out, duplicates included, and gossipsub control RPCs) counted over the window, summed over the nodes, / N / window; the progress lines break them down by source", r.netName(), r.cfg.ElectionPreset, settle, window, runtime.NumCPU())}
}

// idleRun measures one size of the idle workload: agreement time, term,
// process CPU, CPU per node, RSS per node.
func (r *runner) idleRun(ctx context.Context, sys system, n int, window time.Duration) ([]Result, error) {
	dir, err := r.dir(fmt.Sprintf("%s-%d", sys.name, n))
	if err != nil {
		return nil, err
	}
	before := sampleMemory()
	sctx, cancel := r.setup(ctx)
	defer cancel()
	r.progress("%s: starting %d nodes on %s", sys.name, n, r.netName())
	t0 := time.Now()
	c0, err := sys.openSim(sctx, dir, n, 1)
	if err != nil {
		return nil, err
	}
	defer r.closeCluster(c0, sys.name)
	c, ok := c0.(*starlingCluster)
	if !ok {
		return nil, fmt.Errorf("bench: %s has no leader election", sys.name)
	}
	start := time.Now()
	r.progress("%s: %d nodes open and connected in %s; waiting for them to agree on a leader", sys.name, n, start.Sub(t0).Round(time.Millisecond))
	mctx, mcancel := r.measured(ctx)
	var l election.Leadership
	err = poll(mctx, 10*time.Millisecond, func() (bool, error) {
		var ok bool
		l, ok = c.agreedLeader()
		return ok, nil
	})
	mcancel()
	took := time.Since(start)
	res := make([]Result, idleRowsPerSize)
	switch {
	case isTimeout(ctx, err):
		res[0], res[1] = r.timedOut(0), Result{Skipped: "no agreement"}
		res[0].Note = "views when the budget ran out: " + c.leaderViews()
		r.progress("%s: %d nodes did not agree within %s: %s", sys.name, n, r.cfg.Budget, res[0].Note)
	case err != nil:
		return nil, err
	default:
		res[0], res[1] = Result{Value: took.Seconds()}, Result{Value: float64(l.Term)}
		r.progress("%s: %d nodes agree on %s (term %d) after %s", sys.name, n, l.Leader, l.Term, took.Round(time.Millisecond))
	}
	if !r.cfg.Quick {
		r.progress("%s: %d nodes settling for %s before the idle window", sys.name, n, idleSettle)
		select {
		case <-time.After(idleSettle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	cpu0, w0, tr0, opened0 := processCPU(), time.Now(), c.traffic(), c.opened.Load()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	secs := time.Since(w0).Seconds()
	cpu := (processCPU() - cpu0).Seconds() / secs * 100
	tr1 := c.traffic()
	res[2], res[3] = Result{Value: cpu}, Result{Value: cpu / float64(n)}
	var msgs, bytes float64
	var bySource []string
	for _, src := range slices.Sorted(maps.Keys(tr1)) {
		d := tr1[src].minus(tr0[src])
		msgs += float64(d.msgs)
		bytes += float64(d.bytes)
		if d.msgs > 0 || d.bytes > 0 {
			line := fmt.Sprintf("%s %.1f msgs %s", src, float64(d.msgs)/secs/float64(n), fmtBytes(float64(d.bytes)/secs/float64(n)))
			if d.droppedIn+d.droppedOut > 0 {
				line += fmt.Sprintf(" (dropped at full queues: %.1f in, not validated; %.1f out, not sent)",
					float64(d.droppedIn)/secs/float64(n), float64(d.droppedOut)/secs/float64(n))
			}
			bySource = append(bySource, line)
		}
	}
	res[5], res[6] = Result{Value: msgs / secs / float64(n)}, Result{Value: bytes / secs / float64(n)}
	if rss := vmRSS(); rss == 0 {
		res[4] = Result{Skipped: "no /proc"}
	} else {
		res[4] = Result{Value: delta(rss, before.rss) / float64(n)}
	}
	if after, ok := c.agreedLeader(); res[1].ok() && (!ok || after != l) {
		res[1].Note = fmt.Sprintf("leadership changed while idle: %s", c.leaderViews())
	}
	r.progress("%s: %d nodes idle for %s: process CPU %.0f%%, %.1f%% per node, RSS %s per node, %.0f messages and %s per node per s",
		sys.name, n, window, cpu, cpu/float64(n), fmtBytes(res[4].Value), res[5].Value, fmtBytes(res[6].Value))
	r.progress("%s: %d nodes idle, per node per s by source: %s", sys.name, n, strings.Join(bySource, "; "))
	r.progress("%s: %d nodes idle: %.2f connections opened per node per s (each counted on both ends; a settled cluster opens none)",
		sys.name, n, float64(c.opened.Load()-opened0)/secs/float64(n))
	return res, nil
}

// trafficCount is one source's traffic summed over a cluster's nodes.
// droppedIn counts received messages not validated for lack of room
// (gossipsub's validation queue), droppedOut messages not sent (a
// peer's outbound queue).
type trafficCount struct{ msgs, bytes, droppedIn, droppedOut uint64 }

func (a trafficCount) minus(b trafficCount) trafficCount {
	return trafficCount{a.msgs - b.msgs, a.bytes - b.bytes, a.droppedIn - b.droppedIn, a.droppedOut - b.droppedOut}
}

// traffic sums p2p's traffic counters (in and out) over the nodes, by
// source.
func (c *starlingCluster) traffic() map[string]trafficCount {
	out := make(map[string]trafficCount)
	for i := range c.Size() {
		for _, t := range c.node(i).P2P().Traffic() {
			s := out[t.Source]
			s.msgs += t.MsgsIn + t.MsgsOut
			s.bytes += t.BytesIn + t.BytesOut
			s.droppedIn += t.DroppedIn
			s.droppedOut += t.DroppedOut
			out[t.Source] = s
		}
	}
	return out
}
