package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Kind says what a row measures, which fixes its unit and which way is
// better.
type Kind string

// Row kinds.
const (
	// KindRate is operations per second; higher is better.
	KindRate Kind = "rate"
	// KindTime is a duration in seconds; lower is better.
	KindTime Kind = "time"
	// KindBytes is a size in bytes; lower is better.
	KindBytes Kind = "bytes"
	// KindFactor is a plain multiple (disk / live state); lower is
	// better.
	KindFactor Kind = "factor"
	// KindCount is a plain number (an election term); lower is better.
	KindCount Kind = "count"
	// KindPercent is a percentage (CPU time over wall time: 100 is one
	// core); lower is better.
	KindPercent Kind = "percent"
)

func (k Kind) higherBetter() bool { return k == KindRate }

// Result is one system's figure for one row.
type Result struct {
	// Value is in the row's unit: operations per second, seconds or
	// bytes. Meaningless when TimedOut, Err or Skipped is set.
	Value float64 `json:"value"`
	// TimedOut means the run was cut off at the budget; Done is the
	// fraction of the work done by then (0..1).
	TimedOut bool    `json:"timed_out,omitempty"`
	Done     float64 `json:"done,omitempty"`
	// Budget is the time budget the run was cut off at.
	Budget time.Duration `json:"budget,omitempty"`
	// Err is why the run failed.
	Err string `json:"error,omitempty"`
	// Skipped says why there is no figure (for example: the same run
	// timed out in an earlier row).
	Skipped string `json:"skipped,omitempty"`
	// Note qualifies the figure (printed in the notes).
	Note string `json:"note,omitempty"`
}

// ok reports whether r holds a figure.
func (r Result) ok() bool { return !r.TimedOut && r.Err == "" && r.Skipped == "" }

// partialRate reports whether r is a rate measured over the part of a
// run done before the budget ran out: still a figure.
func (r Result) partialRate(k Kind) bool {
	return k == KindRate && r.TimedOut && r.Err == "" && r.Skipped == "" && r.Value > 0
}

// figure reports whether r holds a figure for a row of kind k.
func (r Result) figure(k Kind) bool { return r.ok() || r.partialRate(k) }

// Target is a goal for Starling's figure.
type Target struct {
	// Below is true for "< Value", false for ">= Value".
	Below bool    `json:"below"`
	Value float64 `json:"value"`
}

// Met reports whether r meets the target.
func (t Target) Met(r Result) bool {
	if !r.ok() && !(r.TimedOut && !t.Below && r.Value > 0) {
		return false
	}
	if t.Below {
		return r.Value < t.Value
	}
	return r.Value >= t.Value
}

// Row is one line of the table.
type Row struct {
	// Workload names the figure ("heal after 10k writes on one side").
	Workload string `json:"workload"`
	// Group is the workload it belongs to (a name for --only).
	Group    string  `json:"group"`
	Kind     Kind    `json:"kind"`
	Starling Result  `json:"starling"`
	Raw      Result  `json:"raw"`
	Target   *Target `json:"target,omitempty"`
	// Note is a short remark printed in the table's notes.
	Note string `json:"note,omitempty"`
}

// Ratio is how many times better Starling is than raw go-ds-crdt: above 1
// Starling is better, below 1 it is worse. Bound is "" for an exact
// ratio, ">" or "<" when one side timed out so only a bound is known.
// ok is false when there is nothing to compare.
func (r Row) Ratio() (ratio float64, bound string, ok bool) {
	s, w := r.Starling, r.Raw
	switch {
	case s.figure(r.Kind) && w.figure(r.Kind):
		if s.Value == 0 || w.Value == 0 {
			return 0, "", false
		}
		if r.Kind.higherBetter() {
			return s.Value / w.Value, "", true
		}
		return w.Value / s.Value, "", true
	case s.ok() && w.TimedOut && r.Kind == KindTime && s.Value > 0:
		// Raw took longer than its budget.
		return w.Budget.Seconds() / s.Value, ">", true
	case w.ok() && s.TimedOut && r.Kind == KindTime && w.Value > 0:
		return w.Value / s.Budget.Seconds(), "<", true
	}
	return 0, "", false
}

// Header describes the machine and the run.
type Header struct {
	Cores      int           `json:"cores"`
	GOMAXPROCS int           `json:"gomaxprocs"`
	GoVersion  string        `json:"go_version"`
	OS         string        `json:"os"`
	Quick      bool          `json:"quick"`
	Budget     time.Duration `json:"budget"`
	// Preset is the election preset of the Starling nodes (lan, wan).
	Preset  string        `json:"election_preset,omitempty"`
	Started time.Time     `json:"started"`
	Took    time.Duration `json:"took"`
	// Raw names the raw go-ds-crdt version and setup.
	Raw string `json:"raw"`
	// FsyncP50 and FsyncP99 are the seconds an fsync takes after an
	// 8 KiB append in the work directory: the floor under every durable
	// write's latency (0: not measured).
	FsyncP50 float64 `json:"fsync_p50,omitempty"`
	FsyncP99 float64 `json:"fsync_p99,omitempty"`
}

// Report is a whole run: header, rows and notes.
type Report struct {
	Header Header `json:"header"`
	Rows   []Row  `json:"rows"`
	// Notes explain how figures were obtained (one per workload run).
	Notes []string `json:"notes,omitempty"`
}

// FormatValue renders one result in the unit of kind.
func FormatValue(kind Kind, r Result) string {
	switch {
	case r.Skipped != "":
		return "- (" + r.Skipped + ")"
	case r.Err != "":
		return "error (see notes)"
	case r.partialRate(kind):
		return fmt.Sprintf("%s/s (cut off at %s, %.0f%% done)", thousands(r.Value), fmtBudget(r.Budget), math.Floor(r.Done*100))
	case r.TimedOut:
		return fmt.Sprintf("> %s (timed out, %.0f%% done)", fmtBudget(r.Budget), math.Floor(r.Done*100))
	}
	switch kind {
	case KindRate:
		return thousands(r.Value) + "/s"
	case KindTime:
		return fmtSeconds(r.Value)
	case KindBytes:
		return fmtBytes(r.Value)
	case KindFactor:
		return fmtFactor(r.Value)
	case KindCount:
		return fmt.Sprintf("%.0f", r.Value)
	case KindPercent:
		return fmtPercent(r.Value)
	}
	return fmt.Sprint(r.Value)
}

// FormatRatio renders Row.Ratio: "12.3x", "> 40x", or "-".
func FormatRatio(r Row) string {
	v, bound, ok := r.Ratio()
	if !ok {
		return "-"
	}
	s := fmtFactor(v)
	if bound != "" {
		s = bound + " " + s
	}
	return s
}

// FormatTarget renders a target with whether Starling meets it.
func FormatTarget(r Row) string {
	if r.Target == nil {
		return ""
	}
	var s string
	if r.Target.Below {
		s = "< " + FormatValue(r.Kind, Result{Value: r.Target.Value})
	} else {
		s = ">= " + FormatValue(r.Kind, Result{Value: r.Target.Value})
	}
	if r.Target.Met(r.Starling) {
		return s + "  ok"
	}
	return s + "  MISSED"
}

// Format writes the report as a table: a header with the machine, the
// rows, then the notes.
func (rep *Report) Format(w io.Writer) error {
	h := rep.Header
	var b strings.Builder
	fmt.Fprintf(&b, "Starling vs raw go-ds-crdt: %d cores, GOMAXPROCS %d, %s %s", h.Cores, h.GOMAXPROCS, h.GoVersion, h.OS)
	if h.Quick {
		b.WriteString(", quick sizes (targets are set for the full sizes)")
	}
	fmt.Fprintf(&b, "\nbudget %s per run; ratio = how many times better Starling is (> 1: Starling better)\n", fmtBudget(h.Budget))
	if h.Preset != "" && h.Preset != "lan" {
		fmt.Fprintf(&b, "election preset of the Starling nodes: %s\n", h.Preset)
	}
	if h.FsyncP50 > 0 {
		fmt.Fprintf(&b, "disk: fsync after an 8 KiB append p50 %s, p99 %s (every durable write waits for one)\n", fmtSeconds(h.FsyncP50), fmtSeconds(h.FsyncP99))
	}
	if h.Raw != "" {
		fmt.Fprintf(&b, "raw: %s\n", h.Raw)
	}
	b.WriteString("\n")
	cols := []string{"workload", "starling", "raw go-ds-crdt", "ratio", "target (starling)"}
	cells := [][]string{cols}
	for _, r := range rep.Rows {
		cells = append(cells, []string{r.Workload, FormatValue(r.Kind, r.Starling), FormatValue(r.Kind, r.Raw), FormatRatio(r), FormatTarget(r)})
	}
	width := make([]int, len(cols))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(row []string) {
		for i, c := range row {
			if i > 0 {
				b.WriteString(" | ")
			}
			pad := width[i] - len([]rune(c))
			if i == 3 { // ratio: right-aligned
				b.WriteString(strings.Repeat(" ", pad) + c)
				continue
			}
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", pad))
			}
		}
		b.WriteString("\n")
	}
	line(cells[0])
	sep := make([]string, len(cols))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	b.WriteString(strings.Join(sep, "-|-") + "\n")
	for _, row := range cells[1:] {
		line(row)
	}
	var notes []string
	notes = append(notes, rep.Notes...)
	for _, r := range rep.Rows {
		if r.Note != "" {
			notes = append(notes, r.Workload+": "+r.Note)
		}
		for _, x := range []struct {
			who string
			res Result
		}{{"starling", r.Starling}, {"raw", r.Raw}} {
			if x.res.Err != "" {
				notes = append(notes, fmt.Sprintf("%s, %s: error: %s", r.Workload, x.who, x.res.Err))
			}
			if x.res.Note != "" {
				notes = append(notes, fmt.Sprintf("%s, %s: %s", r.Workload, x.who, x.res.Note))
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range notes {
			b.WriteString("  - " + n + "\n")
		}
	}
	fmt.Fprintf(&b, "\ntook %s\n", h.Took.Round(time.Second))
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtFactor renders a multiple with 2 or 3 significant digits: "2.41x",
// "12.3x", "3400x".
func fmtFactor(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0fx", v)
	case v >= 10:
		return fmt.Sprintf("%.1fx", v)
	}
	return fmt.Sprintf("%.2fx", v)
}

// fmtPercent renders a percentage with 2 or 3 significant digits:
// "0.42%", "3.1%", "142%".
func fmtPercent(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f%%", v)
	case v >= 10:
		return fmt.Sprintf("%.1f%%", v)
	}
	return fmt.Sprintf("%.2f%%", v)
}

func fmtBudget(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%.0fs", d.Seconds())
	}
	return d.String()
}

// fmtSeconds renders seconds with a unit that keeps 3 significant digits.
func fmtSeconds(s float64) string {
	switch {
	case s < 0.001:
		return fmt.Sprintf("%.0f µs", s*1e6)
	case s < 0.01:
		return fmt.Sprintf("%.2f ms", s*1e3)
	case s < 0.1:
		return fmt.Sprintf("%.1f ms", s*1e3)
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1e3)
	case s < 100:
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.0f s", s)
}

func fmtBytes(v float64) string {
	switch {
	case v < 1<<10:
		return fmt.Sprintf("%.0f B", v)
	case v < 1<<20:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	case v < 1<<30:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", v/(1<<30))
}

// thousands renders v rounded, with commas: 52630 -> "52,630".
func thousands(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
