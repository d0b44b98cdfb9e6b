package chaos

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/starling-sync/starling/chaos/internal/netlab"
	"github.com/starling-sync/starling/chaos/internal/nfqueue"
	"github.com/starling-sync/starling/p2p"
)

// Run runs the scenarios of cfg (and the soak) and returns the report.
// It must run in the isolated process, after Enter. The error is for
// the harness failing (bad config, no lab); findings about the nodes are
// in the report (Report.OK).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !Isolated() || os.Getpid() != 1 {
		return nil, errors.New("chaos: Run outside the isolated process: start it with RunIsolated (starling chaos and the tests do)")
	}
	for cfg.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Seed = binary.LittleEndian.Uint64(b[:]) >> 12 // short enough to type
	}
	r := &runner{cfg: cfg, log: cfg.Logger, started: time.Now()}
	r.log.Info("chaos run", "seed", cfg.Seed, "nodes", cfg.Nodes, "model", cfg.Model, "scenarios", len(cfg.Scenarios), "soak", cfg.Soak)

	work := cfg.WorkDir
	if work == "" {
		work = os.Getenv(EnvWorkDir)
	}
	if work == "" {
		dir, err := os.MkdirTemp("", "starling-chaos-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	r.work = work

	help, err := exec.CommandContext(ctx, cfg.Binary, "run", "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("chaos: %s run --help: %w: %s", cfg.Binary, err, help)
	}
	r.runHelp = string(help)
	if cfg.MaxPeers > 0 && !strings.Contains(r.runHelp, "--max-peers") {
		return nil, fmt.Errorf("chaos: MaxPeers (--max-peers) is set but %s run has no --max-peers: use a build with bounded connections", cfg.Binary)
	}
	psk, err := p2p.GeneratePSK()
	if err != nil {
		return nil, err
	}
	r.pskFile = filepath.Join(work, "swarm.key")
	if err := p2p.WritePSK(r.pskFile, psk); err != nil {
		return nil, err
	}

	lab, err := netlab.Setup(ctx, netlab.Config{Hosts: cfg.Nodes, Logger: r.log.With("component", "netlab")})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	r.lab = lab
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		// The lab in use at the end: a NAT scenario replaces it.
		if err := r.lab.Close(cctx); err != nil {
			r.log.Warn("lab clean-up", "err", err)
		}
	}()
	r.hc = &http.Client{Transport: &http.Transport{
		Proxy:               nil, // the lab is closed: never go through a proxy
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 2 * cfg.ClientsPerHost,
		IdleConnTimeout:     10 * time.Second,
	}}
	defer r.hc.CloseIdleConnections()

	// Which nemeses can run here, decided once.
	r.unavailable = map[string]error{}
	probeEnv := r.newEnv(nil, nil)
	for _, n := range cfg.Registry.Nemeses() {
		if err := n.Available(ctx, probeEnv); err != nil {
			r.unavailable[n.Name()] = err
			r.log.Warn("nemesis unavailable: its scenarios are skipped", "nemesis", n.Name(), "reason", err)
		}
	}

	rep := &Report{Seed: cfg.Seed, Started: r.started, Nodes: cfg.Nodes, Model: cfg.Model}
	for _, sc := range cfg.Scenarios {
		if ctx.Err() != nil {
			break
		}
		rep.Results = append(rep.Results, r.runScenario(ctx, sc, len(rep.Results)+1))
	}
	if cfg.Soak > 0 {
		soakRng := mrand.New(mrand.NewPCG(cfg.Seed, hashString("soak")))
		names := make([]string, 0)
		for _, n := range cfg.Registry.Nemeses() {
			// A nemesis with a network of its own (NAT) does not combine
			// with others at random; a pending one waits for its feature.
			_, topo := n.(TopologyNemesis)
			if r.unavailable[n.Name()] == nil && !topo && PendingNemeses[n.Name()] == "" {
				names = append(names, n.Name())
			}
		}
		deadline := time.Now().Add(cfg.Soak)
		for k := 1; time.Now().Before(deadline) && ctx.Err() == nil && len(names) > 0; k++ {
			sc := randomScenario(soakRng, names)
			sc.Rounds = max(cfg.Rounds, 3)
			sc.Name = fmt.Sprintf("soak%d:%s", k, sc.Name)
			rep.Results = append(rep.Results, r.runScenario(ctx, sc, len(rep.Results)+1))
		}
	}
	rep.Duration = time.Since(r.started)
	rep.Artifacts = r.artifactsRoot
	rep.Replay = replayCommand(cfg)
	if rep.Artifacts != "" {
		if err := os.WriteFile(filepath.Join(rep.Artifacts, "summary.txt"), []byte(rep.String()), 0o644); err != nil {
			r.log.Warn("write summary", "err", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("chaos: interrupted: %w", err)
	}
	return rep, nil
}

// randomScenario picks one or two distinct nemeses.
func randomScenario(rng *mrand.Rand, names []string) Scenario {
	k := 1 + rng.IntN(2)
	p := rng.Perm(len(names))
	var ns []string
	for _, i := range p[:min(k, len(names))] {
		ns = append(ns, names[i])
	}
	return Scenario{Name: strings.Join(ns, "+"), Nemeses: ns}
}

func replayCommand(cfg Config) string {
	var names []string
	for _, s := range cfg.Scenarios {
		names = append(names, s.Name)
	}
	cmd := fmt.Sprintf("starling chaos --seed %d --nodes %d --rounds %d --model %s", cfg.Seed, cfg.Nodes, cfg.Rounds, cfg.Model)
	if len(names) > 0 {
		cmd += " --scenarios " + strings.Join(names, ",")
	}
	if cfg.Soak > 0 {
		cmd += " --soak " + cfg.Soak.String()
	}
	return cmd + replayNetwork(cfg)
}

// replayNetwork is the part of a replay command that sets up the nodes'
// network and the faults' holds: the link delay, the bound on
// connections and the hold range, when not the defaults.
func replayNetwork(cfg Config) string {
	var s string
	if cfg.FaultMin != 4*time.Second || cfg.FaultMax != 8*time.Second {
		s += " --fault-min " + cfg.FaultMin.String() + " --fault-max " + cfg.FaultMax.String()
	}
	if cfg.LinkDelay > 0 {
		s += " --link-delay " + cfg.LinkDelay.String()
	}
	if cfg.MaxPeers > 0 {
		s += " --max-peers " + strconv.Itoa(cfg.MaxPeers)
	}
	return s
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// runner is one Run.
type runner struct {
	cfg           Config
	log           *slog.Logger
	started       time.Time
	work          string
	pskFile       string
	runHelp       string
	lab           *netlab.Lab
	labNAT        map[int]netlab.NAT // the NATed hosts of lab
	hc            *http.Client
	unavailable   map[string]error
	artifactsRoot string
}

func (r *runner) newEnv(hosts []*Host, filter *netlab.Filter) *Env {
	if filter == nil {
		filter = netlab.NewFilter(r.cfg.Nodes)
	}
	return &Env{
		hosts: hosts, lab: r.lab, filter: filter, log: r.log,
		startTimeout: r.cfg.StartTimeout, runHelp: r.runHelp, maxPeers: r.cfg.MaxPeers,
		binary: r.cfg.Binary, pskFile: r.pskFile,
		claims: map[*Host]string{}, exclusive: map[string]string{},
	}
}

// boundTrimGrace is p2p's trim grace (unexported there: defaultTrimGrace):
// a node closes no connection younger than this for its bound.
const boundTrimGrace = 10 * time.Second

// runArgs are the flags every start of host k adds after its run
// command: the NAT network's (natRunArgs) and the bound on connections
// (Config.MaxPeers).
func (r *runner) runArgs(k int) []string {
	args := r.natRunArgs(k)
	if r.cfg.MaxPeers > 0 {
		args = append(args, "--max-peers", strconv.Itoa(r.cfg.MaxPeers))
	}
	return args
}

// scenarioRun is the state of one scenario.
type scenarioRun struct {
	r       *runner
	sc      Scenario
	seed    uint64
	dir     string
	log     *slog.Logger
	res     *ScenarioResult
	hosts   []*Host
	env     *Env
	model   *Model
	checks  []Checker
	hist    *History
	clients map[*Host]*clientSet
	// windows are the rounds' fault windows, for CheckInput.Faults.
	windows []FaultWindow
	// linkDelay holds every frame between hosts for Config.LinkDelay.
	linkDelay *nfqueue.Delayer
}

type clientSet struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func (r *runner) runScenario(ctx context.Context, sc Scenario, n int) *ScenarioResult {
	seed := r.cfg.Seed ^ hashString(sc.Name)
	rounds := sc.Rounds
	if rounds <= 0 {
		rounds = r.cfg.Rounds
	}
	res := &ScenarioResult{Scenario: sc.Name, Seed: seed, Rounds: rounds,
		Replay: fmt.Sprintf("starling chaos --seed %d --nodes %d --rounds %d --model %s --scenarios %s", r.cfg.Seed, r.cfg.Nodes, rounds, r.cfg.Model, sc.Name) + replayNetwork(r.cfg)}
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	for _, name := range sc.Nemeses {
		if err := r.unavailable[name]; err != nil {
			res.Skipped = fmt.Sprintf("%s: %v", name, err)
			r.log.Warn("scenario skipped", "scenario", sc.Name, "reason", res.Skipped)
			return res
		}
	}
	s := &scenarioRun{
		r: r, sc: sc, seed: seed, res: res,
		dir:     filepath.Join(r.work, fmt.Sprintf("%02d-%s", n, safeName(sc.Name))),
		log:     r.log.With("scenario", sc.Name),
		clients: map[*Host]*clientSet{},
	}
	s.log.Info("scenario start", "seed", seed)
	if err := r.useTopology(ctx, sc); err != nil {
		res.Errors = append(res.Errors, err.Error())
		s.log.Error("scenario error", "err", err)
		return res
	}
	if err := s.run(ctx); err != nil {
		res.Errors = append(res.Errors, err.Error())
		s.log.Error("scenario error", "err", err)
	}
	s.finish(ctx)
	if ctx.Err() != nil {
		res.Errors = append(res.Errors, "interrupted: "+ctx.Err().Error())
	}
	s.log.Info("scenario done", "ok", res.OK(), "acked", res.Acked, "lost", res.Count("lost"),
		"divergent", res.Count("divergent"), "took", time.Since(start).Round(time.Millisecond))
	return res
}

func (s *scenarioRun) run(ctx context.Context) error {
	cfg := s.r.cfg
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	hist, err := NewHistory(filepath.Join(s.dir, "history.jsonl"))
	if err != nil {
		return err
	}
	s.hist = hist

	mc := ModelConfig{Hosts: cfg.Nodes, OverwriteKeys: cfg.OverwriteKeys}
	mf, err := cfg.Registry.model(cfg.Model)
	if err != nil {
		return err
	}
	if s.model, err = mf(mc); err != nil {
		return err
	}
	s.checks = append(slices.Clone(s.model.Checkers), digestChecker{})
	for _, name := range cfg.Checks {
		cf, err := cfg.Registry.checker(name)
		if err != nil {
			return err
		}
		c, err := cf(mc)
		if err != nil {
			return fmt.Errorf("checker %s: %w", name, err)
		}
		s.checks = append(s.checks, c)
	}

	// A clean network: nothing from the previous scenario.
	filter := netlab.NewFilter(cfg.Nodes)
	if err := s.r.lab.Apply(ctx, filter); err != nil {
		return err
	}
	if err := s.r.lab.ClearDelay(ctx); err != nil {
		return err
	}
	if cfg.LinkDelay > 0 {
		if err := s.delayLinks(ctx); err != nil {
			return err
		}
	}
	s.hosts = make([]*Host, cfg.Nodes)
	peers := s.ringPeer
	if len(s.r.labNAT) > 0 {
		peers = s.publicPeers
	}
	for k := 1; k <= cfg.Nodes; k++ {
		s.hosts[k-1] = &Host{
			index: k, name: hostName(k), addr: s.r.lab.NodeAddr(k), apiAddr: s.r.lab.APIAddr(k), lab: s.r.lab,
			bin: cfg.Binary, dir: filepath.Join(s.dir, hostName(k)),
			logPath: filepath.Join(s.dir, hostName(k)+".log"), pskFile: s.r.pskFile,
			hc: s.r.hc, log: s.log, peers: peers, stopTimeout: 10 * time.Second,
			runCmd: cfg.RunCommand[hostName(k)], runArgs: s.r.runArgs(k),
		}
	}
	s.checks = append(s.checks, processChecker{hosts: s.hosts})
	s.env = s.r.newEnv(s.hosts, filter)
	if s.linkDelay != nil {
		// The delay nemesis finds its resource taken and skips.
		_ = s.env.Exclusive("delay", "--link-delay")
	}
	s.env.fence, s.env.unfence, s.env.replicated = s.fence, s.unfence, s.replicated
	s.env.dir = s.dir
	s.env.record = func(o Op) { s.hist.Append(o) }
	s.env.visible = func(ctx context.Context, due time.Time, timeout time.Duration) (time.Duration, bool) {
		d, ok, _ := s.converge(ctx, due, false, timeout)
		return d, ok
	}
	s.env.visibleAmong = s.visibleAmong

	if err := s.startCluster(ctx); err != nil {
		return err
	}
	s.env.upAt = time.Now()
	if p, ok := s.model.Workload.(Preparer); ok {
		start := time.Now()
		if err := p.Prepare(ctx, s.hosts); err != nil {
			return fmt.Errorf("prepare the %s workload: %w", s.model.Name, err)
		}
		s.log.Info("workload prepared", "model", s.model.Name, "took", time.Since(start).Round(time.Millisecond))
	}
	for _, h := range s.hosts {
		s.startClients(h)
	}
	rng := mrand.New(mrand.NewPCG(s.seed, hashString("nemesis")))
	for round := 1; round <= s.res.Rounds && ctx.Err() == nil; round++ {
		s.round(ctx, rng, round)
	}
	return nil
}

// ringPeer gives host k the next host as its static peer; mDNS finds
// the rest (and the next host again if it was wiped and has a new
// identity).
func (s *scenarioRun) ringPeer(k int) []string {
	next := s.hosts[k%len(s.hosts)]
	if next.index == k {
		return nil
	}
	if a := next.PeerAddr(); a != "" {
		return []string{a}
	}
	return nil
}

func (s *scenarioRun) startCluster(ctx context.Context) error {
	cfg := s.r.cfg
	var wg sync.WaitGroup
	errs := make([]error, len(s.hosts))
	for i, h := range s.hosts {
		wg.Go(func() { errs[i] = h.initDir(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, h := range s.hosts {
		wg.Go(func() { errs[i] = h.Start(ctx, cfg.StartTimeout) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Wait for the full mesh, so the first fault cuts real connections.
	// Behind NAT the mesh is what the sites can dial: each NATed host
	// sees the public ones (its static peers), and they see everyone;
	// whether the sites then reach each other is what the NAT nemeses
	// judge.
	want := func(h *Host) int { return len(s.hosts) - 1 }
	if len(s.r.labNAT) > 0 {
		public := len(s.env.public())
		want = func(h *Host) int {
			if s.r.lab.NATOf(h.index) == netlab.Public {
				return len(s.hosts) - 1
			}
			return public
		}
	}
	// Under a bound smaller than the mesh (Config.MaxPeers) a node dials
	// only while it has fewer than MaxPeers connections, so MaxPeers is
	// what every node reaches; above that it closes the surplus beyond
	// 1.5×MaxPeers, but only connections older than p2p's trim grace
	// (10 s), and the start brings a surplus (every node dials its static
	// peer, and the first peers mDNS finds, at once). So wait for
	// MaxPeers each, for the connections to join every host (one
	// component), and until the first trims are due (the grace and a
	// liveness round), so that the first fault cuts the links the bound
	// keeps rather than a surplus about to go, and a split after it is
	// the nemeses' doing or the nodes' failure to heal it. Not for every
	// node to be at most 1.5×MaxPeers: peers below their bound may keep
	// dialling one that is above (a 7-node cluster with MaxPeers 2 once
	// had a node at 4 for 20 s), and the faults must strike that too.
	bounded := s.env.meshSize() < len(s.hosts)-1
	if bounded {
		full := want
		want = func(h *Host) int { return min(full(h), s.env.meshSize()) }
	}
	p := p2p.DefaultConfig(chaosEnv)
	trimsDue := p.PingInterval + boundTrimGrace
	start := time.Now()
	deadline := start.Add(cfg.StartTimeout)
	if bounded {
		deadline = deadline.Add(trimsDue)
	}
	for {
		var short []string
		conns := map[string][]string{}
		for _, h := range s.hosts {
			ids := connectedPeers(ctx, h)
			conns[h.PeerID()] = ids
			if len(ids) < want(h) {
				short = append(short, fmt.Sprintf("%s sees %d of %d", h.name, len(ids), want(h)))
			}
		}
		if bounded && len(short) == 0 {
			if parts := s.components(conns); len(parts) > 1 {
				short = append(short, fmt.Sprintf("the connections leave %d groups apart (%s)", len(parts), joinGroups(parts)))
			} else if time.Since(start) < trimsDue {
				short = append(short, "the first trims for the bound are not due yet")
			}
		}
		if len(short) == 0 {
			s.log.Info("cluster up", "hosts", len(s.hosts), "mesh_after", time.Since(start).Round(time.Millisecond),
				"connections", s.connectionCounts(conns))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hosts did not connect within %s: %s", cfg.StartTimeout, strings.Join(short, ", "))
		}
		if !sleepCtx(ctx, cfg.PollInterval) {
			return ctx.Err()
		}
	}
}

// components groups the hosts by the connections they report (conns:
// the peer IDs each host, by its own peer ID, says it is connected to;
// a connection counts when either side reports it).
func (s *scenarioRun) components(conns map[string][]string) [][]string {
	index := map[string]int{}
	for _, h := range s.hosts {
		index[h.PeerID()] = h.index
	}
	linked := map[[2]int]bool{}
	for a, ids := range conns {
		for _, b := range ids {
			if i, j := index[a], index[b]; i > 0 && j > 0 {
				linked[[2]int{min(i, j), max(i, j)}] = true
			}
		}
	}
	var out [][]string
	for _, part := range netlab.Components(len(s.hosts), func(a, b int) bool { return linked[[2]int{a, b}] }) {
		names := make([]string, len(part))
		for i, k := range part {
			names[i] = hostName(k)
		}
		out = append(out, names)
	}
	return out
}

// connectionCounts says how many connections each host reported, for
// the log ("n1:2 n2:3 ...").
func (s *scenarioRun) connectionCounts(conns map[string][]string) string {
	out := make([]string, len(s.hosts))
	for i, h := range s.hosts {
		out[i] = fmt.Sprintf("%s:%d", h.name, len(conns[h.PeerID()]))
	}
	return strings.Join(out, " ")
}

// joinGroups writes groups of host names as "n1 n2 | n3".
func joinGroups(parts [][]string) string {
	gs := make([]string, len(parts))
	for i, p := range parts {
		gs[i] = strings.Join(p, " ")
	}
	return strings.Join(gs, " | ")
}

// connectedPeers are the peer IDs h says it is connected to (none when
// it does not answer).
func connectedPeers(ctx context.Context, h *Host) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	code, body, err := h.Request(ctx, http.MethodGet, "/v1/peers", nil)
	if err != nil || code != http.StatusOK {
		return nil
	}
	var pr struct {
		Peers []struct {
			ID        string `json:"id"`
			Connected bool   `json:"connected"`
		} `json:"peers"`
	}
	if json.Unmarshal(body, &pr) != nil {
		return nil
	}
	var ids []string
	for _, p := range pr.Peers {
		if p.Connected {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// startClients starts ClientsPerHost clients on h, each with its own
// rng from the seed and its process ID (which names the host's wipe
// generation, so a wiped host's new clients write new keys).
func (s *scenarioRun) startClients(h *Host) {
	cfg := s.r.cfg
	cs := &clientSet{stop: make(chan struct{})}
	s.clients[h] = cs
	interval := time.Duration(float64(cfg.ClientsPerHost) / cfg.Rate * float64(time.Second))
	for c := range cfg.ClientsPerHost {
		id := fmt.Sprintf("%s-c%d-g%d", h.name, c, h.Wipes())
		client := s.model.Workload.NewClient(Process{ID: id, Host: h})
		rng := mrand.New(mrand.NewPCG(s.seed, hashString(id)))
		cs.wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-cs.stop:
					return
				case <-t.C:
				}
				// Not tied to stop: an operation in flight finishes, so
				// its outcome is known.
				octx, cancel := context.WithTimeout(context.Background(), cfg.OpTimeout)
				op := client.Invoke(octx, rng)
				cancel()
				op.Process = id
				if op.Host == "" {
					op.Host = h.name
				}
				s.hist.Append(op)
			}
		})
	}
}

// fence stops h's clients and waits for their last operations.
func (s *scenarioRun) fence(_ context.Context, h *Host) {
	if cs := s.clients[h]; cs != nil {
		close(cs.stop)
		cs.wg.Wait()
		delete(s.clients, h)
	}
}

func (s *scenarioRun) unfence(h *Host) {
	if s.clients[h] == nil {
		s.startClients(h)
	}
}

func (s *scenarioRun) stopClients() {
	for _, h := range s.hosts {
		s.fence(context.Background(), h)
	}
}

// replicated waits (up to ReplicationWait) until every operation h
// acknowledged shows on some other host, and returns the indexes of those
// that never did, after recording them as forfeited. Operations that
// reached h only through another host are not considered: when that host
// is wiped later, its own check covers what it acknowledged.
func (s *scenarioRun) replicated(ctx context.Context, h *Host) []int {
	var mine []Op
	isMine := map[int]bool{}
	for _, o := range withoutForfeited(s.hist.Ops()) {
		if o.Host == h.name && o.Process != NemesisProcess {
			mine = append(mine, o)
			if o.Acked() {
				isMine[o.Index] = true
			}
		}
	}
	if len(isMine) == 0 {
		return nil
	}
	// h's clients are fenced: its operations are complete. The oracle
	// reads the whole history, so that an operation of h that another
	// host's later one superseded is not demanded (the oracle judges
	// registers, and only the whole history says who won); of what it
	// demands, only h's operations count here. Other clients still run:
	// an operation of theirs in flight may supersede one of h's before
	// it is recorded, which delays the answer by a poll, or, if it never
	// is acknowledged, forfeits h's (harmless: it was superseded).
	missing := func(exp Expectation, st State) []int {
		var out []int
		for _, i := range exp.Missing(st) {
			if isMine[i] {
				out = append(out, i)
			}
		}
		return out
	}
	var others []*Host
	for _, o := range s.hosts {
		if o != h {
			others = append(others, o)
		}
	}
	deadline := time.Now().Add(s.r.cfg.ReplicationWait)
	var pending []int
	for {
		states := s.readAll(ctx, others)
		exp := s.model.Oracle.Expect(withoutForfeited(s.hist.Ops()), farFuture, true)
		pending = nil
		first := true
		for _, st := range states {
			if st.Err != nil {
				continue
			}
			m := missing(exp, st.State)
			if first {
				pending, first = m, false
			} else {
				pending = intersect(pending, m)
			}
		}
		if first { // no other host readable: none of it is known to have left h
			pending = pending[:0]
			for _, o := range mine {
				if o.Acked() {
					pending = append(pending, o.Index)
				}
			}
		}
		if len(pending) == 0 || time.Now().After(deadline) || !sleepCtx(ctx, s.r.cfg.PollInterval) {
			break
		}
	}
	if len(pending) > 0 {
		ext, _ := json.Marshal(pending)
		s.hist.Append(Op{Process: NemesisProcess, Host: h.name, Kind: KindForfeit, Result: ResultInfo,
			Start: time.Now(), End: time.Now(), Value: fmt.Sprintf("%d acknowledged operations only %s had", len(pending), h.name), Ext: ext})
	}
	return pending
}

func intersect(a, b []int) []int {
	in := map[int]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []int
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// round is one fault-and-heal cycle.
func (s *scenarioRun) round(ctx context.Context, rng *mrand.Rand, round int) {
	cfg := s.r.cfg
	if !sleepCtx(ctx, cfg.Quiet) {
		return
	}
	type injected struct {
		name  string
		fault Fault
	}
	var faults []injected
	// injectedAt dates the round's faults: the earliest moment one of
	// them took effect (faultStart), for the settle time and the
	// failovers measured from it.
	var injectedAt time.Time
	for _, name := range s.sc.Nemeses {
		n, _ := cfg.Registry.Nemesis(name)
		began := time.Now()
		f, err := n.Inject(ctx, s.env, rng)
		if err != nil {
			s.event(KindInject, name, "", err)
			if !errors.Is(err, ErrNoTargets) {
				s.res.Errors = append(s.res.Errors, fmt.Sprintf("round %d: inject %s: %v", round, name, err))
			}
			continue
		}
		faults = append(faults, injected{name, f})
		if at := faultStart(f, began); injectedAt.IsZero() || at.Before(injectedAt) {
			injectedAt = at
		}
		s.res.FaultCount++
		s.res.Faults = append(s.res.Faults, fmt.Sprintf("round %d %s: %s", round, name, f.Describe()))
		s.event(KindInject, name, f.Describe(), nil)
	}
	if injectedAt.IsZero() {
		injectedAt = time.Now()
	}
	if len(faults) > 0 {
		m := s.moment()
		s.windows = append(s.windows, FaultWindow{From: injectedAt, Down: m.Down, Paused: m.Paused, Components: m.Components})
	}
	hold := cfg.FaultMin
	if span := cfg.FaultMax - cfg.FaultMin; span > 0 {
		hold += time.Duration(rng.Int64N(int64(span)))
	}
	// The hold counts from the last injection: a nemesis that takes long
	// to inject (partition-outlasting-history waits for evictions) must
	// not eat the hold of the faults injected after it (a soak's
	// partition-outlasting-history+isolate healed isolate at once, its
	// rules having dropped nothing).
	end := time.Now().Add(hold)
	// Observe a settled fault only with time left to look (a wipe's
	// replication wait may have used up the hold).
	if s.observers() && hold > cfg.SettleTime {
		if sleepCtx(ctx, time.Until(injectedAt.Add(cfg.SettleTime))) && time.Until(end) > time.Second {
			var names []string
			for _, f := range faults {
				names = append(names, f.name)
			}
			octx, cancel := context.WithDeadline(ctx, end)
			s.observe(octx, fmt.Sprintf("settled round %d", round), injectedAt, names)
			cancel()
		}
	}
	// Interrupted or not, what was injected is healed.
	interrupted := !sleepCtx(ctx, time.Until(end))
	if len(faults) == 0 {
		return
	}
	healAt := time.Now()
	for i := len(faults) - 1; i >= 0; i-- {
		f := faults[i]
		err := f.fault.Heal(context.WithoutCancel(ctx))
		s.event(KindHeal, f.name, f.fault.Describe(), err)
		if err != nil {
			s.res.Errors = append(s.res.Errors, fmt.Sprintf("round %d: heal %s: %v", round, f.name, err))
		}
	}
	if interrupted {
		return
	}
	d, ok, _ := s.converge(ctx, healAt, false, cfg.ConvergeTimeout)
	s.windows[len(s.windows)-1].To = time.Now()
	if ok {
		s.res.Convergence = append(s.res.Convergence, d)
		s.log.Info("converged after heal", "round", round, "after", d.Round(time.Millisecond))
	} else {
		s.res.ConvergeTimeouts++
		s.log.Warn("no convergence after heal", "round", round, "waited", d.Round(time.Millisecond))
	}
	if s.observers() {
		octx, cancel := context.WithTimeout(ctx, cfg.ConvergeTimeout)
		s.observe(octx, fmt.Sprintf("healed round %d", round), healAt, nil)
		cancel()
	}
}

// event logs a nemesis event and records it in the history.
func (s *scenarioRun) event(kind, name, desc string, err error) {
	op := Op{Process: NemesisProcess, Kind: kind, Key: name, Value: desc, Result: ResultInfo, Start: time.Now(), End: time.Now()}
	if err != nil {
		op.Error = err.Error()
		s.log.Warn("nemesis "+kind+" failed", "nemesis", name, "err", err)
	} else {
		s.log.Info("nemesis "+kind, "nemesis", name, "fault", desc)
	}
	s.hist.Append(op)
}

// converge polls every host until each shows every operation
// acknowledged before due and, when final is set (the workload has
// stopped), all hold the same digest; or until timeout from due.
// It returns the time from due, whether it converged, and the last
// states read.
func (s *scenarioRun) converge(ctx context.Context, due time.Time, final bool, timeout time.Duration) (time.Duration, bool, []HostState) {
	deadline := due.Add(timeout)
	for {
		states := s.readAll(ctx, s.hosts)
		// The history after the reads: everything that ended before them.
		exp := s.model.Oracle.Expect(withoutForfeited(s.hist.Ops()), due, final)
		ok := true
		digest := ""
		for i, st := range states {
			switch {
			case st.Err != nil:
				ok = false
			case len(exp.Missing(st.State)) > 0:
				ok = false
			case final && i > 0 && st.State.Digest() != digest:
				ok = false
			}
			if st.Err == nil && i == 0 {
				digest = st.State.Digest()
			}
		}
		if ok {
			return time.Since(due), true, states
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, s.r.cfg.PollInterval) {
			return time.Since(due), false, states
		}
	}
}

// readAll reads every host of hs in parallel. A paused or down host
// shows as an error.
func (s *scenarioRun) readAll(ctx context.Context, hs []*Host) []HostState {
	out := make([]HostState, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		out[i].Host = h.name
		if !h.Up() || h.Paused() {
			out[i].Err = fmt.Errorf("%s is down or paused", h.name)
			continue
		}
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			out[i].State, out[i].Err = s.model.Reader.Read(rctx, h)
		})
	}
	wg.Wait()
	return out
}

func (s *scenarioRun) observers() bool {
	for _, c := range s.checks {
		if _, ok := c.(Observer); ok {
			return true
		}
	}
	return false
}

func (s *scenarioRun) observe(ctx context.Context, label string, since time.Time, nemeses []string) {
	m := s.moment()
	m.Label, m.Since, m.Nemeses = label, since, nemeses
	for _, c := range s.checks {
		if o, ok := c.(Observer); ok {
			o.Observe(ctx, m)
		}
	}
}

// moment is the cluster now, as the faults in force leave it.
func (s *scenarioRun) moment() Moment {
	m := Moment{Time: time.Now(), Hosts: s.hosts}
	for _, comp := range s.env.filter.Components() {
		var names []string
		for _, k := range comp {
			names = append(names, hostName(k))
		}
		m.Components = append(m.Components, names)
	}
	for _, h := range s.hosts {
		switch {
		case !h.Up():
			m.Down = append(m.Down, h.name)
		case h.Paused():
			m.Paused = append(m.Paused, h.name)
		}
	}
	return m
}

// delayLinks holds every frame between hosts for Config.LinkDelay, for
// the whole scenario: a wide-area network under every round.
func (s *scenarioRun) delayLinks(ctx context.Context) error {
	if err := s.r.lab.EnableDelay(ctx); err != nil {
		return fmt.Errorf("--link-delay: %w", err)
	}
	d, err := nfqueue.Open(delayQueue, s.r.cfg.LinkDelay)
	if err != nil {
		return fmt.Errorf("--link-delay: %w", err)
	}
	if err := s.r.lab.SetDelay(ctx, delayQueue, allPairs(s.r.cfg.Nodes)); err != nil {
		return errors.Join(fmt.Errorf("--link-delay: %w", err), d.Close())
	}
	s.linkDelay = d
	s.log.Info("links delayed", "delay", s.r.cfg.LinkDelay)
	return nil
}

// finish stops the workload, waits for the final convergence, runs the
// checkers, stops the hosts and keeps artifacts if needed. It runs even
// when run failed part-way, with whatever exists.
func (s *scenarioRun) finish(ctx context.Context) {
	cfg := s.r.cfg
	s.stopClients()
	if s.hist == nil {
		return
	}
	// Whatever a failed round left behind goes now.
	if s.env != nil {
		for _, id := range s.env.filter.Faults() {
			s.env.filter.Clear(id)
		}
		cctx := context.WithoutCancel(ctx)
		if err := s.r.lab.Apply(cctx, s.env.filter); err != nil {
			s.res.Errors = append(s.res.Errors, "final heal: "+err.Error())
		}
		_ = s.r.lab.ClearDelay(cctx)
		if d := s.linkDelay; d != nil {
			s.log.Info("link delay ended", "delayed_frames", d.Delayed(), "passed_undelayed", d.Passed())
			if err := d.Close(); err != nil {
				s.res.Errors = append(s.res.Errors, "--link-delay: "+err.Error())
			}
			if d.Delayed() == 0 {
				s.res.Errors = append(s.res.Errors, "--link-delay: no frame was delayed: the NFQUEUE rules matched nothing")
			}
		}
		for _, h := range s.hosts {
			if h.Paused() {
				_ = h.Resume()
			}
		}
	}
	ops := s.hist.Ops()
	for _, o := range ops {
		if o.Process == NemesisProcess {
			continue
		}
		s.res.Ops++
		switch o.Result {
		case ResultOK:
			s.res.Acked++
		case ResultFail:
			s.res.Failed++
		default:
			s.res.Unknown++
		}
	}
	if s.model != nil && len(s.hosts) > 0 {
		fctx := context.WithoutCancel(ctx)
		// due = now: the workload has stopped, every operation has ended.
		// An interrupted run waits briefly: whoever interrupted it waits
		// for the report.
		timeout := cfg.ConvergeTimeout
		if ctx.Err() != nil {
			timeout = min(timeout, 10*time.Second)
		}
		finalAt := time.Now()
		d, ok, states := s.converge(fctx, finalAt, true, timeout)
		s.res.FinalWait, s.res.FinalConverged = d, ok
		if !ok {
			s.log.Warn("no final convergence", "waited", d.Round(time.Millisecond))
		}
		if s.observers() {
			octx, cancel := context.WithTimeout(fctx, cfg.ConvergeTimeout)
			s.observe(octx, "final", finalAt, nil)
			cancel()
		}
		in := CheckInput{History: ops, Final: states, Forfeited: Forfeited(ops), Faults: s.windows}
		for _, c := range s.checks {
			s.res.Verdicts = append(s.res.Verdicts, c.Check(in))
		}
	}
	failed := !s.res.OK()
	if failed {
		s.dumpStatus(ctx)
	}
	var wg sync.WaitGroup
	for _, h := range s.hosts {
		wg.Go(func() {
			if err := h.Stop(); err != nil {
				s.log.Warn("stop host", "host", h.name, "err", err)
			}
		})
	}
	wg.Wait()
	if err := s.hist.Close(); err != nil {
		s.res.Errors = append(s.res.Errors, err.Error())
	}
	if failed || cfg.KeepArtifacts {
		if dir, err := s.keepArtifacts(); err != nil {
			s.log.Error("keep artifacts", "err", err)
		} else {
			s.res.Artifacts = dir
			s.log.Info("artifacts kept", "dir", dir)
		}
	}
	// Data dirs go; logs and history stay until the work dir goes.
	for _, h := range s.hosts {
		_ = os.RemoveAll(h.dir)
	}
}

// dumpStatus saves each host's /v1/status (peers, store state) next to
// its log, for the artifacts.
func (s *scenarioRun) dumpStatus(ctx context.Context) {
	for _, h := range s.hosts {
		if !h.Up() {
			continue
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		code, body, err := h.Request(rctx, http.MethodGet, "/v1/status", nil)
		cancel()
		if err == nil && code == http.StatusOK {
			_ = os.WriteFile(filepath.Join(s.dir, h.name+".status.json"), body, 0o644)
		}
	}
}

// sleepCtx waits d or until ctx ends; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}
