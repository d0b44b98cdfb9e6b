package netlab

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func port(h int) string { return fmt.Sprintf("v%d", h) }

func TestFilterScript(t *testing.T) {
	f := NewFilter(3)
	if err := f.Set("cut", []Rule{{From: 1, To: 2}, {From: 2, To: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("loss", []Rule{{From: 1, To: 3, LossPercent: 30}}); err != nil {
		t.Fatal(err)
	}
	got := f.Script(port)
	for _, want := range []string{
		"table bridge starling_chaos\ndelete table bridge starling_chaos\n",
		`iifname "v1" oifname "v2" meta mark set 0x5354 counter comment "cut"`,
		`iifname "v2" oifname "v1" meta mark set 0x5354 counter comment "cut"`,
		`iifname "v1" oifname "v3" numgen random mod 100 < 30 meta mark set 0x5354 counter comment "loss"`,
		"meta mark 0x5354 drop\n\t}\n}\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
	f.Clear("cut")
	if got := f.Script(port); strings.Contains(got, `"cut"`) {
		t.Errorf("cleared fault still in the script:\n%s", got)
	}
	if !slices.Equal(f.Faults(), []string{"loss"}) {
		t.Errorf("Faults = %v", f.Faults())
	}
	f.Clear("never set") // no-op
}

func TestFilterRejectsBadRules(t *testing.T) {
	for _, r := range []Rule{
		{From: 0, To: 1}, {From: 1, To: 4}, {From: 2, To: 2},
		{From: 1, To: 2, LossPercent: 100}, {From: 1, To: 2, LossPercent: -1},
	} {
		if err := NewFilter(3).Set("x", []Rule{r}); err == nil {
			t.Errorf("Set(%+v) accepted", r)
		}
	}
}

func TestFilterComponents(t *testing.T) {
	cut := func(f *Filter, name string, a, b []int) {
		var rs []Rule
		for _, x := range a {
			for _, y := range b {
				rs = append(rs, Rule{From: x, To: y}, Rule{From: y, To: x})
			}
		}
		if err := f.Set(name, rs); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		build func(*Filter)
		want  [][]int
	}{
		{"no faults", func(*Filter) {}, [][]int{{1, 2, 3, 4, 5}}},
		{"halves", func(f *Filter) { cut(f, "p", []int{1, 4}, []int{2, 3, 5}) }, [][]int{{1, 4}, {2, 3, 5}}},
		{"isolated", func(f *Filter) { cut(f, "p", []int{3}, []int{1, 2, 4, 5}) }, [][]int{{1, 2, 4, 5}, {3}}},
		// 3 bridges {1,2} and {4,5}: one component, though 1 cannot
		// talk to 4 directly.
		{"bridge", func(f *Filter) { cut(f, "p", []int{1, 2}, []int{4, 5}) }, [][]int{{1, 2, 3, 4, 5}}},
		{"one-way", func(f *Filter) {
			_ = f.Set("p", []Rule{{From: 2, To: 1}, {From: 2, To: 3}, {From: 2, To: 4}, {From: 2, To: 5}})
		}, [][]int{{1, 3, 4, 5}, {2}}},
		{"loss connects", func(f *Filter) { _ = f.Set("p", []Rule{{From: 1, To: 2, LossPercent: 50}}) }, [][]int{{1, 2, 3, 4, 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFilter(5)
			tt.build(f)
			got := f.Components()
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Components = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCommentSafe(t *testing.T) {
	if got := commentSafe("a\"b\\c\nd"); got != "a_b_c_d" {
		t.Errorf("commentSafe = %q", got)
	}
	if got := commentSafe(strings.Repeat("x", 200)); len(got) != 120 {
		t.Errorf("len = %d", len(got))
	}
}

func TestParseDropped(t *testing.T) {
	out := `table bridge starling_chaos {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "chaos-v1" oifname "chaos-v2" meta mark set 0x00005354 counter packets 12 bytes 900 comment "cut#1"
		iifname "chaos-v2" oifname "chaos-v1" meta mark set 0x00005354 counter packets 3 bytes 200 comment "cut#1"
		iifname "chaos-v1" oifname "chaos-v3" numgen random mod 100 < 30 meta mark set 0x00005354 counter packets 0 bytes 0 comment "loss#2"
		meta mark 0x00005354 drop
	}
}`
	got := parseDropped(out)
	if got["cut#1"] != 15 || got["loss#2"] != 0 || len(got) != 2 {
		t.Errorf("parseDropped = %v", got)
	}
}
