package chaos

import (
	"slices"
	"testing"
)

// TestReportFailures: a test's failure message names each failed
// scenario with what failed and its replay line (a CI excerpt of
// TestChaosSweep once showed only "found problems (seed ...)"), and
// leaves out passing and skipped ones.
func TestReportFailures(t *testing.T) {
	ok := Verdict{Checker: "lost", OK: true}
	rep := &Report{Results: []*ScenarioResult{
		{Scenario: "kill", Replay: "starling chaos --scenarios kill", Verdicts: []Verdict{ok}},
		{Scenario: "wipe", Skipped: "needs 3 nodes"},
		{Scenario: "nat-symmetric", Replay: "starling chaos --scenarios nat-symmetric", Verdicts: []Verdict{ok,
			{Checker: "nat", Problems: []string{"writes showed after 2.57s", "another"}},
			{Checker: "election"}}},
		{Scenario: "loss", Replay: "starling chaos --scenarios loss", Errors: []string{"n3 did not restart"}, Verdicts: []Verdict{ok}},
		{Scenario: "delay", Replay: "starling chaos --scenarios delay"},
	}}
	want := []string{
		"nat-symmetric: nat: writes showed after 2.57s; election failed (replay: starling chaos --scenarios nat-symmetric)",
		"loss: n3 did not restart (replay: starling chaos --scenarios loss)",
		"delay: no checker ran (replay: starling chaos --scenarios delay)",
	}
	if got := rep.Failures(); !slices.Equal(got, want) {
		t.Errorf("Failures() =\n%q\nwant\n%q", got, want)
	}
	if got := (&Report{Results: rep.Results[:2]}).Failures(); len(got) != 0 {
		t.Errorf("a passing report's Failures() = %q, want none", got)
	}
}
