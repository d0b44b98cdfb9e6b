package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFormatValue(t *testing.T) {
	budget := 60 * time.Second
	tests := []struct {
		kind Kind
		r    Result
		want string
	}{
		{KindRate, Result{Value: 52630.4}, "52,630/s"},
		{KindRate, Result{Value: 1234567}, "1,234,567/s"},
		{KindRate, Result{Value: 999}, "999/s"},
		{KindRate, Result{Value: 2.5}, "2.5/s"},
		{KindRate, Result{Value: 24.4, TimedOut: true, Done: 0.366, Budget: budget}, "24/s (cut off at 60s, 36% done)"},
		{KindTime, Result{Value: 0.0000421}, "42 µs"},
		{KindTime, Result{Value: 0.0016}, "1.60 ms"},
		{KindTime, Result{Value: 0.0221}, "22.1 ms"},
		{KindTime, Result{Value: 1.5}, "1.50 s"},
		{KindTime, Result{Value: 212}, "212 s"},
		{KindTime, Result{TimedOut: true, Done: 0.129, Budget: budget}, "> 60s (timed out, 12% done)"},
		{KindTime, Result{TimedOut: true, Done: 1, Budget: 90 * time.Second}, "> 90s (timed out, 100% done)"},
		{KindTime, Result{TimedOut: true, Budget: 1500 * time.Millisecond}, "> 1.5s (timed out, 0% done)"},
		{KindBytes, Result{Value: 300}, "300 B"},
		{KindBytes, Result{Value: 2048}, "2.0 KiB"},
		{KindBytes, Result{Value: 14.3 * (1 << 20)}, "14.3 MiB"},
		{KindFactor, Result{Value: 2.414}, "2.41x"},
		{KindFactor, Result{Value: 37.25}, "37.2x"},
		{KindFactor, Result{Value: 412}, "412x"},
		{KindTime, Result{Err: "boom"}, "error (see notes)"},
		{KindTime, Result{Skipped: "error above"}, "- (error above)"},
	}
	for _, tt := range tests {
		if got := FormatValue(tt.kind, tt.r); got != tt.want {
			t.Errorf("FormatValue(%s, %+v) = %q, want %q", tt.kind, tt.r, got, tt.want)
		}
	}
}

func TestRatio(t *testing.T) {
	budget := 60 * time.Second
	tests := []struct {
		name string
		row  Row
		want string
		val  float64 // 0: not checked
	}{
		{"rate: starling faster", Row{Kind: KindRate, Starling: Result{Value: 50000}, Raw: Result{Value: 3000}}, "16.7x", 50000.0 / 3000},
		{"rate: starling slower", Row{Kind: KindRate, Starling: Result{Value: 1000}, Raw: Result{Value: 4000}}, "0.25x", 0.25},
		{"time: lower is better", Row{Kind: KindTime, Starling: Result{Value: 0.002}, Raw: Result{Value: 0.0206}}, "10.3x", 10.3},
		{"bytes: lower is better", Row{Kind: KindBytes, Starling: Result{Value: 200}, Raw: Result{Value: 100}}, "0.50x", 0.5},
		{"factor: lower is better", Row{Kind: KindFactor, Starling: Result{Value: 3}, Raw: Result{Value: 150}}, "50.0x", 50},
		{"big ratio", Row{Kind: KindTime, Starling: Result{Value: 0.3}, Raw: Result{Value: 1020}}, "3400x", 3400},
		{"raw timed out: a lower bound", Row{Kind: KindTime, Starling: Result{Value: 0.5}, Raw: Result{TimedOut: true, Done: 0.1, Budget: budget}}, "> 120x", 120},
		{"starling timed out: an upper bound", Row{Kind: KindTime, Starling: Result{TimedOut: true, Budget: budget}, Raw: Result{Value: 30}}, "< 0.50x", 0.5},
		{"both timed out", Row{Kind: KindTime, Starling: Result{TimedOut: true, Budget: budget}, Raw: Result{TimedOut: true, Budget: budget}}, "-", 0},
		{"partial rate counts", Row{Kind: KindRate, Starling: Result{Value: 8000}, Raw: Result{Value: 20, TimedOut: true, Done: 0.3, Budget: budget}}, "400x", 400},
		{"error", Row{Kind: KindTime, Starling: Result{Value: 1}, Raw: Result{Err: "x"}}, "-", 0},
		{"zero", Row{Kind: KindRate, Starling: Result{Value: 0}, Raw: Result{Value: 5}}, "-", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatRatio(tt.row); got != tt.want {
				t.Errorf("FormatRatio = %q, want %q", got, tt.want)
			}
			if tt.val != 0 {
				v, _, ok := tt.row.Ratio()
				if !ok || math.Abs(v-tt.val) > 1e-9*tt.val {
					t.Errorf("Ratio = %v, %v; want %v", v, ok, tt.val)
				}
			}
		})
	}
}

func TestFormatTarget(t *testing.T) {
	tests := []struct {
		row  Row
		want string
	}{
		{Row{Kind: KindTime, Target: below(2), Starling: Result{Value: 1.2}}, "< 2.00 s  ok"},
		{Row{Kind: KindTime, Target: below(0.005), Starling: Result{Value: 0.0061}}, "< 5.00 ms  MISSED"},
		{Row{Kind: KindRate, Target: atLeast(50000), Starling: Result{Value: 61000}}, ">= 50,000/s  ok"},
		{Row{Kind: KindTime, Target: below(3), Starling: Result{TimedOut: true, Budget: time.Minute}}, "< 3.00 s  MISSED"},
		{Row{Kind: KindTime}, ""},
	}
	for _, tt := range tests {
		if got := FormatTarget(tt.row); got != tt.want {
			t.Errorf("FormatTarget(%+v) = %q, want %q", tt.row, got, tt.want)
		}
	}
}

func TestReportFormat(t *testing.T) {
	rep := &Report{
		Header: Header{Cores: 2, GOMAXPROCS: 2, GoVersion: "go1.26.8", OS: "linux/amd64", Budget: time.Minute, Took: 95 * time.Second, Raw: "raw setup"},
		Rows: []Row{
			{Workload: "field writes/s, 64 writers", Kind: KindRate, Target: atLeast(50000),
				Starling: Result{Value: 61000}, Raw: Result{Value: 3056}},
			{Workload: "heal after 10k writes on one side", Kind: KindTime, Target: below(2),
				Starling: Result{Value: 1.2}, Raw: Result{TimedOut: true, Done: 0.42, Budget: time.Minute}, Note: "gater both sides"},
			{Workload: "join", Kind: KindTime, Starling: Result{Err: "no peer"}, Raw: Result{Value: 3}},
		},
		Notes: []string{"heal: how it was measured"},
	}
	var b bytes.Buffer
	if err := rep.Format(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"2 cores, GOMAXPROCS 2, go1.26.8 linux/amd64",
		"budget 60s per run",
		"\n  - heal: how it was measured\n",
		"\n  - heal after 10k writes on one side: gater both sides\n",
		"\n  - join, starling: error: no peer\n",
		"took 1m35s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	var table [][]string
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " | ") {
			lines = append(lines, l)
			cells := strings.Split(l, " | ")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			table = append(table, cells)
		}
	}
	want := [][]string{
		{"workload", "starling", "raw go-ds-crdt", "ratio", "target (starling)"},
		{"field writes/s, 64 writers", "61,000/s", "3,056/s", "20.0x", ">= 50,000/s  ok"},
		{"heal after 10k writes on one side", "1.20 s", "> 60s (timed out, 42% done)", "> 50.0x", "< 2.00 s  ok"},
		{"join", "error (see notes)", "3.00 s", "-", ""},
	}
	if !slices.EqualFunc(table, want, slices.Equal) {
		t.Errorf("table cells:\n%q\nwant\n%q", table, want)
	}
	// Columns are aligned: every separator sits where the header's does.
	for _, l := range lines[1:] {
		for i, c := range []byte(lines[0]) {
			if c == '|' && (i >= len(l) || l[i] != '|') {
				t.Errorf("line %q not aligned with the header", l)
				break
			}
		}
	}

	// JSON keeps both results and the header.
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back.Header.Cores != 2 || len(back.Rows) != 3 || !back.Rows[1].Raw.TimedOut || back.Rows[1].Raw.Done != 0.42 {
		t.Errorf("JSON round trip lost data: %s", js)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if err := (Config{ElectionPreset: "WAN"}).Validate(); err != nil {
		t.Errorf("preset wan: %v", err)
	}
	if err := (Config{Net: NetLoopback}).Validate(); err != nil {
		t.Errorf("net loopback: %v", err)
	}
	err := Config{Only: []string{"writes", "bogus"}, Budget: -time.Second, Nodes: 1, ElectionPreset: "slow", Net: "tcp"}.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{`--only: unknown workload "bogus"`, "--budget", "--nodes", `--election-preset: election: invalid argument: election preset "slow"`, `--net: unknown network "tcp"; choose mocknet or loopback`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestKeys(t *testing.T) {
	for _, f := range []field{{0, 0}, {12, 345}, {999, 1_000_003}} {
		got, ok := parseKey(f.key())
		if !ok || got != f {
			t.Errorf("parseKey(%q) = %v, %v", f.key(), got, ok)
		}
	}
	for _, k := range []string{"/warm/1", "/nudge/3", "/e1", "/ex/f1", "/e1/g2"} {
		if _, ok := parseKey(k); ok {
			t.Errorf("parseKey(%q) accepted", k)
		}
	}
	jc := joinCase{writes: 25, fields: 10}
	for f, want := range map[int]int64{0: 20, 4: 24, 5: 15, 9: 19} {
		if got := jc.final(field{0, f}); got != want {
			t.Errorf("final(f%d) = %d, want %d", f, got, want)
		}
	}
	if got := perEnt(1050, 49); got != 11 {
		t.Errorf("perEnt(1050, 49) = %d, want 11", got)
	}
	if got := perEnt(1050, 50); got != 10 {
		t.Errorf("perEnt(1050, 50) = %d, want 10", got)
	}
	if p := percentile([]time.Duration{5, 1, 3, 2, 4}, 0.5); p != (3 * time.Nanosecond).Seconds() {
		t.Errorf("p50 = %v", p)
	}
}
