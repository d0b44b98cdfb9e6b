package chaos

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// adversaryHistory builds a history with a quiet window and an attack
// window of n operations each, the given latencies, and the record.
func adversaryHistory(t *testing.T, n int, quietLat, attackLat time.Duration, attackErr string, rec adversaryRecord) []Op {
	t.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec.QuietFrom, rec.AttackFrom, rec.AttackTo = t0, t0.Add(3*time.Second), t0.Add(8*time.Second)
	var ops []Op
	add := func(o Op) { o.Index = len(ops); ops = append(ops, o) }
	add(Op{Process: NemesisProcess, Kind: KindInject, Key: "adversary", Start: rec.AttackFrom, End: rec.AttackFrom})
	for i := range n {
		s := rec.QuietFrom.Add(time.Duration(i) * 3 * time.Second / time.Duration(n))
		add(Op{Process: "n1-c0-g0", Host: "n1", Kind: "set", Result: ResultOK, Start: s, End: s.Add(quietLat)})
	}
	for i := range n {
		s := rec.AttackFrom.Add(time.Duration(i) * 5 * time.Second / time.Duration(n))
		o := Op{Process: "n2-c0-g0", Host: "n2", Kind: "set", Result: ResultOK, Start: s, End: s.Add(attackLat)}
		if attackErr != "" && i%4 == 0 {
			o.Result, o.Error = ResultFail, attackErr
		}
		add(o)
	}
	ext, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	add(Op{Process: NemesisProcess, Kind: KindAdversary, Key: "adversary", Result: ResultInfo, Start: rec.AttackFrom, End: rec.AttackTo, Ext: ext})
	add(Op{Process: NemesisProcess, Kind: KindHeal, Key: "adversary", Start: rec.AttackTo, End: rec.AttackTo})
	return ops
}

func goodRecord() adversaryRecord {
	return adversaryRecord{
		Namespace: "n3", RSSBound: adversaryRSSBound, VisibleMax: adversaryVisibleBound,
		QuietRSS:  map[string]int64{"n1": 70 << 20, "n2": 72 << 20},
		AttackRSS: map[string]int64{"n1": 120 << 20, "n2": 130 << 20},
		VisibleNs: 800 * time.Millisecond, Visible: true,
	}
}

// TestAdversaryChecker is the checker's control: each bound, broken on
// its own in a synthetic history, fails the verdict with its reason,
// and a history within every bound passes.
func TestAdversaryChecker(t *testing.T) {
	c, err := newAdversaryChecker(ModelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		n            int
		quiet, atk   time.Duration
		atkErr       string
		edit         func(r *adversaryRecord)
		wantProblem  string // "" for OK
		dropMeasured bool
	}{
		{name: "within bounds", n: 200, quiet: 30 * time.Millisecond, atk: 120 * time.Millisecond},
		{name: "workload failures are not refusals", n: 200, quiet: 30 * time.Millisecond, atk: 40 * time.Millisecond,
			atkErr: `HTTP 404: {"error":"entity: no such entity"}`},
		{name: "small baseline uses the floor", n: 200, quiet: 2 * time.Millisecond, atk: 400 * time.Millisecond},
		{name: "slow writes", n: 200, quiet: 30 * time.Millisecond, atk: 900 * time.Millisecond, wantProblem: "over 10x the quiet p99"},
		{name: "frozen writes", n: 200, quiet: 30 * time.Millisecond, atk: 2 * time.Second, wantProblem: "over 10x the quiet p99"},
		{name: "refused writes", n: 200, quiet: 30 * time.Millisecond, atk: 30 * time.Millisecond,
			atkErr: `HTTP 503: {"error":"entity: this node's clock disagrees with the cluster"}`, wantProblem: "refused or timed out"},
		{name: "not visible", n: 200, quiet: 30 * time.Millisecond, atk: 30 * time.Millisecond,
			edit: func(r *adversaryRecord) { r.Visible, r.VisibleNs = false, 10*time.Second }, wantProblem: "did not show on every host"},
		{name: "memory", n: 200, quiet: 30 * time.Millisecond, atk: 30 * time.Millisecond,
			edit: func(r *adversaryRecord) { r.AttackRSS["n2"] = 2 << 30 }, wantProblem: "n2's RSS reached 2048 MiB"},
		{name: "attack did nothing", n: 200, quiet: 30 * time.Millisecond, atk: 30 * time.Millisecond,
			edit: func(r *adversaryRecord) { r.Error = "the adversary reached no node" }, wantProblem: "reached no node"},
		{name: "too few operations", n: 20, quiet: 30 * time.Millisecond, atk: 30 * time.Millisecond, wantProblem: "latency not judged"},
		{name: "unmeasured attack", n: 200, quiet: 30 * time.Millisecond, atk: 30 * time.Millisecond, dropMeasured: true, wantProblem: "went unmeasured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := goodRecord()
			if tc.edit != nil {
				tc.edit(&rec)
			}
			hist := adversaryHistory(t, tc.n, tc.quiet, tc.atk, tc.atkErr, rec)
			if tc.dropMeasured {
				var kept []Op
				for _, o := range hist {
					if o.Kind != KindAdversary {
						kept = append(kept, o)
					}
				}
				hist = kept
			}
			v := c.Check(CheckInput{History: hist})
			if tc.wantProblem == "" {
				if !v.OK {
					t.Fatalf("verdict failed: %v", v.Problems)
				}
				if !tc.dropMeasured && v.Counts["attacks"] != 1 {
					t.Errorf("attacks = %d, want 1", v.Counts["attacks"])
				}
				return
			}
			if v.OK {
				t.Fatalf("verdict OK, want a problem containing %q", tc.wantProblem)
			}
			if !strings.Contains(strings.Join(v.Problems, "\n"), tc.wantProblem) {
				t.Errorf("problems %q: want one containing %q", v.Problems, tc.wantProblem)
			}
		})
	}
}

// TestAdversaryCheckerWithoutAttack: a scenario without the adversary
// passes and reports no figures.
func TestAdversaryCheckerWithoutAttack(t *testing.T) {
	v := adversaryChecker{}.Check(CheckInput{History: []Op{{Process: "n1-c0-g0", Kind: "set", Result: ResultOK}}})
	if !v.OK || v.Counts["attacks"] != 0 {
		t.Fatalf("verdict %+v: want OK with no attack", v)
	}
}
