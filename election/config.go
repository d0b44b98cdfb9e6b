package election

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Config configures a Rule and a Runner. Start from a preset (LANConfig,
// WANConfig, FastConfig), set NodeID and Peer, adjust, and check with
// Validate.
//
// The timings trade failover speed against false failovers:
//
//   - A crashed leader is replaced between Timeout−Interval and Timeout
//     after it crashed (its last heartbeat arrived up to one Interval
//     before the crash), plus one gossip hop.
//   - A candidate whose node pauses (GC, a stalled VM, a saturated link)
//     for P is falsely declared failed only if P plus the time since its
//     last heartbeat exceeds Timeout: every pause up to Timeout−Interval
//     is tolerated, whatever its phase, and Timeout/Interval−1 heartbeats
//     in a row may be lost.
//   - Heartbeats go to every node of the environment. A node sends one
//     every Interval while one of its candidates leads or stands next in
//     line in a group (or it is starting, or a candidate is settling);
//     otherwise every IdlePeriod, which by default grows with the
//     cluster so that the idle nodes together send about 2/Interval
//     heartbeats per second whatever their number (IdlePeriod).
type Config struct {
	// NodeID is this node's ID (the candidate ID of its cluster
	// candidate, and the prefix of its service candidates). Required.
	NodeID string
	// Peer is this node's peer ID. It orders candidates whose node IDs
	// collide (deterministically on every node) and marks the leader's
	// host. Required.
	Peer string

	// Interval is the heartbeat period. Unit: duration.
	Interval time.Duration
	// Timeout is how long after the last received heartbeat a node's
	// candidates count as failed; measured on the receiver's monotonic
	// clock, so clock skew between nodes cannot fake health. At least
	// 2×Interval (one lost heartbeat must not cause a failover).
	Timeout time.Duration
	// IdlePeriod is the heartbeat period of a node whose candidates
	// neither lead nor stand next in line in any group: failover depends
	// on noticing the leader (and then on the next candidate), so only
	// they need Interval. Receivers time an idle node out after
	// Timeout/Interval idle periods of silence; a candidate that comes
	// next in line after a failover turns fast at once. When the leader
	// and the next candidate fail together (a partition), the third,
	// idle until then, is elected though it may have failed too; it is
	// on probation then, failed unless heard within 2×Timeout, so the
	// failover takes about 3×Timeout instead of one idle timeout; and a
	// failed probation raises an alarm that makes all the cut-off idle
	// candidates fail together (rule.go, probation). 0 (the default):
	// max(10×Interval, Interval×n/2) for n live nodes (24 nodes on the
	// LAN preset: 2.4 s, 200 nodes: 20 s). Set it to Interval to have
	// every node heartbeat every Interval.
	IdlePeriod time.Duration
	// Warmup is how long a (re)started node listens before it takes part:
	// until then it reports no leader and its candidates say they are not
	// available, so a restarted node neither announces a wrong leader from
	// a partial picture nor preempts before it knows the current term.
	// It then also waits, while no peer knows of a leader, for live peers
	// still warming up (each for at most 2×Warmup after it was first
	// heard) and until no new node has appeared for Warmup, for at
	// most 8×Warmup after its start in all: a cluster started at once,
	// also one node after another, elects once from the full picture.
	// At least Interval; the presets use Timeout (by then every live
	// node has been heard from several times).
	Warmup time.Duration
	// NoPreemption turns preemption off. With preemption (the default)
	// the leader is always the lowest ID among eligible candidates, so a
	// restarted lower ID takes leadership back once it is warm, healthy
	// and available: every node computes the leader from the same inputs
	// alone, which makes agreement (also after partitions) easy to reason
	// about, at the price of a second handover after a restart. Without
	// it a leader keeps leadership while it stays eligible; competing
	// leaderships (after a partition) are resolved by the higher term,
	// then the lower ID.
	NoPreemption bool
	// LeaveLinger is how long Close waits after publishing the goodbye
	// before it returns (the node then closes its network): gossip offers
	// no delivery receipt. If the goodbye is lost, others fail over after
	// Timeout instead of at once.
	LeaveLinger time.Duration
	// Retain is how long a silent node stays listed (as not alive) in
	// group status after its last heartbeat, so operators see who
	// failed. Its heartbeats also make it alive again at any time.
	Retain time.Duration

	// Clock is the monotonic clock and timer source of the Runner (the
	// Rule takes time as input). Default: the system clock.
	Clock Clock
	// Terms, when set, keeps the highest term of each group across
	// restarts, so terms keep increasing even when every node restarts.
	// Default: none (terms are learnt from peers after a restart).
	Terms TermStore
	// Logger receives the runner's logs. Default: discard. Lines carry
	// component=election; the caller adds the node's name if it wants
	// it (node's logger has it already).
	Logger *slog.Logger
}

// LANConfig is the default: nodes on one LAN or site.
//
// Interval 200ms, Timeout 800ms: a crashed leader is replaced within
// 0.6-0.8 s (p50 about 0.7 s, p99 below 0.85 s on a LAN), well inside the
// 1 s / 1.5 s targets; 3 heartbeats in a row may be lost and pauses up to
// 600 ms are tolerated. The leader and the next in line send 5
// heartbeats per second; the other nodes one every 2 s or more
// (IdlePeriod).
func LANConfig() Config {
	return Config{
		Interval: 200 * time.Millisecond,
		Timeout:  800 * time.Millisecond,
		// Warmup = Timeout: a restarted node has heard every live node
		// about four times before it takes part.
		Warmup: 800 * time.Millisecond,
		// A goodbye crosses a LAN in a millisecond or two; 50 ms is ample
		// and keeps node shutdown quick.
		LeaveLinger: 50 * time.Millisecond,
		// Ten minutes of "this node was here" is what an operator needs to
		// see a failure after the fact, without keeping nodes forever.
		Retain: 10 * time.Minute,
	}
}

// WANConfig is for nodes spread over sites joined by slow or lossy links
// (a factory floor and a cloud region).
//
// Interval 1s, Timeout 5s: failover takes 4-5 s, but 4 lost heartbeats
// in a row and pauses up to 4 s (a congested uplink, a VM migration) do
// not cause a false failover, which across sites costs more than a few
// seconds of waiting.
func WANConfig() Config {
	c := LANConfig()
	c.Interval = time.Second
	c.Timeout = 5 * time.Second
	c.Warmup = 5 * time.Second
	// Round trips of a few hundred ms between sites.
	c.LeaveLinger = 200 * time.Millisecond
	return c
}

// FastConfig is for tests and demos on one machine: Interval 50ms,
// Timeout 300ms (failover in 0.25-0.3 s, pauses up to 250 ms tolerated).
// Too tight for real networks: a GC pause or a busy link would cause
// false failovers.
func FastConfig() Config {
	c := LANConfig()
	c.Interval = 50 * time.Millisecond
	c.Timeout = 300 * time.Millisecond
	c.Warmup = 300 * time.Millisecond
	c.LeaveLinger = 20 * time.Millisecond
	return c
}

// Preset returns the preset named name: "lan", "wan" or "fast".
func Preset(name string) (Config, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "lan":
		return LANConfig(), nil
	case "wan":
		return WANConfig(), nil
	case "fast":
		return FastConfig(), nil
	}
	return Config{}, fmt.Errorf("%w: election preset %q: use lan, wan or fast", ErrInvalid, name)
}

// LinkBudget is the highest round trip to a peer that c's timings take
// safely: a quarter of the pause tolerance Timeout−Interval (LAN 150 ms,
// WAN 1 s, Fast 62.5 ms).
//
// A link's constant delay costs nothing: it shifts every heartbeat
// alike. What eats the tolerance is one heartbeat arriving later than the
// one before: the delay's variation, and a lost segment, which TCP resends
// after a retransmission timeout of one round trip and more (Linux's floor
// is 200 ms; a second loss doubles it) while the heartbeats behind it
// wait. A round trip within a quarter of the tolerance leaves, after one
// retransmission and a delay spike of the same size, half the tolerance
// for what it exists for: the sender's pauses (GC, a stalled VM), which
// no receiver can tell from a crash. Beyond it, false failovers become a
// matter of luck: pick a preset whose budget covers the round trips
// (WAN's: 1 s).
func (c Config) LinkBudget() time.Duration {
	c = c.EnsureDefaults()
	return (c.Timeout - c.Interval) / 4
}

// PresetName names the preset whose timings c has ("lan", "wan",
// "fast"), or returns "custom".
func (c Config) PresetName() string {
	c = c.EnsureDefaults()
	for _, name := range []string{"lan", "wan", "fast"} {
		p, _ := Preset(name)
		if c.Interval == p.Interval && c.Timeout == p.Timeout {
			return name
		}
	}
	return "custom"
}

// EnsureDefaults returns a copy of c with zero timings taken from
// LANConfig, and a nil Clock and Logger replaced by the system clock and
// a discarding logger.
func (c Config) EnsureDefaults() Config {
	d := LANConfig()
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.Timeout == 0 {
		c.Timeout = max(d.Timeout, 2*c.Interval)
	}
	if c.Warmup == 0 {
		c.Warmup = c.Timeout
	}
	if c.LeaveLinger == 0 {
		c.LeaveLinger = d.LeaveLinger
	}
	if c.Retain == 0 {
		c.Retain = d.Retain
	}
	if c.Clock == nil {
		c.Clock = SystemClock()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c at once, naming the field. Zero
// timings are valid (EnsureDefaults fills them).
func (c Config) Validate() error {
	cfg := c.EnsureDefaults()
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if cfg.NodeID == "" || !nameOrIDOK(cfg.NodeID) {
		add("NodeID: %q: required, 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'", cfg.NodeID)
	}
	if cfg.Peer == "" {
		add("Peer: required (this node's peer ID)")
	}
	if cfg.Interval < 0 {
		add("Interval: %s is negative", cfg.Interval)
	}
	if cfg.Timeout < 2*cfg.Interval {
		add("Timeout: %s is less than 2×Interval (%s): a single lost heartbeat would cause a failover", cfg.Timeout, 2*cfg.Interval)
	}
	if cfg.IdlePeriod != 0 && cfg.IdlePeriod < cfg.Interval {
		add("IdlePeriod: %s is less than Interval (%s): use 0 for the default or at least Interval", cfg.IdlePeriod, cfg.Interval)
	}
	if cfg.IdlePeriod > maxPeriod {
		add("IdlePeriod: %s is above %s", cfg.IdlePeriod, maxPeriod)
	}
	if cfg.Warmup < cfg.Interval {
		add("Warmup: %s is less than Interval (%s): a starting node would decide before hearing anyone", cfg.Warmup, cfg.Interval)
	}
	if cfg.LeaveLinger < 0 {
		add("LeaveLinger: %s is negative", cfg.LeaveLinger)
	}
	if cfg.Retain < cfg.Timeout {
		add("Retain: %s is less than Timeout (%s)", cfg.Retain, cfg.Timeout)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	return nil
}

// TermStore keeps the highest term of each group across restarts. The
// runner calls it from one goroutine at a time: LoadTerms once in New,
// SaveTerms after terms changed (rarely: on leadership changes). SaveTerms
// may block briefly (a small file write); an error is logged.
type TermStore interface {
	LoadTerms() (map[string]uint64, error)
	SaveTerms(map[string]uint64) error
}

// Clock is a monotonic clock and timer source. Now must carry a monotonic
// reading (time.Now does), because the runner measures every duration as
// Now().Sub(start).
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the runner uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// SystemClock is the real monotonic clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time        { return t.t.C }
func (t sysTimer) Stop() bool                 { return t.t.Stop() }
func (t sysTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
