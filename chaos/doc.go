// Package chaos is Starling's partition suite: real `starling run`
// processes as hosts in network namespaces, faults injected while
// clients write, and checkers that prove the hosts converge without
// losing or inventing data.
//
// Walk-through:
//
//   - Isolation. RunIsolated starts the suite again under `unshare` with
//     new network, mount, PID and (without root) user namespaces, so the
//     lab's interfaces and rules exist only there and every process dies
//     with it; Enter then checks it really is alone and mounts a private
//     /run for `ip netns`. CheckPrerequisites says precisely what is
//     missing (ErrUnsupported).
//   - The lab (internal/netlab). The isolated process is the switch: a
//     bridge with address .254 of 10.77.0.0/24, and per host a network
//     namespace joined by a veth pair. Hosts listen for libp2p on
//     10.77.0.K:4001 and serve their API on 10.77.0.K:7401, which the
//     harness reaches over the bridge; faults act only on frames the
//     bridge forwards between hosts, so the API stays reachable. Hosts
//     share a private network key, have the next host as static peer,
//     find the rest by mDNS, and run without DHT.
//   - Nemeses (nemesis.go): partition-halves, partition-majority,
//     isolate, bridge, one-way, loss, delay, kill, pause, clock-skew,
//     wipe. Network faults are rules kept per fault in one nft table
//     (bridge family), replaced atomically, so they combine; delay queues
//     frames to internal/nfqueue (this kernel has no netem); process
//     faults claim their hosts. Each injection and heal is logged and
//     recorded in the history as it happens.
//   - Models (model.go). A Model bundles a Workload (clients), a Reader
//     (a host's state and its digest), an Oracle (what a caught-up host
//     must show) and Checkers. The built-in "kv" model (kv.go) drives the
//     raw key-value API. The runner adds the divergence (digest) and
//     process (no node exited on its own) checks to every model.
//     Checkers that implement Observer also look at the cluster at
//     stable moments during the run, with its connected components.
//   - The runner (runner.go). Per scenario: fresh hosts, the full mesh,
//     clients at Config.Rate; per round a quiet spell, the faults, a
//     hold drawn from the seed, the heal, and a poll until every host
//     shows every operation acknowledged before the heal (the
//     convergence time). Then the workload stops, the final wait polls
//     until all hosts are equal and complete (bounded by
//     DefaultConvergeTimeout, derived from the nodes' liveness and sync
//     timeouts), and the checkers judge. A failed scenario keeps its
//     logs, history (JSON lines) and report under ArtifactsDir.
//   - The seed drives the schedule, targets, durations and every
//     client's choices; the report prints it and the replay command.
//
// Extension points: a model for entity fields (LWW oracle: expected
// winner per field = greatest (HLC timestamp, writer) among acknowledged
// writes, recorded in Op.Ext; tree invariants as a Checker) is a
// ModelFactory added to builtinModels, its Workload optionally a Preparer
// (schemas and entities before the clients start); the election check
// (one leader per group per connected component, the lowest healthy ID)
// is a Checker that also implements Observer, added to builtinCheckers
// and chosen with Config.Checks (--check).
package chaos
