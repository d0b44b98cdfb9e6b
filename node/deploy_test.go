package node_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// The alert rules and the Grafana dashboard in deploy/ name series of
// /metrics; these tests keep them in step with the code.
const (
	alertsFile    = "../deploy/prometheus/alerts.yml"
	dashboardFile = "../deploy/grafana/starling.json"
)

var seriesRE = regexp.MustCompile(`\bstarling_[a-z0-9_]+`)

// alertExprs returns the expr of every rule in the alerts file.
func alertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("%s: a rule without alert or expr: %+v", alertsFile, r)
			}
			out = append(out, r.Expr)
		}
	}
	if len(out) < 10 {
		t.Fatalf("%s: %d rules", alertsFile, len(out))
	}
	return out
}

// dashboardExprs returns the expr of every panel target, and checks that
// every panel that plots has one unit.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title       string `json:"title"`
			Type        string `json:"type"`
			FieldConfig struct {
				Defaults struct {
					Unit string `json:"unit"`
				} `json:"defaults"`
			} `json:"fieldConfig"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.FieldConfig.Defaults.Unit == "" || len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no unit or no query", dashboardFile, p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}

// checkDeployNames fails for every starling_* series that the alerts or
// the dashboard name and fams (a live node's /metrics) lacks.
func checkDeployNames(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	has := func(name string) bool {
		if _, ok := fams[name]; ok {
			return true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := fams[strings.TrimSuffix(name, suf)]; ok && strings.HasSuffix(name, suf) && f.GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	for file, exprs := range map[string][]string{alertsFile: alertExprs(t), dashboardFile: dashboardExprs(t)} {
		var names []string
		for _, e := range exprs {
			names = append(names, seriesRE.FindAllString(e, -1)...)
		}
		slices.Sort(names)
		names = slices.Compact(names)
		if len(names) < 10 {
			t.Errorf("%s names only %v", file, names)
		}
		for _, n := range names {
			if !has(n) {
				t.Errorf("%s names %s, which /metrics does not serve", file, n)
			}
		}
	}
}

// TestAlertRulesWithPromtool runs promtool (Debian's prometheus package)
// when it is installed: the rules' syntax, their unit tests, and the
// dashboard's queries (with Grafana's variables filled in) as rules.
func TestAlertRulesWithPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus); the series names are still checked by TestMetricsServesDocumentedSeries")
	}
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
	run("check", "rules", alertsFile)
	run("test", "rules", "../deploy/prometheus/alerts_test.yml")
	// Each dashboard query as a recording rule, so promtool parses it.
	r := strings.NewReplacer(`$__rate_interval`, `1m`, `$instance`, `.*`, `$job`, `starling`)
	var rules []map[string]string
	for i, e := range dashboardExprs(t) {
		rules = append(rules, map[string]string{"record": "dashboard:q" + strings.Repeat("x", i), "expr": r.Replace(e)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	run("check", "rules", path)
}
