package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/starling-sync/starling/chaos/internal/netlab"
	"github.com/starling-sync/starling/chaos/internal/nfqueue"
)

// Nemesis is a named kind of fault. Nemeses combine: a scenario such as
// "partition-halves+kill" injects both, each choosing its own targets.
type Nemesis interface {
	// Name is the nemesis's name in scenarios ("partition-halves").
	Name() string
	// Describe says in a line what it does.
	Describe() string
	// Available returns nil if the nemesis can run here, or why not (a
	// missing kernel feature or node flag). Called once per run, before
	// any host starts.
	Available(ctx context.Context, env *Env) error
	// Inject starts the fault, choosing targets and parameters with rng,
	// and returns how to end it. ErrNoTargets means the other faults in
	// force left nothing to act on.
	Inject(ctx context.Context, env *Env, rng *rand.Rand) (Fault, error)
}

// Fault is one injected fault.
type Fault interface {
	// Describe says what was done, with targets ("n2 n5 | n1 n3 n4").
	Describe() string
	// Heal ends the fault: the network rules go, killed hosts restart,
	// paused ones continue. Called once.
	Heal(ctx context.Context) error
}

// ErrNoTargets means a nemesis found no host it could act on (the
// others are claimed by faults in force). Test with errors.Is.
var ErrNoTargets = errors.New("chaos: no free host for this fault")

// StartedFault is a Fault that knows when it took effect, when that is
// later than the start of its Inject: a nemesis that first waits for a
// condition (nat-hub-kill waits up to 30 s for the sites to link before
// it kills the hub). The runner dates the fault from Started, so that
// failover and the settle time count from the fault itself and not from
// the wait before it.
type StartedFault interface {
	Fault
	// Started is when the fault took effect.
	Started() time.Time
}

type fault struct {
	desc    string
	heal    func(ctx context.Context) error
	started time.Time // zero: when Inject began
}

var _ StartedFault = (*fault)(nil)

func (f *fault) Describe() string               { return f.desc }
func (f *fault) Heal(ctx context.Context) error { return f.heal(ctx) }
func (f *fault) Started() time.Time             { return f.started }

// faultStart is when f took effect: its Started time if it says one,
// else injected (when its Inject began).
func faultStart(f Fault, injected time.Time) time.Time {
	if sf, ok := f.(StartedFault); ok {
		if t := sf.Started(); t.After(injected) {
			return t
		}
	}
	return injected
}

// Env is what nemeses act on: the hosts, the network and the runner's
// hooks. Its methods are called from the runner's goroutine only (faults
// are injected and healed one at a time).
type Env struct {
	hosts        []*Host
	lab          *netlab.Lab
	filter       *netlab.Filter
	log          *slog.Logger
	startTimeout time.Duration
	runHelp      string // `starling run --help`, to find optional flags
	maxPeers     int    // Config.MaxPeers

	claims    map[*Host]string
	exclusive map[string]string
	seq       int
	// dropped accumulates each fault's drop counters across re-renders
	// of the table (every change of rules resets the counters).
	dropped map[string]uint64

	// Hooks set by the runner for the wipe nemesis.
	fence      func(ctx context.Context, h *Host)
	unfence    func(h *Host)
	replicated func(ctx context.Context, h *Host) (forfeited []int)

	// For the adversary nemesis: the binary, the network key and the
	// scenario's directory (for its log); record appends a nemesis
	// entry to the history; visible polls until every host shows every
	// operation acknowledged before due, up to timeout, and says how
	// long that took and whether it happened.
	binary, pskFile, dir string
	record               func(Op)
	visible              func(ctx context.Context, due time.Time, timeout time.Duration) (time.Duration, bool)

	// For the NAT nemeses: when the cluster came up (the sites met
	// through the hub), and visible among the given hosts only (their
	// own operations, on them).
	upAt         time.Time
	visibleAmong func(ctx context.Context, due time.Time, hosts []*Host, timeout time.Duration) visibility
}

// Hosts returns every host.
func (e *Env) Hosts() []*Host { return e.hosts }

// meshSize is the number of connections every host reaches and keeps:
// all the others, or fewer under a bound (Config.MaxPeers), below which
// a node dials and which it closes connections only well above.
func (e *Env) meshSize() int {
	n := len(e.hosts) - 1
	if e.maxPeers > 0 {
		return min(n, e.maxPeers)
	}
	return n
}

// Log is the run's logger.
func (e *Env) Log() *slog.Logger { return e.log }

// FaultID returns a new fault ID "name#k", unique in the run.
func (e *Env) FaultID(name string) string {
	e.seq++
	return fmt.Sprintf("%s#%d", name, e.seq)
}

// SetRules installs the network rules of fault id alongside those of
// the other faults in force.
func (e *Env) SetRules(ctx context.Context, id string, rules []netlab.Rule) error {
	if err := e.saveCounters(ctx); err != nil {
		return err
	}
	if err := e.filter.Set(id, rules); err != nil {
		return err
	}
	return e.lab.Apply(ctx, e.filter)
}

// ClearRules removes the network rules of fault id.
func (e *Env) ClearRules(ctx context.Context, id string) error {
	if err := e.saveCounters(ctx); err != nil {
		return err
	}
	e.filter.Clear(id)
	return e.lab.Apply(ctx, e.filter)
}

// Dropped is how many frames the rules of fault id have dropped so far.
func (e *Env) Dropped(ctx context.Context, id string) (uint64, error) {
	now, err := e.lab.Dropped(ctx)
	if err != nil {
		return 0, err
	}
	return e.dropped[id] + now[id], nil
}

// saveCounters adds the counters in force to dropped, before a change
// of rules resets them.
func (e *Env) saveCounters(ctx context.Context) error {
	if len(e.filter.Faults()) == 0 {
		return nil
	}
	now, err := e.lab.Dropped(ctx)
	if err != nil {
		return err
	}
	if e.dropped == nil {
		e.dropped = map[string]uint64{}
	}
	for id, n := range now {
		e.dropped[id] += n
	}
	return nil
}

// Claim picks between lo and hi hosts that are running and not claimed
// by another fault (as many as are free, up to a number drawn from
// [lo, hi]) and claims them for fault id; ErrNoTargets if fewer than lo
// are free.
func (e *Env) Claim(rng *rand.Rand, id string, lo, hi int) ([]*Host, error) {
	var free []*Host
	for _, h := range e.hosts {
		if _, taken := e.claims[h]; !taken && h.Up() {
			free = append(free, h)
		}
	}
	if len(free) < lo {
		return nil, fmt.Errorf("%w: %s wants %d, %d free", ErrNoTargets, id, lo, len(free))
	}
	n := lo + rng.IntN(hi-lo+1)
	n = min(n, len(free))
	rng.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	picked := free[:n]
	slices.SortFunc(picked, func(a, b *Host) int { return a.index - b.index })
	for _, h := range picked {
		e.claims[h] = id
	}
	return picked, nil
}

// Release ends the claims on hosts.
func (e *Env) Release(hosts []*Host) {
	for _, h := range hosts {
		delete(e.claims, h)
	}
}

// Exclusive takes a resource that only one fault may hold (the delay
// queue); ErrNoTargets if another fault holds it.
func (e *Env) Exclusive(resource, id string) error {
	if by, ok := e.exclusive[resource]; ok {
		return fmt.Errorf("%w: %s is held by %s", ErrNoTargets, resource, by)
	}
	e.exclusive[resource] = id
	return nil
}

// ReleaseExclusive frees a resource.
func (e *Env) ReleaseExclusive(resource string) { delete(e.exclusive, resource) }

// shuffled returns the host numbers 1..n in an order drawn from rng.
func shuffled(rng *rand.Rand, n int) []int {
	p := rng.Perm(n)
	for i := range p {
		p[i]++
	}
	return p
}

// minority is the largest group smaller than half of n hosts (at least 1).
func minority(n int) int { return max(1, (n-1)/2) }

func (e *Env) names(hs []int) string {
	s := slices.Clone(hs)
	slices.Sort(s)
	var b strings.Builder
	for i, h := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(hostName(h))
	}
	return b.String()
}

func hostNames(hs []*Host) string {
	var b strings.Builder
	for i, h := range hs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h.name)
	}
	return b.String()
}

// cut returns rules that drop every frame between a and b, both ways.
func cut(a, b []int) []netlab.Rule {
	var rs []netlab.Rule
	for _, x := range a {
		for _, y := range b {
			rs = append(rs, netlab.Rule{From: x, To: y}, netlab.Rule{From: y, To: x})
		}
	}
	return rs
}

// networkNemesis installs rules chosen by plan and removes them on heal.
type networkNemesis struct {
	name, desc string
	minHosts   int
	// plan returns the rules and a description of them.
	plan func(e *Env, rng *rand.Rand, n int) ([]netlab.Rule, string)
}

func (n *networkNemesis) Name() string     { return n.name }
func (n *networkNemesis) Describe() string { return n.desc }

func (n *networkNemesis) Available(_ context.Context, e *Env) error {
	if e.lab.Hosts() < n.minHosts {
		return fmt.Errorf("needs at least %d hosts (--nodes)", n.minHosts)
	}
	return nil
}

func (n *networkNemesis) Inject(ctx context.Context, e *Env, rng *rand.Rand) (Fault, error) {
	id := e.FaultID(n.name)
	rules, desc := n.plan(e, rng, len(e.hosts))
	if err := e.SetRules(ctx, id, rules); err != nil {
		e.filter.Clear(id)
		return nil, err
	}
	return &fault{desc: desc, heal: func(ctx context.Context) error {
		// A fault whose rules matched nothing proves nothing: say so.
		dropped, derr := e.Dropped(ctx, id)
		err := e.ClearRules(ctx, id)
		switch {
		case derr != nil:
			err = errors.Join(err, derr)
		case dropped == 0:
			err = errors.Join(err, fmt.Errorf("%s: its rules dropped no frame while it held: the fault did nothing", id))
		default:
			e.log.Info("network fault healed", "fault", id, "dropped_frames", dropped)
		}
		return err
	}}, nil
}

// processNemesis claims hosts and acts on their processes.
type processNemesis struct {
	name, desc string
	available  func(e *Env) error
	inject     func(ctx context.Context, e *Env, rng *rand.Rand, id string) (Fault, error)
}

func (n *processNemesis) Name() string     { return n.name }
func (n *processNemesis) Describe() string { return n.desc }

func (n *processNemesis) Available(_ context.Context, e *Env) error {
	if n.available == nil {
		return nil
	}
	return n.available(e)
}

func (n *processNemesis) Inject(ctx context.Context, e *Env, rng *rand.Rand) (Fault, error) {
	return n.inject(ctx, e, rng, e.FaultID(n.name))
}

// builtinNemeses are the nemeses every registry has.
func builtinNemeses() []Nemesis {
	return append(natNemeses(), flatNemeses()...)
}

// flatNemeses are the nemeses of the flat network (every host on the
// bridge).
func flatNemeses() []Nemesis {
	return []Nemesis{
		&networkNemesis{
			name: "partition-halves", minHosts: 2,
			desc: "two halves that cannot reach each other",
			plan: func(e *Env, rng *rand.Rand, n int) ([]netlab.Rule, string) {
				p := shuffled(rng, n)
				a, b := p[:n/2], p[n/2:]
				return cut(a, b), e.names(a) + " | " + e.names(b)
			},
		},
		&networkNemesis{
			name: "partition-majority", minHosts: 3,
			desc: "a random minority cut off from the majority",
			plan: func(e *Env, rng *rand.Rand, n int) ([]netlab.Rule, string) {
				p := shuffled(rng, n)
				k := 1 + rng.IntN(minority(n))
				a, b := p[:k], p[k:]
				return cut(a, b), "minority " + e.names(a) + " | majority " + e.names(b)
			},
		},
		&networkNemesis{
			name: "isolate", minHosts: 2,
			desc: "one host cut off from all others",
			plan: func(e *Env, rng *rand.Rand, n int) ([]netlab.Rule, string) {
				p := shuffled(rng, n)
				return cut(p[:1], p[1:]), e.names(p[:1]) + " alone | " + e.names(p[1:])
			},
		},
		&networkNemesis{
			name: "bridge", minHosts: 3,
			desc: "two sides that cannot reach each other, and one host that reaches both",
			plan: func(e *Env, rng *rand.Rand, n int) ([]netlab.Rule, string) {
				p := shuffled(rng, n)
				mid, rest := p[0], p[1:]
				a, b := rest[:len(rest)/2], rest[len(rest)/2:]
				return cut(a, b), fmt.Sprintf("%s | bridge %s | %s", e.names(a), hostName(mid), e.names(b))
			},
		},
		&networkNemesis{
			name: "one-way", minHosts: 2,
			desc: "one host's frames to the others are dropped; it still hears them",
			plan: func(e *Env, rng *rand.Rand, n int) ([]netlab.Rule, string) {
				p := shuffled(rng, n)
				var rs []netlab.Rule
				for _, to := range p[1:] {
					rs = append(rs, netlab.Rule{From: p[0], To: to})
				}
				return rs, fmt.Sprintf("%s -> %s dropped (the other way passes)", hostName(p[0]), e.names(p[1:]))
			},
		},
		&networkNemesis{
			name: "loss", minHosts: 2,
			desc: "every link between hosts drops 20-40% of frames at random (nft numgen)",
			plan: func(e *Env, rng *rand.Rand, n int) ([]netlab.Rule, string) {
				pct := 20 + rng.IntN(21)
				var rs []netlab.Rule
				for a := 1; a <= n; a++ {
					for b := 1; b <= n; b++ {
						if a != b {
							rs = append(rs, netlab.Rule{From: a, To: b, LossPercent: pct})
						}
					}
				}
				return rs, fmt.Sprintf("%d%% loss on every link", pct)
			},
		},
		delayNemesis(),
		wanKillNemesis(),
		outlastNemesis{},
		outlastTwiceNemesis{},
		adversaryNemesis{},
		&processNemesis{
			name: "kill",
			desc: "kill -9 a minority of hosts; restart them at heal with their data",
			inject: func(ctx context.Context, e *Env, rng *rand.Rand, id string) (Fault, error) {
				hs, err := e.Claim(rng, id, 1, minority(len(e.hosts)))
				if err != nil {
					return nil, err
				}
				for _, h := range hs {
					if err := h.Kill(); err != nil {
						return nil, errors.Join(err, restart(ctx, e, hs))
					}
				}
				return &fault{desc: "killed " + hostNames(hs), heal: func(ctx context.Context) error {
					defer e.Release(hs)
					return restart(ctx, e, hs)
				}}, nil
			},
		},
		&processNemesis{
			name: "pause",
			desc: "SIGSTOP a minority of hosts; SIGCONT at heal",
			inject: func(_ context.Context, e *Env, rng *rand.Rand, id string) (Fault, error) {
				hs, err := e.Claim(rng, id, 1, minority(len(e.hosts)))
				if err != nil {
					return nil, err
				}
				for _, h := range hs {
					if err := h.Pause(); err != nil {
						return nil, errors.Join(err, resume(hs))
					}
				}
				return &fault{desc: "paused " + hostNames(hs), heal: func(context.Context) error {
					defer e.Release(hs)
					return resume(hs)
				}}, nil
			},
		},
		&processNemesis{
			name: "clock-skew",
			desc: "restart one host with its clock off by 30s-10m, 1-30 days or 1-10 years, ahead or behind (--clock-offset); back to 0 at heal",
			available: func(e *Env) error {
				if !strings.Contains(e.runHelp, "--clock-offset") {
					return errors.New("`starling run` has no --clock-offset flag in this build, so a node's clock cannot be skewed (faketime does not affect Go)")
				}
				return nil
			},
			inject: func(ctx context.Context, e *Env, rng *rand.Rand, id string) (Fault, error) {
				hs, err := e.Claim(rng, id, 1, 1)
				if err != nil {
					return nil, err
				}
				h := hs[0]
				off := farOffset(rng)
				if err := restartWithOffset(ctx, e, h, off); err != nil {
					e.Release(hs)
					return nil, err
				}
				return &fault{desc: fmt.Sprintf("%s clock %+v", h.name, off), heal: func(ctx context.Context) error {
					defer e.Release(hs)
					return restartWithOffset(ctx, e, h, 0)
				}}, nil
			},
		},
		&processNemesis{
			name: "wipe",
			desc: "kill -9 one host and delete its data dir (new identity); it rejoins empty at heal",
			inject: func(ctx context.Context, e *Env, rng *rand.Rand, id string) (Fault, error) {
				hs, err := e.Claim(rng, id, 1, 1)
				if err != nil {
					return nil, err
				}
				h := hs[0]
				// Stop its clients, then give its acknowledged writes the
				// chance to reach another host: a write acknowledged only
				// by the wiped disk is gone by definition, and recorded as
				// forfeited instead of lost.
				e.fence(ctx, h)
				forfeited := e.replicated(ctx, h)
				desc := "wiped " + h.name
				if len(forfeited) > 0 {
					desc += fmt.Sprintf(" (%d acknowledged operations had not left it: forfeited)", len(forfeited))
				}
				if err := h.Kill(); err != nil {
					e.Release(hs)
					e.unfence(h)
					return nil, err
				}
				if err := h.Wipe(ctx); err != nil {
					// No data dir to start from: the host stays down
					// and the run fails on it.
					e.Release(hs)
					return nil, err
				}
				return &fault{desc: desc, heal: func(ctx context.Context) error {
					defer e.Release(hs)
					if err := h.Start(ctx, e.startTimeout); err != nil {
						return err
					}
					e.unfence(h)
					return nil
				}}, nil
			},
		},
	}
}

func restart(ctx context.Context, e *Env, hs []*Host) error {
	var wg sync.WaitGroup
	errs := make([]error, len(hs))
	for i, h := range hs {
		wg.Go(func() {
			if !h.Up() {
				errs[i] = h.Start(ctx, e.startTimeout)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func resume(hs []*Host) error {
	var errs []error
	for _, h := range hs {
		if h.Paused() {
			errs = append(errs, h.Resume())
		}
	}
	return errors.Join(errs...)
}

func restartWithOffset(ctx context.Context, e *Env, h *Host, off time.Duration) error {
	if err := h.Stop(); err != nil {
		return err
	}
	h.SetClockOffset(off)
	return h.Start(ctx, e.startTimeout)
}

// delayQueue is the NFQUEUE queue number of the delay nemesis.
const delayQueue = 7

// EnvDelay fixes the delay nemesis's delay (a Go duration, "100ms")
// instead of drawing it from 20-200ms: to measure the election presets
// across a wide-area link of a known latency (issue #15).
const EnvDelay = "STARLING_CHAOS_DELAY"

// delayFor is the delay of one delay fault: EnvDelay's, or drawn.
func delayFor(rng *rand.Rand) (time.Duration, error) {
	drawn := time.Duration(20+rng.IntN(181)) * time.Millisecond // drawn even when fixed: the seed's other draws stay the same
	s := os.Getenv(EnvDelay)
	if s == "" {
		return drawn, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 10*time.Second {
		return 0, fmt.Errorf("%s=%q: want a duration in (0, 10s], such as 100ms", EnvDelay, s)
	}
	return d, nil
}

// allPairs are the (from, to) pairs of n hosts, both ways.
func allPairs(n int) [][2]int {
	var pairs [][2]int
	for a := 1; a <= n; a++ {
		for b := 1; b <= n; b++ {
			if a != b {
				pairs = append(pairs, [2]int{a, b})
			}
		}
	}
	return pairs
}

func delayNemesis() Nemesis {
	return &processNemesis{
		name: "delay",
		desc: "every frame between hosts held 20-200ms (NFQUEUE delayer: this kernel has no netem)",
		available: func(e *Env) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.lab.EnableDelay(ctx); err != nil {
				return fmt.Errorf("no netem on this kernel and no iptables NFQUEUE either: %w", err)
			}
			d, err := nfqueue.Open(delayQueue, time.Millisecond)
			if err != nil {
				return fmt.Errorf("no netem on this kernel and NFQUEUE does not bind: %w", err)
			}
			return d.Close()
		},
		inject: func(ctx context.Context, e *Env, rng *rand.Rand, id string) (Fault, error) {
			if err := e.Exclusive("delay", id); err != nil {
				return nil, err
			}
			delay, err := delayFor(rng)
			if err != nil {
				e.ReleaseExclusive("delay")
				return nil, err
			}
			d, err := nfqueue.Open(delayQueue, delay)
			if err != nil {
				e.ReleaseExclusive("delay")
				return nil, err
			}
			if err := e.lab.SetDelay(ctx, delayQueue, allPairs(len(e.hosts))); err != nil {
				e.ReleaseExclusive("delay")
				return nil, errors.Join(err, d.Close())
			}
			return &fault{desc: fmt.Sprintf("%s delay on every link", delay), heal: func(ctx context.Context) error {
				defer e.ReleaseExclusive("delay")
				err := e.lab.ClearDelay(ctx)
				err = errors.Join(err, d.Close())
				if n := d.Delayed(); n == 0 {
					err = errors.Join(err, errors.New("delay: no frame was delayed: the NFQUEUE rules matched nothing"))
				} else {
					e.log.Info("delay healed", "delayed_frames", n, "passed_undelayed", d.Passed())
				}
				return err
			}}, nil
		},
	}
}
