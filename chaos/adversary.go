package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/chaos/adversary"
)

// adversaryNemesis runs a hostile peer (chaos/adversary, started as
// `starling chaos adversary`) in one host's network namespace, with the
// environment's network key, while the clients write: it floods heads,
// forges deltas, sends unreferenced blocks and junk, requests snapshots
// in a loop and reports a clock ten years ahead (issue #14). Before it
// starts, the nemesis measures a quiet baseline (adversaryBaseline) of
// the hosts' memory while the clients write; during the attack it samples
// every host's RSS; at heal, with the adversary still running, it waits
// until every write acknowledged so far shows on every host
// (adversaryVisibleBound); then it stops the adversary and records all
// of it (KindAdversary) for the adversary checker.
type adversaryNemesis struct{}

// EnvAdversaryArgs adds flags to the adversary's command line, to study
// one kind of attack alone (see `starling chaos adversary --help`).
const EnvAdversaryArgs = "STARLING_CHAOS_ADVERSARY_ARGS"

// KindAdversary is the history entry of an adversary fault's
// measurements; Ext holds an adversaryRecord.
const KindAdversary = "adversary"

// Bounds of the adversary nemesis and checker. Measured on this 2-core
// machine, 5 nodes, the entity workload at 100 operations/s (see the
// figures at each bound).
const (
	// adversaryBaseline is the quiet spell the nemesis measures before
	// it starts the adversary: about 300 operations, enough for a p99.
	adversaryBaseline = 3 * time.Second
	// adversaryVisibleBound bounds how long, at the end of the attack
	// and with the adversary still running, the writes acknowledged so
	// far take to show on every host. Measured: 0.2 s against the
	// snapshot loop alone; 0.9-7.3 s against the whole attack, growing
	// with its length (honest messages wait behind the adversary's in the
	// node's one receive queue: a weakness reported in #14), on this
	// machine at load 5-13. 15 s passes that, and still fails a node
	// that one unfetchable head stalls for the DAG syncer timeout (30 s)
	// or whose receive loop freezes.
	adversaryVisibleBound = 15 * time.Second
	// adversaryRSSBound bounds each node's RSS during the attack.
	// Measured: 66-87 MiB quiet; 109-143 MiB after 1-5 s of attack,
	// 178-179 MiB after 12 s (the park's 16 MiB, the queues, the
	// want-tracking of 130k random heads, Go's heap growth). 300 MiB is
	// about 4 times the quiet figure, and far below the gigabytes an
	// unbounded queue of parked heads reached before the byte cap.
	adversaryRSSBound = 300 << 20
	// adversaryLatencyFactor bounds the p99 of operation latency during
	// the attack against the quiet baseline's; adversaryLatencyFloor is
	// the least baseline it is applied to, so that a quiet p99 of 10 ms
	// does not make 60 ms (a scheduler hiccup on 2 shared cores) a
	// failure. Measured on this machine (2 cores shared with another
	// engineer's runs, load 5-13): quiet p99 48-230 ms, attack p99
	// 250-464 ms, ratios 1.7-6.0 (half the runs above 5): every node
	// spends CPU on the adversary's messages and the cores are saturated.
	// 10x passes that; a node whose writes wait behind the adversary (a
	// commit path frozen by a snapshot, a store held by a stalled merge)
	// shows the client's 2 s timeout, 20x or more.
	adversaryLatencyFactor = 10
	adversaryLatencyFloor  = 50 * time.Millisecond
	// adversaryMinSamples is the fewest operations a window must have for
	// its p99 to mean anything.
	adversaryMinSamples = 50
	// adversaryRefusedSlack is how much the share of refused operations
	// may grow during the attack: a node that believed the adversary's
	// clock would refuse every write (a fifth of them on 5 hosts).
	adversaryRefusedSlack = 0.02
	// adversaryMinAttack is the least the attack lasts: the runner's hold
	// (FaultMin 4 s) counts from before Inject, which spends
	// adversaryBaseline on the baseline, so heal waits for the rest.
	adversaryMinAttack = 5 * time.Second
	// adversaryPort is the adversary's libp2p port, beside its host's.
	adversaryPort = 4002
	// rssEvery is how often the nemesis samples the hosts' RSS.
	rssEvery = 200 * time.Millisecond
)

// adversaryRecord is what an adversary fault measured.
type adversaryRecord struct {
	Namespace   string           `json:"namespace"`     // host whose namespace it ran in
	QuietFrom   time.Time        `json:"quiet_from"`    // the baseline began
	AttackFrom  time.Time        `json:"attack_from"`   // the adversary started
	AttackTo    time.Time        `json:"attack_to"`     // the adversary was told to stop
	QuietRSS    map[string]int64 `json:"quiet_rss"`     // max RSS per host in the baseline, bytes
	AttackRSS   map[string]int64 `json:"attack_rss"`    // max RSS per host during the attack, bytes
	RSSBound    int64            `json:"rss_bound"`     // adversaryRSSBound
	VisibleNs   time.Duration    `json:"visible_ns"`    // writes acknowledged at the end showed everywhere after
	Visible     bool             `json:"visible"`       // ... within VisibleBound
	VisibleMax  time.Duration    `json:"visible_max"`   // adversaryVisibleBound
	Stats       adversary.Stats  `json:"stats"`         // what the adversary sent
	AdversaryRS int64            `json:"adversary_rss"` // the adversary's own max RSS
	// CompactSkipped is, per host, why a compaction round asked for
	// at the end of the attack did nothing ("" when it ran).
	CompactSkipped map[string]string `json:"compact_skipped,omitempty"`
	Error          string            `json:"error,omitempty"`
}

func (adversaryNemesis) Name() string { return "adversary" }
func (adversaryNemesis) Describe() string {
	return "a hostile peer with the network key floods heads, forges deltas, sends unreferenced blocks and junk, requests snapshots in a loop and reports a clock 10 years ahead"
}

func (adversaryNemesis) Available(ctx context.Context, e *Env) error {
	if e.binary == "" {
		return errors.New("no binary to run the adversary with")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, e.binary, "chaos", "adversary", "--help").CombinedOutput(); err != nil {
		return fmt.Errorf("this build has no `starling chaos adversary`: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func (adversaryNemesis) Inject(ctx context.Context, e *Env, rng *rand.Rand) (Fault, error) {
	if err := e.Exclusive("adversary", "adversary"); err != nil {
		return nil, err
	}
	rec := &adversaryRecord{QuietFrom: time.Now(), RSSBound: adversaryRSSBound, VisibleMax: adversaryVisibleBound,
		QuietRSS: map[string]int64{}, AttackRSS: map[string]int64{}}
	// The baseline: the same workload, no adversary.
	quiet := sampleRSS(e.hosts, rec.QuietRSS, nil)
	ok := sleepCtx(ctx, adversaryBaseline)
	quiet.stop()
	if !ok {
		e.ReleaseExclusive("adversary")
		return nil, ctx.Err()
	}
	var peers []string
	for _, h := range e.hosts {
		if a := h.PeerAddr(); a != "" {
			peers = append(peers, "--peer", a)
		}
	}
	ns := e.hosts[rng.IntN(len(e.hosts))]
	rec.Namespace = ns.name
	args := append([]string{"--log-level", "warn", "chaos", "adversary", "--env", chaosEnv, "--psk-file", e.pskFile,
		"--listen", fmt.Sprintf("/ip4/%s/tcp/%d", ns.addr, adversaryPort), "--seed", strconv.FormatUint(rng.Uint64(), 10)}, peers...)
	// A diagnostic knob: extra flags for the adversary (one kind of
	// attack alone: "--heads-rate 0 --forged-rate 0 ...").
	args = append(args, strings.Fields(os.Getenv(EnvAdversaryArgs))...)
	logPath := filepath.Join(e.dir, "adversary.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.ReleaseExclusive("adversary")
		return nil, err
	}
	fmt.Fprintf(lf, "=== chaos %s: start adversary in %s's namespace %v\n", time.Now().Format(time.RFC3339Nano), ns.name, args)
	var stdout bytes.Buffer
	cmd := e.lab.Command(ns.index, e.binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, lf
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		e.ReleaseExclusive("adversary")
		return nil, fmt.Errorf("start the adversary: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	rec.AttackFrom = time.Now()
	var advRSS sync.Map
	attack := sampleRSS(e.hosts, rec.AttackRSS, func() (int, *sync.Map) { return cmd.Process.Pid, &advRSS })
	desc := fmt.Sprintf("adversary in %s's namespace (%s:%d) attacking %s", ns.name, ns.addr, adversaryPort, hostNames(e.hosts))
	return &fault{desc: desc, heal: func(ctx context.Context) error {
		defer e.ReleaseExclusive("adversary")
		defer lf.Close()
		sleepCtx(ctx, time.Until(rec.AttackFrom.Add(adversaryMinAttack)))
		// With the adversary still running: do honest writes still reach
		// every host?
		due := time.Now()
		rec.VisibleNs, rec.Visible = e.visible(ctx, due, adversaryVisibleBound)
		rec.AttackTo = time.Now()
		rec.CompactSkipped = compactNow(ctx, e.hosts)
		attack.stop()
		if v, ok := advRSS.Load("max"); ok {
			rec.AdversaryRS = v.(int64)
		}
		var errs []error
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				errs = append(errs, fmt.Errorf("the adversary exited with %v (see adversary.log): %s", err, tail(logPath, 300)))
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			errs = append(errs, errors.New("the adversary did not stop within 10s of SIGTERM: killed"))
		}
		if err := json.Unmarshal(lastLine(stdout.Bytes()), &rec.Stats); err != nil {
			errs = append(errs, fmt.Errorf("the adversary's stats: %v (output %q)", err, stdout.String()))
		} else if st := rec.Stats; st.ConnectedMax == 0 || st.HeadsFloods+st.ForgedDeltas+st.UnrefBlocks+st.Junk+st.SnapshotsAsked+st.ClockReports == 0 {
			// An attack that reached nobody proves nothing: say so.
			errs = append(errs, fmt.Errorf("the adversary reached no node (connected to %d at most, stats %s): the fault did nothing",
				st.ConnectedMax, adversary.MarshalStats(st)))
		}
		err := errors.Join(errs...)
		if err != nil {
			rec.Error = err.Error()
		}
		ext, _ := json.Marshal(rec)
		e.record(Op{Process: NemesisProcess, Kind: KindAdversary, Key: "adversary", Host: ns.name, Result: ResultInfo,
			Start: rec.AttackFrom, End: rec.AttackTo, Value: desc, Ext: ext})
		e.log.Info("adversary stopped", "visible_after", rec.VisibleNs.Round(time.Millisecond), "visible", rec.Visible,
			"stats", string(adversary.MarshalStats(rec.Stats)))
		return err
	}}, nil
}

// compactNow asks every host for a compaction round and returns why each
// did nothing ("" when it ran; the error when the request failed).
func compactNow(ctx context.Context, hosts []*Host) map[string]string {
	out := map[string]string{}
	for _, h := range hosts {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		code, body, err := h.Request(rctx, http.MethodPost, "/v1/store/compact", nil)
		cancel()
		var r api.CompactResult
		switch {
		case err != nil:
			out[h.name] = "request failed: " + err.Error()
		case code != http.StatusOK:
			out[h.name] = fmt.Sprintf("HTTP %d: %s", code, bytes.TrimSpace(body))
		case json.Unmarshal(body, &r) != nil:
			out[h.name] = "unreadable answer"
		default:
			out[h.name] = r.Skipped
		}
	}
	return out
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// rssSampler samples the hosts' RSS every rssEvery until stop.
type rssSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func (s *rssSampler) stop() {
	close(s.done)
	s.wg.Wait()
}

// sampleRSS keeps in max the greatest RSS seen per host (and, if extra
// is set, of one more process, under "max" in its map) until stop.
func sampleRSS(hosts []*Host, max map[string]int64, extra func() (int, *sync.Map)) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	s.wg.Go(func() {
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		for {
			for _, h := range hosts {
				if pid := h.Pid(); pid != 0 {
					if v, err := readRSS(pid); err == nil && v > max[h.name] {
						max[h.name] = v
					}
				}
			}
			if extra != nil {
				pid, m := extra()
				if v, err := readRSS(pid); err == nil {
					if old, ok := m.Load("max"); !ok || v > old.(int64) {
						m.Store("max", v)
					}
				}
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	})
	return s
}

// readRSS reads VmRSS of pid from /proc, in bytes.
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// adversaryChecker judges the adversary faults of a scenario (none: it
// passes and says nothing): during each attack, every write acknowledged
// showed on every host within adversaryVisibleBound; no host's RSS went
// over adversaryRSSBound; the p99 of operation latency stayed within
// adversaryLatencyFactor of the quiet baseline's (at least
// adversaryLatencyFloor); and the share of failed operations grew by at
// most adversaryFailSlack. Lost, phantom and divergent values are the
// model's and the digest checker's, as in every scenario.
type adversaryChecker struct{}

func newAdversaryChecker(ModelConfig) (Checker, error) { return adversaryChecker{}, nil }

func (adversaryChecker) Name() string { return "adversary" }

func (adversaryChecker) Check(in CheckInput) Verdict {
	v := Verdict{Checker: "adversary", OK: true, Counts: map[string]int{}, Durations: map[string][]time.Duration{}}
	injects := 0
	var recs []adversaryRecord
	for _, o := range in.History {
		if o.Process != NemesisProcess || o.Key != "adversary" {
			continue
		}
		switch o.Kind {
		case KindInject:
			if o.Error == "" {
				injects++
			}
		case KindAdversary:
			var r adversaryRecord
			if err := json.Unmarshal(o.Ext, &r); err != nil {
				v.problem("op %d: unreadable adversary record: %v", o.Index, err)
				continue
			}
			recs = append(recs, r)
		}
	}
	if injects > len(recs) {
		v.problem("%d adversary faults injected, %d measured: an attack went unmeasured", injects, len(recs))
	}
	for i, r := range recs {
		judgeAdversary(&v, i+1, r, in.History)
	}
	v.OK = len(v.Problems) == 0
	return v
}

// judgeAdversary adds attack k's figures and problems to v.
func judgeAdversary(v *Verdict, k int, r adversaryRecord, hist []Op) {
	v.Counts["attacks"]++
	if r.Error != "" {
		v.problem("attack %d: %s", k, r.Error)
	}
	v.Durations["adv-visible"] = append(v.Durations["adv-visible"], r.VisibleNs)
	if !r.Visible {
		v.problem("attack %d: writes acknowledged during it did not show on every host within %v of its end (the adversary still running)", k, r.VisibleMax)
	}
	for _, h := range slices.Sorted(maps.Keys(r.AttackRSS)) {
		rss := r.AttackRSS[h]
		v.Counts["adv-rss-max-mib"] = max(v.Counts["adv-rss-max-mib"], int(rss>>20))
		if rss > r.RSSBound {
			v.problem("attack %d: %s's RSS reached %d MiB (quiet: %d MiB), over the bound of %d MiB", k, h, rss>>20, r.QuietRSS[h]>>20, r.RSSBound>>20)
		}
	}
	// How many nodes disconnected and refused it (p2p's misbehaviour
	// ban: its junk and unreferenced blocks earn points).
	v.Counts["adv-disconnected-by"] += max(0, r.Stats.ConnectedMax-r.Stats.Connected)
	// A figure, not a failure: a member that does not report usable
	// stable heads holds compaction until it is evicted
	// (--compact-evict-after, 15 s in the suite; longer than an attack).
	for _, why := range r.CompactSkipped {
		if why != "" {
			v.Counts["adv-compact-skipped"]++
		}
	}
	for _, rss := range r.QuietRSS {
		v.Counts["quiet-rss-max-mib"] = max(v.Counts["quiet-rss-max-mib"], int(rss>>20))
	}
	quiet, attack := windowLatencies(hist, r.QuietFrom, r.AttackFrom), windowLatencies(hist, r.AttackFrom, r.AttackTo)
	if len(quiet.lat) < adversaryMinSamples || len(attack.lat) < adversaryMinSamples {
		v.problem("attack %d: %d quiet and %d attack operations, fewer than %d: latency not judged", k, len(quiet.lat), len(attack.lat), adversaryMinSamples)
		return
	}
	qp, ap := Percentile(quiet.lat, 99), Percentile(attack.lat, 99)
	v.Durations["quiet-p99"] = append(v.Durations["quiet-p99"], qp)
	v.Durations["attack-p99"] = append(v.Durations["attack-p99"], ap)
	if limit := adversaryLatencyFactor * max(qp, adversaryLatencyFloor); ap > limit {
		v.problem("attack %d: operation p99 %v during the attack (%d operations), over %dx the quiet p99 %v (%d operations, floor %v)",
			k, ap.Round(time.Millisecond), len(attack.lat), adversaryLatencyFactor, qp.Round(time.Millisecond), len(quiet.lat), adversaryLatencyFloor)
	}
	qf, af := quiet.refusedShare(), attack.refusedShare()
	if af > qf+adversaryRefusedSlack {
		v.problem("attack %d: %.1f%% of operations refused or timed out during the attack, %.1f%% before it", k, 100*af, 100*qf)
	}
}

type window struct {
	lat     []time.Duration
	refused int
}

func (w window) refusedShare() float64 {
	if len(w.lat) == 0 {
		return 0
	}
	return float64(w.refused) / float64(len(w.lat))
}

// windowLatencies collects the latency of the client operations that
// started in [from, to), whatever their outcome (a timeout counts with
// its full wait), and counts the refused ones: every failure but the
// workload's own (HTTP 404, the entity was deleted; 409, a move would
// close a cycle), which happen at the same rate with or without an
// adversary. The history keeps only the error's text, hence the prefix.
func windowLatencies(hist []Op, from, to time.Time) window {
	var w window
	for _, o := range hist {
		if o.Process == NemesisProcess || o.Start.Before(from) || !o.Start.Before(to) {
			continue
		}
		w.lat = append(w.lat, o.End.Sub(o.Start))
		if o.Result != ResultOK && !strings.HasPrefix(o.Error, "HTTP 404") && !strings.HasPrefix(o.Error, "HTTP 409") {
			w.refused++
		}
	}
	return w
}

var _ Checker = adversaryChecker{}
