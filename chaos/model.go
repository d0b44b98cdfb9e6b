package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// A Model is what one run drives and judges: the operations clients
// issue, how a host's state is read, which operations must be visible
// after a heal, and the checkers of the final states. The raw key-value
// model ("kv") is built in; a model for typed entity fields (with an
// LWW oracle: per field the greatest (HLC timestamp, writer) among
// acknowledged writes) plugs in the same way: implement the four parts
// and add its factory to builtinModels.
type Model struct {
	// Name is the model's registry name.
	Name string
	// Workload makes the clients.
	Workload Workload
	// Reader reads one host's state.
	Reader Reader
	// Oracle says which acknowledged operations a converged host shows.
	Oracle Oracle
	// Checkers judge the history against the final states. The runner
	// adds the divergence (digest) and process checks to every model.
	Checkers []Checker
}

// ModelConfig is what a model factory is told about the run.
type ModelConfig struct {
	// Hosts is the number of hosts.
	Hosts int
	// OverwriteKeys is the number of keys that clients overwrite (the
	// rest of the writes go to keys of their own).
	OverwriteKeys int
}

// ModelFactory builds a model for one scenario; a fresh one each time,
// so models and their checkers may keep per-scenario state.
type ModelFactory func(ModelConfig) (*Model, error)

// CheckerFactory builds an additional checker for one scenario (for
// example the election checker, which also implements Observer).
type CheckerFactory func(ModelConfig) (Checker, error)

// Process is one client: an ID unique in the scenario and the host it
// talks to.
type Process struct {
	ID   string
	Host *Host
}

// Workload makes the clients of a model.
type Workload interface {
	// NewClient returns the client of process p. Called by the runner
	// at the start and again when p's host was wiped (with a new ID).
	NewClient(p Process) Client
}

// Preparer is implemented by a Workload that must set the cluster up
// before its clients start (an entity model applies its schemas and
// creates the entities its clients write). Called once per scenario,
// after every host is up and connected, from the runner's goroutine.
type Preparer interface {
	Prepare(ctx context.Context, hosts []*Host) error
}

// Client issues one operation at a time for its process.
type Client interface {
	// Invoke chooses an operation with rng (the process's own, seeded
	// from the run's seed), performs it against the process's host and
	// returns its record (the runner sets Index and Process). ctx
	// carries the operation timeout. Never called concurrently for one
	// client; calls for different clients run in parallel.
	Invoke(ctx context.Context, rng *rand.Rand) Op
}

// Reader reads a host's state.
type Reader interface {
	// Read returns h's state as the model sees it. Called concurrently
	// for different hosts.
	Read(ctx context.Context, h *Host) (State, error)
}

// State is one host's state at one moment.
type State interface {
	// Digest identifies the full state: hosts with equal digests hold
	// the same data.
	Digest() string
}

// Differ is implemented by a State that can say how it differs from
// another of its model (the divergence checker shows the first
// differences).
type Differ interface {
	// Diff lists differences between the receiver and o, at most max.
	Diff(o State, max int) []string
}

// Oracle derives what must be visible from the history.
type Oracle interface {
	// Expect returns what a host that has caught up must show of the
	// operations in h that were acknowledged before due. h is every
	// entry so far, in history order, forfeited operations removed.
	// While the workload still runs (final false), an operation in
	// flight (not in h yet) may supersede any of them: Expect must then
	// demand only effects that no later operation can undo. Once the
	// workload has stopped (final true), h is complete.
	Expect(h []Op, due time.Time, final bool) Expectation
}

// Expectation is what Oracle.Expect derived.
type Expectation interface {
	// Missing returns the indexes (Op.Index) of the operations whose
	// effect s does not show (nil when s has caught up). A later write
	// that superseded one counts as showing it.
	Missing(s State) []int
}

// HostExpectation is an Expectation that can also judge what host's own
// writes hide. The visibility samples (the NAT nemeses' visibleAmong)
// use MissingOn where the model has it, Missing otherwise.
type HostExpectation interface {
	Expectation
	// MissingOn is Missing for state s read from host, where the
	// question is whether each operation reached host: an operation of
	// another host does not count as shown by a later write of host's
	// own, which supersedes it whether or not it ever arrived. Two sites
	// cut apart each overwrite the other's last writes within seconds,
	// and Missing then says they caught up with no path between them
	// (TestChaosCatchesNATNoPath: samples "showed" after 4.07 and
	// 4.85 s with the hub down). What stands for a hidden operation is
	// up to the model.
	MissingOn(host string, s State) []int
}

// HostState is one host's final state, or why it could not be read.
type HostState struct {
	Host  string
	State State // nil when Err is set
	Err   error
}

// CheckInput is what a checker judges.
type CheckInput struct {
	// History is every client operation and nemesis event, in the order
	// they completed.
	History []Op
	// Final is each host's state after the last heal and the final wait.
	Final []HostState
	// Forfeited holds the indexes of acknowledged operations that died
	// with a wiped disk before they left it; they are not lost writes.
	Forfeited map[int]bool
	// Faults are the rounds' fault windows, in order.
	Faults []FaultWindow
}

// FaultWindow is one round's faults as the hosts felt them: from when
// they took effect until the cluster converged after their heal (or the
// convergence wait ended), with the hosts they stopped or cut off, read
// once every fault of the round was in force. Outside every window, and
// for hosts a window leaves running in the same component, a leader
// taken for failed was not (the election checker's false failovers).
type FaultWindow struct {
	From, To time.Time
	// Down lists hosts whose process was not running, Paused those
	// stopped by SIGSTOP.
	Down, Paused []string
	// Components are the groups of hosts that could talk both ways.
	Components [][]string
}

// holds reports whether the window was in force at t (a window with no
// To has not ended).
func (w FaultWindow) holds(t time.Time) bool {
	return !t.Before(w.From) && (w.To.IsZero() || !t.After(w.To))
}

// stopped reports whether the window had host down or paused.
func (w FaultWindow) stopped(host string) bool {
	return slices.Contains(w.Down, host) || slices.Contains(w.Paused, host)
}

// Verdict is a checker's judgement.
type Verdict struct {
	Checker string `json:"checker"`
	OK      bool   `json:"ok"`
	// Counts are the checker's figures; the report's table shows
	// "lost", "phantom" and "divergent", the others in its notes.
	Counts map[string]int `json:"counts,omitempty"`
	// Problems are the first violations, readable.
	Problems []string `json:"problems,omitempty"`
	// Durations are the checker's measured times (the election checker's
	// "failover" and "leader-heal"); the report shows their percentiles.
	Durations map[string][]time.Duration `json:"durations_ns,omitempty"`
}

// maxProblems bounds the examples a verdict lists.
const maxProblems = 20

func (v *Verdict) problem(format string, args ...any) {
	if len(v.Problems) < maxProblems {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	} else if len(v.Problems) == maxProblems {
		v.Problems = append(v.Problems, "...")
	}
}

// Checker judges a finished scenario.
type Checker interface {
	Name() string
	// Check judges in. It must not block: everything it needs is in in
	// (or was gathered by Observe).
	Check(in CheckInput) Verdict
}

// Observer is implemented by a Checker that must also look at the
// cluster during the run, not only at its end: the election checker,
// to see one leader per connected component while a partition holds.
type Observer interface {
	// Observe looks at the cluster at a stable moment: a fault has held
	// for the settle time, or a heal has converged, or the run ended.
	// Called from the runner's goroutine; it may poll the hosts until
	// ctx ends (the fault's remaining hold time, or the convergence
	// timeout) and should record what it saw for Check.
	Observe(ctx context.Context, m Moment)
}

// Moment is a stable point of the run, for observers.
type Moment struct {
	Time  time.Time
	Label string // "settled round 1", "healed round 2", "final"
	// Since is when what led to this moment happened: the faults'
	// injection (settled), the heal (healed), the workload's end (final).
	Since time.Time
	// Nemeses are the names of the nemeses whose faults are in force
	// (settled moments only).
	Nemeses []string
	// Components are the groups of hosts that can talk both ways, as
	// the network faults in force allow (host names, each sorted).
	Components [][]string
	// Down lists hosts whose process is not running; Paused those
	// stopped by SIGSTOP. They stay in Components.
	Down, Paused []string
	// Hosts are all hosts, for API calls.
	Hosts []*Host
}

// Registry holds the models, extra checkers and nemeses a run can use.
// NewRegistry fills it with the built-in ones; tests add their own.
type Registry struct {
	models   map[string]ModelFactory
	checkers map[string]CheckerFactory
	nemeses  map[string]Nemesis
}

// NewRegistry returns a registry with the built-in models and nemeses.
func NewRegistry() *Registry {
	r := &Registry{models: map[string]ModelFactory{}, checkers: map[string]CheckerFactory{}, nemeses: map[string]Nemesis{}}
	for name, f := range builtinModels() {
		r.RegisterModel(name, f)
	}
	for name, f := range builtinCheckers() {
		r.RegisterChecker(name, f)
	}
	for _, n := range builtinNemeses() {
		r.RegisterNemesis(n)
	}
	return r
}

// builtinModels are the models every registry has: the raw key-value
// model (kv.go) and the entity-field model (entity.go).
func builtinModels() map[string]ModelFactory {
	return map[string]ModelFactory{"kv": newKVModel, entModel: newEntityModel}
}

// builtinCheckers are the extra checkers (chosen with Config.Checks) every
// registry has.
func builtinCheckers() map[string]CheckerFactory {
	return map[string]CheckerFactory{"election": newElectionChecker, "adversary": newAdversaryChecker, "nat": newNATChecker}
}

// RegisterModel adds or replaces a model.
func (r *Registry) RegisterModel(name string, f ModelFactory) { r.models[name] = f }

// RegisterChecker adds or replaces an extra checker.
func (r *Registry) RegisterChecker(name string, f CheckerFactory) { r.checkers[name] = f }

// RegisterNemesis adds or replaces a nemesis, by its name.
func (r *Registry) RegisterNemesis(n Nemesis) { r.nemeses[n.Name()] = n }

// Models returns the model names, sorted.
func (r *Registry) Models() []string { return sortedKeys(r.models) }

// Checkers returns the extra checker names, sorted.
func (r *Registry) Checkers() []string { return sortedKeys(r.checkers) }

// Nemeses returns the registered nemeses, sorted by name.
func (r *Registry) Nemeses() []Nemesis {
	out := make([]Nemesis, 0, len(r.nemeses))
	for _, name := range sortedKeys(r.nemeses) {
		out = append(out, r.nemeses[name])
	}
	return out
}

// Nemesis returns a nemesis by name.
func (r *Registry) Nemesis(name string) (Nemesis, bool) {
	n, ok := r.nemeses[name]
	return n, ok
}

func (r *Registry) model(name string) (ModelFactory, error) {
	f, ok := r.models[name]
	if !ok {
		return nil, fmt.Errorf("chaos: no model %q (have: %s)", name, strings.Join(r.Models(), ", "))
	}
	return f, nil
}

func (r *Registry) checker(name string) (CheckerFactory, error) {
	f, ok := r.checkers[name]
	if !ok {
		have := strings.Join(r.Checkers(), ", ")
		if have == "" {
			have = "none yet"
		}
		return nil, fmt.Errorf("chaos: no checker %q (have: %s)", name, have)
	}
	return f, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// digestChecker counts the hosts whose full-state digest differs from
// the most common one; a host whose state cannot be read counts too.
type digestChecker struct{}

func (digestChecker) Name() string { return "divergence" }

func (digestChecker) Check(in CheckInput) Verdict {
	v := Verdict{Checker: "divergence", Counts: map[string]int{"divergent": 0}}
	count := map[string]int{}
	for _, hs := range in.Final {
		if hs.Err == nil {
			count[hs.State.Digest()]++
		}
	}
	digests := sortedKeys(count)
	slices.SortStableFunc(digests, func(a, b string) int { return count[b] - count[a] })
	var majority string
	if len(digests) > 0 {
		majority = digests[0]
	}
	for _, hs := range in.Final {
		switch {
		case hs.Err != nil:
			v.Counts["divergent"]++
			v.problem("%s: state unreadable: %v", hs.Host, hs.Err)
		case hs.State.Digest() != majority:
			v.Counts["divergent"]++
			v.problem("%s: digest %.12s, most hosts have %.12s", hs.Host, hs.State.Digest(), majority)
			if d, ok := hs.State.(Differ); ok {
				for _, other := range in.Final {
					if other.Err == nil && other.State.Digest() == majority {
						for _, line := range d.Diff(other.State, 5) {
							v.problem("  %s vs %s: %s", hs.Host, other.Host, line)
						}
						break
					}
				}
			}
		}
	}
	v.OK = v.Counts["divergent"] == 0
	return v
}

// processChecker fails when a node process exited on its own.
type processChecker struct{ hosts []*Host }

func (processChecker) Name() string { return "processes" }

func (c processChecker) Check(CheckInput) Verdict {
	v := Verdict{Checker: "processes", Counts: map[string]int{"crashed": 0}}
	for _, h := range c.hosts {
		for _, msg := range h.Crashes() {
			v.Counts["crashed"]++
			v.problem("%s", msg)
		}
	}
	v.OK = v.Counts["crashed"] == 0
	return v
}

var (
	_ Checker = digestChecker{}
	_ Checker = processChecker{}
)
