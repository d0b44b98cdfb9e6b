package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a Run.
type Report struct {
	Seed     uint64            `json:"seed"`
	Started  time.Time         `json:"started"`
	Duration time.Duration     `json:"duration_ns"`
	Nodes    int               `json:"nodes"`
	Model    string            `json:"model"`
	Results  []*ScenarioResult `json:"results"`
	// Artifacts is the folder of this run's kept artifacts ("" if none).
	Artifacts string `json:"artifacts,omitempty"`
	// Replay is the command that runs the same schedule again.
	Replay string `json:"replay"`
}

// OK reports whether no scenario found a problem (skipped ones do not
// count) and at least one ran.
func (r *Report) OK() bool {
	ran := 0
	for _, s := range r.Results {
		if s.Skipped != "" {
			continue
		}
		ran++
		if !s.OK() {
			return false
		}
	}
	return ran > 0
}

// Failures names each scenario that failed with what failed first (the
// first error, or each failing checker's first problem) and its replay
// line: one line each, for a test's failure message, which is what a CI
// log's excerpt shows when the report above it is cut off.
func (r *Report) Failures() []string {
	var out []string
	for _, s := range r.Results {
		if s.OK() {
			continue
		}
		var what []string
		if len(s.Errors) > 0 {
			what = append(what, s.Errors[0])
		}
		for _, v := range s.Verdicts {
			switch {
			case v.OK:
			case len(v.Problems) > 0:
				what = append(what, v.Checker+": "+v.Problems[0])
			default:
				what = append(what, v.Checker+" failed")
			}
		}
		if len(what) == 0 {
			what = append(what, "no checker ran")
		}
		out = append(out, fmt.Sprintf("%s: %s (replay: %s)", s.Scenario, strings.Join(what, "; "), s.Replay))
	}
	return out
}

// ScenarioResult is what one scenario did and found.
type ScenarioResult struct {
	Scenario string `json:"scenario"`
	// Seed is the scenario's own seed (from the run's seed and its name).
	Seed   uint64 `json:"seed"`
	Rounds int    `json:"rounds"`
	// Replay is the command that runs this scenario alone again.
	Replay string `json:"replay"`
	// Skipped says why the scenario did not run ("" if it ran).
	Skipped string `json:"skipped,omitempty"`
	// Faults describe each injected fault; FaultCount counts them.
	Faults     []string `json:"faults,omitempty"`
	FaultCount int      `json:"fault_count"`
	// Client operations by outcome.
	Ops     int `json:"ops"`
	Acked   int `json:"acked"`
	Failed  int `json:"failed"`
	Unknown int `json:"unknown"`
	// Convergence holds, for each heal, the time until every host showed
	// every operation acknowledged before it; ConvergeTimeouts counts the
	// heals that did not converge within ConvergeTimeout.
	Convergence      []time.Duration `json:"convergence_ns,omitempty"`
	ConvergeTimeouts int             `json:"converge_timeouts,omitempty"`
	// FinalWait is the wait after the workload stopped until all hosts
	// were equal and complete.
	FinalWait      time.Duration `json:"final_wait_ns"`
	FinalConverged bool          `json:"final_converged"`
	Verdicts       []Verdict     `json:"verdicts,omitempty"`
	// Errors are failures of the harness or of a fault (a node that did
	// not restart).
	Errors    []string      `json:"errors,omitempty"`
	Duration  time.Duration `json:"duration_ns"`
	Artifacts string        `json:"artifacts,omitempty"`
}

// OK reports whether the scenario ran (or was skipped) with every
// checker satisfied and no error.
func (s *ScenarioResult) OK() bool {
	if s.Skipped != "" {
		return true
	}
	if len(s.Errors) > 0 || len(s.Verdicts) == 0 {
		return false
	}
	for _, v := range s.Verdicts {
		if !v.OK {
			return false
		}
	}
	return true
}

// Count sums a figure over the verdicts ("lost", "divergent", ...).
func (s *ScenarioResult) Count(name string) int {
	n := 0
	for _, v := range s.Verdicts {
		n += v.Counts[name]
	}
	return n
}

// Percentile returns the p-th percentile (0..100, nearest rank) of ds,
// or 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s)) + 0.9999999)
	return s[min(max(rank, 1), len(s))-1]
}

// tableCounts are the figures with a column of their own, always
// shown; any other figure a checker reports (an election checker's
// "leaders", say) gets a column too when some scenario has it, except
// noteCounts, which the RESULT column mentions.
var (
	tableCounts = []string{"lost", "phantom", "divergent"}
	noteCounts  = map[string]bool{"forfeited": true, "crashed": true, "leader-faults": true, "cycles": true}
	// maxCounts are shown as their maximum in the total row, not their
	// sum ("leaders": one per component is right in every scenario).
	maxCounts = map[string]bool{"leaders": true}
)

// Durations gathers a measured time ("failover", "leader-heal") over
// the verdicts.
func (s *ScenarioResult) Durations(name string) []time.Duration {
	var out []time.Duration
	for _, v := range s.Verdicts {
		out = append(out, v.Durations[name]...)
	}
	return out
}

// columns returns the count columns of the table.
func (r *Report) columns() []string {
	cols := slices.Clone(tableCounts)
	extra := map[string]bool{}
	for _, s := range r.Results {
		for _, v := range s.Verdicts {
			for k := range v.Counts {
				if !slices.Contains(tableCounts, k) && !noteCounts[k] {
					extra[k] = true
				}
			}
		}
	}
	return append(cols, sortedKeys(extra)...)
}

// WriteTable prints one row per scenario and a total.
func (r *Report) WriteTable(w io.Writer) {
	cols := r.columns()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"SCENARIO", "FAULTS", "ACKED"}
	for _, c := range cols {
		head = append(head, strings.ToUpper(c))
	}
	fmt.Fprintln(tw, strings.Join(append(head, "CONV P50", "CONV P99", "TIME", "RESULT"), "\t"))
	var all []time.Duration
	var faults, acked, ran, failed, skipped int
	sums := map[string]int{}
	for _, s := range r.Results {
		if s.Skipped != "" {
			skipped++
			fmt.Fprintf(tw, "%s%sskipped: %s\n", s.Scenario, strings.Repeat("\t-", len(cols)+5)+"\t", s.Skipped)
			continue
		}
		ran++
		all = append(all, s.Convergence...)
		faults += s.FaultCount
		acked += s.Acked
		row := []string{s.Scenario, fmt.Sprint(s.FaultCount), fmt.Sprint(s.Acked)}
		for _, c := range cols {
			if maxCounts[c] {
				sums[c] = max(sums[c], s.Count(c))
			} else {
				sums[c] += s.Count(c)
			}
			row = append(row, fmt.Sprint(s.Count(c)))
		}
		row = append(row, fmtDur(Percentile(s.Convergence, 50)), fmtDur(Percentile(s.Convergence, 99)),
			fmtDur(s.Duration.Round(time.Second)), s.resultText())
		if !s.OK() {
			failed++
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	row := []string{"all", fmt.Sprint(faults), fmt.Sprint(acked)}
	for _, c := range cols {
		row = append(row, fmt.Sprint(sums[c]))
	}
	row = append(row, fmtDur(Percentile(all, 50)), fmtDur(Percentile(all, 99)), fmtDur(r.Duration.Round(time.Second)),
		fmt.Sprintf("%d ran, %d failed, %d skipped", ran, failed, skipped))
	fmt.Fprintln(tw, strings.Join(row, "\t"))
	_ = tw.Flush()
}

func (s *ScenarioResult) resultText() string {
	if s.OK() {
		var notes []string
		if n := s.Count("forfeited"); n > 0 {
			notes = append(notes, fmt.Sprintf("%d forfeited", n))
		}
		if s.ConvergeTimeouts > 0 {
			notes = append(notes, fmt.Sprintf("%d slow heals", s.ConvergeTimeouts))
		}
		if len(notes) > 0 {
			return "ok (" + strings.Join(notes, ", ") + ")"
		}
		return "ok"
	}
	var why []string
	for _, v := range s.Verdicts {
		if !v.OK {
			why = append(why, v.Checker)
		}
	}
	if len(s.Errors) > 0 {
		why = append(why, fmt.Sprintf("%d errors", len(s.Errors)))
	}
	return "FAIL: " + strings.Join(why, ", ")
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// WriteNemesisTable prints, per nemesis, the convergence times of every
// heal of a scenario that used it (alone or combined).
func (r *Report) WriteNemesisTable(w io.Writer) {
	by := map[string][]time.Duration{}
	for _, s := range r.Results {
		if s.Skipped != "" {
			continue
		}
		name := s.Scenario
		if _, after, ok := strings.Cut(name, ":"); ok { // "soak3:loss+kill"
			name = after
		}
		for n := range strings.SplitSeq(name, "+") {
			by[n] = append(by[n], s.Convergence...)
		}
	}
	if len(by) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NEMESIS	HEALS	CONV P50	CONV P99	MAX")
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ds := by[n]
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", n, len(ds), fmtDur(Percentile(ds, 50)), fmtDur(Percentile(ds, 99)), fmtDur(Percentile(ds, 100)))
	}
	_ = tw.Flush()
}

// WriteElectionTable prints, per scenario that measured them, the
// election's failover times (a leader lost until a new one agreed), its
// false failovers (a live, reachable leader taken for failed) and heal
// times (a heal until one leader agreed).
func (r *Report) WriteElectionTable(w io.Writer) {
	var rows []string
	var allF, allH []time.Duration
	falses := 0
	for _, s := range r.Results {
		if s.Skipped != "" {
			continue
		}
		f, h := s.Durations("failover"), s.Durations("leader-heal")
		if len(f) == 0 && len(h) == 0 {
			continue
		}
		allF, allH = append(allF, f...), append(allH, h...)
		ff := s.Count("false-failovers")
		falses += ff
		rows = append(rows, fmt.Sprintf("%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s", s.Scenario, len(f), fmtDur(Percentile(f, 50)), fmtDur(Percentile(f, 100)),
			ff, len(h), fmtDur(Percentile(h, 50)), fmtDur(Percentile(h, 100))))
	}
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ELECTION\tFAILOVERS\tFAILOVER P50\tFAILOVER MAX\tFALSE\tHEALS\tHEAL P50\tHEAL MAX")
	for _, row := range rows {
		fmt.Fprintln(tw, row)
	}
	fmt.Fprintf(tw, "all\t%d\t%s\t%s\t%d\t%d\t%s\t%s\n", len(allF), fmtDur(Percentile(allF, 50)), fmtDur(Percentile(allF, 100)),
		falses, len(allH), fmtDur(Percentile(allH, 50)), fmtDur(Percentile(allH, 100)))
	_ = tw.Flush()
}

// String is the full text report: the table, then per scenario the
// faults, problems and errors, then the seed and how to replay.
func (r *Report) String() string {
	var b strings.Builder
	r.WriteTable(&b)
	b.WriteString("\n")
	r.WriteNemesisTable(&b)
	var et strings.Builder
	r.WriteElectionTable(&et)
	if et.Len() > 0 {
		b.WriteString("\n")
		b.WriteString(et.String())
	}
	for _, s := range r.Results {
		if s.Skipped != "" {
			continue
		}
		b.WriteString("\n")
		s.writeDetails(&b)
	}
	fmt.Fprintf(&b, "\nseed %d, %d nodes, model %s, %s\nreplay: %s\n", r.Seed, r.Nodes, r.Model, r.Duration.Round(time.Second), r.Replay)
	if r.Artifacts != "" {
		fmt.Fprintf(&b, "artifacts: %s\n", r.Artifacts)
	}
	return b.String()
}

func (s *ScenarioResult) writeDetails(w io.Writer) {
	fmt.Fprintf(w, "%s (seed %d): %d ops, %d acknowledged, %d failed, %d unknown; final wait %s (converged %v)\n",
		s.Scenario, s.Seed, s.Ops, s.Acked, s.Failed, s.Unknown, fmtDur(s.FinalWait), s.FinalConverged)
	for _, f := range s.Faults {
		fmt.Fprintf(w, "  fault: %s\n", f)
	}
	if len(s.Convergence) > 0 {
		var cs []string
		for _, d := range s.Convergence {
			cs = append(cs, fmtDur(d))
		}
		fmt.Fprintf(w, "  convergence after each heal: %s\n", strings.Join(cs, " "))
	}
	for _, v := range s.Verdicts {
		if len(v.Counts) > 0 {
			keys := make([]string, 0, len(v.Counts))
			for k := range v.Counts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, fmt.Sprintf("%s=%d", k, v.Counts[k]))
			}
			status := "ok"
			if !v.OK {
				status = "FAIL"
			}
			fmt.Fprintf(w, "  %s %s: %s\n", v.Checker, status, strings.Join(kv, " "))
		}
		for _, name := range sortedKeys(v.Durations) {
			var ds []string
			for _, d := range v.Durations[name] {
				ds = append(ds, fmtDur(d))
			}
			if len(ds) > 0 {
				fmt.Fprintf(w, "    %s: %s\n", name, strings.Join(ds, " "))
			}
		}
		for _, p := range v.Problems {
			fmt.Fprintf(w, "    %s\n", p)
		}
	}
	for _, e := range s.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	if s.Artifacts != "" {
		fmt.Fprintf(w, "  artifacts: %s\n", s.Artifacts)
	}
	if !s.OK() && s.Replay != "" {
		fmt.Fprintf(w, "  replay: %s\n", s.Replay)
	}
}

// keepArtifacts copies the scenario's logs, statuses and history to
// ArtifactsDir/<run start>/<scenario>/ with a report.
func (s *scenarioRun) keepArtifacts() (string, error) {
	r := s.r
	if r.artifactsRoot == "" {
		root, err := filepath.Abs(filepath.Join(r.cfg.ArtifactsDir, r.started.Format("20060102-150405")))
		if err != nil {
			return "", err
		}
		r.artifactsRoot = root
	}
	dst := filepath.Join(r.artifactsRoot, filepath.Base(s.dir))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // data dirs
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return "", err
		}
	}
	s.res.Artifacts = dst
	var b strings.Builder
	s.res.writeDetails(&b)
	fmt.Fprintf(&b, "\nreplay this scenario: %s\nreplay the run: %s\n", s.res.Replay, replayCommand(r.cfg))
	fmt.Fprintf(&b, "files: history.jsonl (one JSON object per operation and nemesis event), nK.log (node output, with the harness's start/exit marks), nK.status.json (/v1/status at the end)\n")
	if err := os.WriteFile(filepath.Join(dst, "report.txt"), []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	js, _ := json.MarshalIndent(s.res, "", "  ")
	return dst, os.WriteFile(filepath.Join(dst, "result.json"), js, 0o644)
}
