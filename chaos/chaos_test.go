package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-sync/starling/chaos/internal/netlab"
)

// The end-to-end tests build the starling binary, run themselves again
// inside new namespaces (RunIsolated), and there drive real nodes. They
// take minutes, so they run only when asked: STARLING_CHAOS=1 or
// CHAOS_REQUIRED=1 (CI), or `task chaos`. Without ip/nft/namespaces they
// skip with the reason, or fail when CHAOS_REQUIRED=1.
//
// Environment: STARLING_CHAOS_SEED replays a seed; STARLING_CHAOS_ARTIFACTS
// chooses where failed scenarios keep their logs (default
// ./chaos-artifacts, in this directory); STARLING_CHAOS_MODEL picks the
// sweep's model (default DefaultModel, "entity"; "kv" for raw keys).

const (
	envOptIn     = "STARLING_CHAOS"
	envSeed      = "STARLING_CHAOS_SEED"
	envArtifacts = "STARLING_CHAOS_ARTIFACTS"
	envModel     = "STARLING_CHAOS_MODEL"
	envBinary    = "STARLING_CHAOS_BINARY"   // set for the isolated child
	envBroken    = "STARLING_CHAOS_BROKEN"   // the chaosbroken build, for the child
	envSkipFile  = "STARLING_CHAOS_SKIPFILE" // the child writes its skip reason here
)

var (
	enterErr error // the isolated child's Enter
	builds   = map[string]*starlingBuild{}
	buildsMu sync.Mutex
	buildDir string
)

// starlingBuild is one build of the starling binary (by build tags).
type starlingBuild struct {
	once sync.Once
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	if Isolated() {
		enterErr = Enter()
		os.Exit(m.Run())
	}
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// skipOrFail skips t for reason, or fails it when CHAOS_REQUIRED=1. In
// the isolated child it also tells the parent, which skips or fails the
// same way.
func skipOrFail(t *testing.T, reason error) {
	t.Helper()
	if Required() {
		t.Fatalf("%s=1 and the partition suite cannot run: %v", EnvRequired, reason)
	}
	if f := os.Getenv(envSkipFile); f != "" {
		_ = os.WriteFile(f, []byte(reason.Error()), 0o644)
	}
	t.Skip(reason)
}

// isolated returns true in the isolated child. In the parent it checks
// the opt-in and the prerequisites, builds the binary (and, with
// tags, a second build of it, whose path the child finds in
// envBroken), runs the calling test in the child, mirrors its outcome,
// and returns false.
func isolated(t *testing.T, tags ...string) bool {
	t.Helper()
	if Isolated() {
		if enterErr != nil {
			skipOrFail(t, enterErr)
		}
		if os.Getenv(envBinary) == "" {
			t.Fatalf("%s is not set in the isolated child", envBinary)
		}
		return true
	}
	if os.Getenv(envOptIn) != "1" && !Required() {
		t.Skipf("the partition suite takes minutes: set %s=1 (or %s=1), or run `task chaos`", envOptIn, EnvRequired)
	}
	ctx := t.Context()
	if err := CheckPrerequisites(ctx); err != nil {
		skipOrFail(t, err)
	}
	bin := buildStarling(t, "")
	env := []string{envBinary + "=" + bin}
	for _, tag := range tags {
		env = append(env, envBroken+"="+buildStarling(t, tag))
	}
	skipFile := filepath.Join(t.TempDir(), "skip")
	timeout := 20 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - 30*time.Second
	}
	args := []string{"-test.run=^" + t.Name() + "$", "-test.v", "-test.timeout=" + timeout.String()}
	env = append(env, envSkipFile+"="+skipFile)
	err := RunIsolated(ctx, os.Args[0], args, env, os.Stdout, os.Stderr)
	if b, rerr := os.ReadFile(skipFile); rerr == nil {
		skipOrFail(t, errors.New(string(b)))
	}
	if err != nil {
		t.Fatalf("the isolated run failed: %v (its output is above)", err)
	}
	return false
}

// buildStarling builds the node binary once per test binary and build
// tag ("" for none).
func buildStarling(t *testing.T, tag string) string {
	t.Helper()
	buildsMu.Lock()
	b := builds[tag]
	if b == nil {
		b = &starlingBuild{}
		builds[tag] = b
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "starling-chaos-bin-")
		if err != nil {
			buildsMu.Unlock()
			t.Fatal(err)
		}
		buildDir = dir
	}
	dir := buildDir
	buildsMu.Unlock()
	b.once.Do(func() {
		b.bin = filepath.Join(dir, "starling")
		args := []string{"build", "-o", b.bin}
		if tag != "" {
			b.bin += "-" + tag
			args = []string{"build", "-tags", tag, "-o", b.bin}
		}
		cmd := exec.Command("go", append(args, "github.com/starling-sync/starling/cmd/starling")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s ./cmd/starling: %v\n%s", strings.Join(args[:len(args)-2], " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

func testSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv(envSeed); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSeed, s, err)
		}
		return seed
	}
	return rand.Uint64() >> 12
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// runSuite runs the suite and prints its report. Where the suite cannot
// run it skips, or fails under CHAOS_REQUIRED=1 (skipOrFail).
func runSuite(t *testing.T, cfg Config) *Report {
	t.Helper()
	rep, err := Run(t.Context(), cfg)
	if errors.Is(err, ErrUnsupported) {
		skipOrFail(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println()
	fmt.Print(rep.String())
	return rep
}

// requireOK fails the test when the suite found problems.
func requireOK(t *testing.T, rep *Report) {
	t.Helper()
	if !rep.OK() {
		t.Fatalf("the partition suite found problems (seed %d):\n  %s\nsee the report above and %s",
			rep.Seed, strings.Join(rep.Failures(), "\n  "), rep.Artifacts)
	}
}

// artifactsDir is where the suite tests keep their artifacts: the
// directory named by envArtifacts, or chaos-artifacts.
func artifactsDir() string {
	if d := os.Getenv(envArtifacts); d != "" {
		return d
	}
	return "chaos-artifacts"
}

// keptIfFailed is the artifacts directory of a control, whose scenario
// fails by design: a temporary one, copied to artifactsDir()/t.Name()
// when the test itself fails, so that CI keeps the nodes' logs of a
// control that caught nothing.
func keptIfFailed(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { // before the removal of dir: cleanups run last first
		if !t.Failed() {
			return
		}
		dst := filepath.Join(artifactsDir(), t.Name())
		if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
			t.Logf("keep the artifacts: %v", err)
			return
		}
		t.Logf("artifacts kept in %s", dst)
	})
	return dir
}

// TestChaosSweep runs every nemesis at least once (the quick sweep) and
// requires no lost write, no phantom and no divergence anywhere.
func TestChaosSweep(t *testing.T) {
	if !isolated(t) {
		return
	}
	model := os.Getenv(envModel)
	if model == "" {
		model = DefaultModel
	}
	cfg := Config{
		Binary:       os.Getenv(envBinary),
		Seed:         testSeed(t),
		Model:        model,
		Checks:       DefaultChecks,
		ArtifactsDir: artifactsDir(),
		Logger:       testLogger(),
	}
	t.Logf("seed %d, model %s (replay: %s=%d %s=%s)", cfg.Seed, model, envSeed, cfg.Seed, envModel, model)
	requireOK(t, runSuite(t, cfg))
}

// TestChaosKVJoinAndWipe runs the raw key-value model where its clients
// write from the first moment: writes made while nodes are still joining
// (a delete acknowledged right after a join was once lost), and a wiped
// node rejoining by state transfer.
func TestChaosKVJoinAndWipe(t *testing.T) {
	if !isolated(t) {
		return
	}
	cfg := Config{
		Binary:       os.Getenv(envBinary),
		Seed:         testSeed(t),
		Model:        "kv",
		Checks:       DefaultChecks,
		Scenarios:    []Scenario{ParseScenario("partition-majority+kill"), ParseScenario("wipe")},
		ArtifactsDir: artifactsDir(),
		Logger:       testLogger(),
	}
	t.Logf("seed %d (replay: %s=%d)", cfg.Seed, envSeed, cfg.Seed)
	requireOK(t, runSuite(t, cfg))
}

// TestChaosBoundedConnections runs a cluster larger than its bound on
// connections (7 nodes keeping 2 each, where the default connects every
// pair), cut in two halves, and 2|5 with a kill, for 9-12 s: past the
// liveness check (4 s), which cuts the links across, and before the
// hosts evict one another (15 s, --compact-evict-after; the outlasting
// partition's nemesis). A cluster left split loses writes and diverges.
// Each heal must also converge within ConvergeTimeout (the suite only
// notes a slow heal): nodes that dialled straight back the peers that
// had closed them for their bound churned their connections for
// minutes after a heal, and took 30-60 s to converge.
//
// What it does not show: that the bound's lost-peer re-dial
// (p2p/bounds.go) is needed. With that re-dial disabled this test
// still passes: within 9-13 s of hold the nodes of the smaller side
// have not all refilled to their bound from their own side (the cut
// leaves ~5 s, and dials across fail slowly), so at the heal some are
// below it and dial across anyway. Holds of 15-20 s fail with it
// disabled (57 lost writes, 3 hosts diverged), but that proves nothing:
// holds that long make the hosts evict one another, and two such cuts
// in a row lose writes without any bound (main before the bound, 7
// nodes, partition-halves, 2 rounds of 15-20 s: 58 and 31 writes lost
// in two of three runs; an open bug in eviction and rebase).
func TestChaosBoundedConnections(t *testing.T) {
	if !isolated(t) {
		return
	}
	cfg := Config{
		Binary:       os.Getenv(envBinary),
		Seed:         testSeed(t),
		Nodes:        7,
		MaxPeers:     2,
		FaultMin:     9 * time.Second,
		FaultMax:     12 * time.Second,
		Checks:       DefaultChecks,
		Scenarios:    []Scenario{ParseScenario("partition-halves"), ParseScenario("partition-majority+kill")},
		ArtifactsDir: artifactsDir(),
		Logger:       testLogger(),
	}
	t.Logf("seed %d (replay: %s=%d)", cfg.Seed, envSeed, cfg.Seed)
	rep := runSuite(t, cfg)
	requireOK(t, rep)
	for _, r := range rep.Results {
		if r.ConvergeTimeouts > 0 {
			t.Errorf("%s: %d heals did not converge within the convergence timeout (seed %d): see the report above", r.Scenario, r.ConvergeTimeouts, rep.Seed)
		}
	}
}

// unhealedIsolation cuts one host off and never lets it back: its rules
// live in an nft table of their own, which no heal and no clean-up of
// the runner touches, as if the link were broken for good. The checkers
// must notice.
type unhealedIsolation struct{}

func (unhealedIsolation) Name() string                          { return "isolate-unhealed" }
func (unhealedIsolation) Describe() string                      { return "one host cut off for good (test only)" }
func (unhealedIsolation) Available(context.Context, *Env) error { return nil }
func (unhealedIsolation) Inject(ctx context.Context, e *Env, rng *rand.Rand) (Fault, error) {
	n := len(e.Hosts())
	victim := 1 + rng.IntN(n)
	var b strings.Builder
	b.WriteString("table bridge chaos_test_unhealed {\n\tchain forward {\n\t\ttype filter hook forward priority -10; policy accept;\n")
	var others []int
	for k := 1; k <= n; k++ {
		if k != victim {
			others = append(others, k)
			fmt.Fprintf(&b, "\t\tiifname %q oifname %q drop\n\t\tiifname %q oifname %q drop\n",
				e.lab.Port(victim), e.lab.Port(k), e.lab.Port(k), e.lab.Port(victim))
		}
	}
	b.WriteString("\t}\n}\n")
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nft: %v: %s", err, out)
	}
	// The same cut in the runner's filter, so observers see it in the
	// topology; the runner lifts these at the end, not the table above.
	if err := e.SetRules(ctx, e.FaultID("isolate-unhealed"), cut([]int{victim}, others)); err != nil {
		return nil, err
	}
	return &fault{desc: hostName(victim) + " cut off for good", heal: func(context.Context) error { return nil }}, nil
}

// momentRecorder is an extra checker that only observes: it proves the
// Observer extension point is called with the topology.
type momentRecorder struct{ moments []Moment }

func (m *momentRecorder) Name() string                         { return "moments" }
func (m *momentRecorder) Check(CheckInput) Verdict             { return Verdict{Checker: "moments", OK: true} }
func (m *momentRecorder) Observe(_ context.Context, mo Moment) { m.moments = append(m.moments, mo) }

// TestChaosCatchesUnhealedPartition proves the checkers can fail: with
// one host never reconnected, its writes are missing elsewhere and the
// others' on it, so lost writes and divergence must both be reported.
func TestChaosCatchesUnhealedPartition(t *testing.T) {
	if !isolated(t) {
		return
	}
	reg := NewRegistry()
	reg.RegisterNemesis(unhealedIsolation{})
	rec := &momentRecorder{}
	reg.RegisterChecker("moments", func(ModelConfig) (Checker, error) { return rec, nil })
	cfg := Config{
		Checks:          []string{"moments"},
		SettleTime:      time.Second,
		Binary:          os.Getenv(envBinary),
		Seed:            testSeed(t),
		Nodes:           3,
		Scenarios:       []Scenario{ParseScenario("isolate-unhealed")},
		FaultMin:        3 * time.Second,
		FaultMax:        3 * time.Second,
		ConvergeTimeout: 5 * time.Second,
		ArtifactsDir:    t.TempDir(),
		Registry:        reg,
		Logger:          testLogger(),
	}
	rep := runSuite(t, cfg)
	if rep.OK() {
		t.Fatal("the report is OK although one host never reconnected")
	}
	res := rep.Results[0]
	if res.Acked == 0 {
		t.Fatal("no write was acknowledged: the control proves nothing")
	}
	if res.Count("lost") == 0 || res.Count("divergent") == 0 {
		t.Errorf("lost = %d, divergent = %d: want both > 0", res.Count("lost"), res.Count("divergent"))
	}
	if res.Count("phantom") != 0 {
		t.Errorf("phantom = %d: a partition does not invent values", res.Count("phantom"))
	}
	var labels []string
	for _, m := range rec.moments {
		labels = append(labels, fmt.Sprintf("%s: %v down=%v", m.Label, m.Components, m.Down))
	}
	if len(rec.moments) != 3 || len(rec.moments[0].Components) != 2 || len(rec.moments[1].Components) != 2 || len(rec.moments[2].Components) != 1 {
		t.Errorf("observed moments %q: want settled and healed with the host cut off, then final with one component", labels)
	}
	if res.Artifacts == "" {
		t.Error("a failed scenario kept no artifacts")
	} else {
		for _, f := range []string{"history.jsonl", "report.txt", "n1.log"} {
			if _, err := os.Stat(filepath.Join(res.Artifacts, f)); err != nil {
				t.Errorf("artifacts: %v", err)
			}
		}
	}
}

// TestChaosCatchesBrokenBuild proves the entity checkers fail on a
// build that loses data: n1 runs the chaosbroken build's broken-node,
// which drops every replication message from other nodes, so their
// acknowledged writes never show on n1. The entity checkers must report
// lost writes and divergence; nothing else differs from a passing run.
func TestChaosCatchesBrokenBuild(t *testing.T) {
	if !isolated(t, "chaosbroken") {
		return
	}
	broken := os.Getenv(envBroken)
	if broken == "" {
		t.Fatalf("%s is not set in the isolated child", envBroken)
	}
	cfg := Config{
		Binary: os.Getenv(envBinary),
		// n1 prepares the entity tree (so every host has it) and then
		// hears nothing from the others.
		RunCommand:      map[string][]string{"n1": {"chaos", "broken-node", "--break", "drop-remote"}},
		Model:           entModel,
		Seed:            testSeed(t),
		Nodes:           3,
		Scenarios:       []Scenario{ParseScenario("partition-halves")},
		FaultMin:        2 * time.Second,
		FaultMax:        2 * time.Second,
		ConvergeTimeout: 8 * time.Second,
		ArtifactsDir:    t.TempDir(),
		Logger:          testLogger(),
	}
	// Every host runs the broken build's binary; only n1 starts the
	// broken node (the others run its unchanged `run`).
	cfg.Binary = broken
	rep := runSuite(t, cfg)
	res := rep.Results[0]
	if res.Acked == 0 {
		t.Fatal("no write was acknowledged: the control proves nothing")
	}
	if rep.OK() {
		t.Fatal("the report is OK although n1 dropped every remote delta")
	}
	verdicts := map[string]Verdict{}
	for _, v := range res.Verdicts {
		verdicts[v.Checker] = v
	}
	if verdicts["entity-lost"].OK || res.Count("lost") == 0 {
		t.Errorf("entity-lost: %+v: want lost writes on n1", verdicts["entity-lost"])
	}
	if res.Count("divergent") == 0 {
		t.Errorf("divergent = 0: n1 cannot hold what the others hold")
	}
	// (Tree violations may follow: n1 may miss a move that, with its
	// own, closes a cycle the rule must undo.)
	if res.Count("phantom") != 0 {
		t.Errorf("phantom = %d: dropping deltas invents nothing", res.Count("phantom"))
	}
	for _, p := range verdicts["entity-lost"].Problems {
		if !strings.HasSuffix(p, " on n1") && p != "..." {
			t.Errorf("a write lost elsewhere than on n1: %s", p)
		}
	}
}

// TestChaosCatchesNATNoPath proves the nat checker can fail: the hub is
// killed while both sites sit behind symmetric NATs, where no hole punch
// can work and the only relay was the hub, so no write can cross
// between the sites until it returns. The checker must report the
// samples that never showed (lost writes after its return are not
// judged: see below). Against a build without NAT traversal,
// nat-hub-kill itself fails the same way: the sites never meet without
// the hub.
//
// It once failed in 2 of 4 CI runs: the samples judged with Missing,
// where each site's own later writes covered the other's and passed
// them with no path between the sites (see HostExpectation). On a
// loaded machine (one core busy) that judgment failed it in 1 of 5 runs
// of main and 1 of 6 with the old judgment forced, each time with the
// sites connected to nobody; with MissingOn, 11 of 11 passed, 3 of
// them with a sample the old judgment would have passed.
func TestChaosCatchesNATNoPath(t *testing.T) {
	if !isolated(t) {
		return
	}
	reg := NewRegistry()
	reg.RegisterNemesis(NewHubKillNemesis("nat-hub-kill-symmetric", func(n int) map[int]netlab.NAT {
		m := map[int]netlab.NAT{}
		for h := 2; h <= n; h++ {
			m[h] = netlab.SymmetricNAT
		}
		return m
	}))
	cfg := Config{
		Binary:    os.Getenv(envBinary),
		Seed:      testSeed(t),
		Nodes:     3,
		Checks:    []string{"nat"},
		Scenarios: []Scenario{ParseScenario("nat-hub-kill-symmetric")},
		// The hub stays down for natDownWindow plus this hold: longer
		// than a sample's timeout (natSampleTimeout), so that a write
		// sampled while it is down cannot show by its return. With a
		// 2 s hold (4 s down) one CI run saw a sample show after 3.9 s,
		// when the hub was back, instead of never.
		FaultMin:     natSampleTimeout + 2*time.Second,
		FaultMax:     natSampleTimeout + 2*time.Second,
		ArtifactsDir: keptIfFailed(t),
		Registry:     reg,
		Logger:       testLogger(),
	}
	rep := runSuite(t, cfg)
	res := rep.Results[0]
	// A failure says which path the writes took (the fault's
	// description: the sites' links and addresses when a sample showed).
	defer func() {
		if t.Failed() {
			t.Logf("faults: %s", strings.Join(res.Faults, "\n"))
		}
	}()
	if res.Acked == 0 {
		t.Fatal("no write was acknowledged: the control proves nothing")
	}
	if rep.OK() {
		t.Fatal("the report is OK although no write could cross between the sites while the hub was down")
	}
	var nat Verdict
	for _, v := range res.Verdicts {
		if v.Checker == "nat" {
			nat = v
		}
	}
	if nat.OK || nat.Counts["nat-visible-missed"] == 0 {
		t.Errorf("nat verdict %+v: want samples that never showed", nat)
	}
	if res.Count("phantom") != 0 {
		t.Errorf("phantom = %d: cutting the sites apart invents nothing", res.Count("phantom"))
	}
	// Not judged here: sites apart for long enough evict each other from
	// compaction, and against a build without NAT traversal some of
	// their writes then never converged after the hub's return (reported
	// apart); the control proves only that the nat checker fails.
	if n := res.Count("lost") + res.Count("divergent"); n > 0 {
		t.Logf("lost %d, divergent %d after the hub's return", res.Count("lost"), res.Count("divergent"))
	}
}
