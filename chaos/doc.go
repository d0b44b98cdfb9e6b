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
//     find the rest by mDNS, and run without DHT. Every host compacts
//     its history every 3 s (--compact-every), so every scenario checks
//     convergence with compaction running under its faults, and evicts
//     a member unheard for 15 s (--compact-evict-after).
//   - Nemeses (nemesis.go): partition-halves, partition-majority,
//     isolate, bridge, one-way, loss, delay, wan-kill (wan.go: the leader
//     killed and restarted across slow links), kill, pause, clock-skew,
//     wipe, partition-outlasting-history (outlast.go: the halves stay
//     apart until each has evicted the other, so one rebases on heal),
//     adversary (adversary.go: a hostile peer with the network key,
//     chaos/adversary run as `starling chaos adversary` in one host's
//     namespace, floods heads, forges deltas, sends unreferenced blocks
//     and junk, loops snapshot requests and reports a far-future clock;
//     the adversary checker bounds visibility, RSS, write p99 and
//     refusals during it against a quiet baseline), and the NAT nemeses
//     (nat.go: nat-hub-kill, nat-router-restart, nat-symmetric; upnp.go:
//     nat-upnp, whose routers run miniupnpd and map ports), which
//     need a network of their own: node 1 public on the bridge, every
//     other node alone in a site namespace behind its own router
//     namespace (nft masquerade; a cone or a symmetric NAT; no port
//     forwarding), reached by the harness over a management link, with
//     node 1 as its only static peer. There the bridge is 192.0.0.0/24
//     (hosts from .65): libp2p hole-punches, relays and runs AutoNAT
//     only for addresses it counts as public (netlab.InternetSubnet says
//     why this block), and the nodes are told their reachability
//     (--reachability public or private, where the build has the flag). The runner rebuilds the lab when a
//     scenario's nemeses need another network (TopologyNemesis); the
//     "nat" checker judges what they measured (writes crossing between
//     sites within 2 s, the sites connected within 30 s of meeting).
//     PendingNemeses keeps nemeses whose feature is not built yet out of
//     the quick sweep and the soak; CoveredNemeses keeps out of the
//     quick sweep those another of its nemeses runs whole. Network faults are rules kept per fault in one nft table
//     (bridge family), replaced atomically, so they combine; delay queues
//     frames to internal/nfqueue (this kernel has no netem); process
//     faults claim their hosts. Each injection and heal is logged and
//     recorded in the history as it happens.
//   - Models (model.go). A Model bundles a Workload (clients), a Reader
//     (a host's state and its digest), an Oracle (what a caught-up host
//     must show) and Checkers. The "entity" model (entity.go, the
//     default) prepares a small tree, writes typed fields on every node
//     (alone and in batches), deletes and restores tags, moves sensors
//     and lines (so concurrent moves close cycles), and records each
//     write's version (HLC timestamp, writer) from the node's answer. Its
//     oracle is last-writer-wins: per register the expected winner is the
//     greatest version among acknowledged writes, a later version being
//     accepted only when a write of unknown outcome explains it; its
//     checkers count lost writes, phantom values and tree violations (a
//     cycle, an orphan, a cycle resolved against entity/doc.go's rule).
//     The "kv" model (kv.go) drives the raw key-value API. The runner
//     adds the divergence (digest; the entity state also says what
//     differs) and process (no node exited on its own) checks to every
//     model.
//   - Observers. Checkers that implement Observer also look at the
//     cluster at stable moments during the run (a fault has settled, a
//     heal has converged, the end), with its connected components. The
//     "election" checker (election.go) requires one leader per component,
//     the lowest running node ID, and measures failover and heal times;
//     it also counts false failovers: leadership changes with reason
//     "failed" (from every host's /v1/cluster/events) whose previous
//     leader no fault window had stopped or cut off from that host.
//   - A wide-area network (Config.LinkDelay, --link-delay) holds every
//     frame between hosts for the whole scenario, so each round's kill
//     or pause strikes nodes across slow links: the wan preset's soak.
//   - Bounded connections (Config.MaxPeers, --max-peers) start every node
//     with --max-peers: below Nodes-1 each keeps a few connections and
//     gossip crosses the rest, and a healed split must be dialled across
//     by the bound's exceptions (TestChaosBoundedConnections: 7 nodes, 2
//     each). The start then waits for MaxPeers connections each, one
//     component and the first trims, not the full mesh.
//   - The runner (runner.go). Per scenario: fresh hosts, the full mesh
//     (or the bound's), clients at Config.Rate; per round a quiet
//     spell, the faults, a hold drawn from the seed, the heal, and a
//     poll until every host shows every operation acknowledged before
//     the heal (the convergence time). Then the workload stops, the
//     final wait polls until all hosts are equal and complete (bounded
//     by DefaultConvergeTimeout, derived from the nodes' liveness and sync
//     timeouts), and the checkers judge. A failed scenario keeps its
//     logs, history (JSON lines) and report under ArtifactsDir.
//   - The seed drives the schedule, targets, durations and every
//     client's choices; the report prints it and the replay command.
//
// Extension points: a model is a ModelFactory in builtinModels (its
// Workload optionally a Preparer, which sets the cluster up before the
// clients start); an extra checker is a CheckerFactory in
// builtinCheckers, chosen with Config.Checks (--check), optionally an
// Observer.
//
// The checkers are proven to fail: TestChaosCatchesUnhealedPartition
// never heals a partition, and TestChaosCatchesBrokenBuild runs one node
// of a binary built with -tags chaosbroken that drops every remote delta
// (Config.RunCommand starts it with `starling chaos broken-node`); both
// must report lost writes and divergence. TestChaosCatchesNATNoPath
// kills the hub between two sites behind symmetric NATs, where no write
// can cross, and the nat checker must say so; TestChaosCatchesNoPortMapping
// runs nat-upnp with port mapping off on the sites, and the nat checker
// must find no mapping. The adversary checker's
// bounds are proven to fail on synthetic histories (adversary_test.go).
package chaos
