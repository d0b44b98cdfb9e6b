package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runChaosCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"starling", "chaos"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestChaosList(t *testing.T) {
	code, out, errs := runChaosCLI(t, "--list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"partition-halves", "bridge", "one-way", "loss", "delay", "kill", "pause", "clock-skew", "wipe", "models: entity, kv", "(--check): adversary, election", "quick sweep:"} {
		if !strings.Contains(out, want) {
			t.Errorf("--list lacks %q:\n%s", want, out)
		}
	}
}

func TestChaosUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenarios", "loss+quake"}, `no nemesis "quake"`},
		{[]string{"--nodes", "1"}, "--nodes 1"},
		{[]string{"--nodes", "99"}, "Nodes (--nodes)"},
		{[]string{"--rate", "0"}, "--rate 0"},
		{[]string{"--model", "nope"}, `no model "nope"`},
		{[]string{"--check", "quorum"}, `no checker "quorum"`},
		{[]string{"--rounds", "0"}, "--rounds 0"},
		{[]string{"--max-peers", "-1"}, "MaxPeers (--max-peers)"},
		{[]string{"extra"}, "too many arguments"},
	} {
		code, _, errs := runChaosCLI(t, tt.args...)
		if code != exitUsage || !strings.Contains(errs, tt.want) {
			t.Errorf("chaos %v: exit %d, stderr %q; want exit %d and %q", tt.args, code, errs, exitUsage, tt.want)
		}
	}
}

func TestChaosDefaults(t *testing.T) {
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	var model, check string
	for _, c := range app.Commands {
		if c.Name != "chaos" {
			continue
		}
		for _, f := range c.Flags {
			if d, ok := f.(interface{ GetDefaultText() string }); ok {
				switch f.Names()[0] {
				case flagChaosModel:
					model = d.GetDefaultText()
				case flagChaosCheck:
					check = d.GetDefaultText()
				}
			}
		}
	}
	if !strings.Contains(model, "entity") || !strings.Contains(check, "election") {
		t.Errorf("defaults: --model %q, --check %q; want entity and election", model, check)
	}
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"election"}, "election"},
		{[]string{" election ", ""}, "election"},
		{[]string{"election,moments"}, "election moments"},
		{[]string{"election", "none"}, ""},
	} {
		if got := strings.Join(chaosChecks(tt.in), " "); got != tt.want {
			t.Errorf("chaosChecks(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
