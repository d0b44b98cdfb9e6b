// Package p2p is Starling's network layer: a libp2p host that finds the
// other nodes of its environment, stays connected to them, and carries
// replication traffic and DAG blocks.
//
// # Walk-through
//
// A node is built from a Config (start from DefaultConfig):
//
//	key, _ := p2p.LoadOrCreateIdentity(filepath.Join(dir, "identity.key"))
//	cfg := p2p.DefaultConfig("prod-site-a")
//	cfg.Identity = key
//	cfg.PSK, _ = p2p.LoadPSK(filepath.Join(dir, "swarm.key")) // optional
//	cfg.Blockstore = namespace.Wrap(db, ds.NewKey("/blocks"))
//	n, err := p2p.New(ctx, cfg)
//	defer n.Close()
//
// What New sets up, and why:
//
//   - Identity: an Ed25519 key kept on disk, so the peer ID survives
//     restarts (other nodes list it in their static peers and trust lists).
//   - Private network: with a PSK only nodes holding the same key can
//     connect. libp2p's pnet covers TCP only, so a PSK disables QUIC.
//   - Environment: Config.Env derives every name on the wire (mDNS
//     service, DHT protocol prefix and rendezvous, bitswap prefix,
//     replication topic and stream protocol), so environments never mix.
//   - Discovery: static peers (Config.Peers, AddPeer), mDNS on the LAN,
//     and a rendezvous on a private Kademlia DHT (server mode; it starts
//     advertising once the first peer is connected, because an empty
//     routing table cannot hold a record). Discovered peers join the
//     known-peer set.
//   - Staying connected: neither gossipsub, mDNS nor the DHT re-dial a lost
//     peer quickly. The node keeps every known peer (static, discovered,
//     or one that connected), protects it in the connection manager, and
//     re-dials it with exponential backoff between RedialMin and RedialMax,
//     jittered so that two nodes dialling each other do not retry in
//     lockstep. A ping detects a silent partition (which TCP notices only after
//     minutes): a peer not heard on gossip for PingInterval is pinged, and
//     after PingTimeout without an answer the node closes the connection
//     and the re-dial loop takes over. Beyond 20 connected peers both
//     times grow with their number (pingTimes), so a node's pings per
//     second do not grow with the cluster. Every peer is also pinged at
//     least every 10 ping periods for its round trip (PeerInfo.RTTs,
//     the last 8), which the node's link check holds against the
//     election's timings.
//   - NAT traversal (nat.go), libp2p's own parts, each switchable in
//     Config: AutoNAT v1 and v2 find whether the node is public; a public
//     node runs the circuit relay v2 for its environment's trusted nodes;
//     a private node reserves slots on connected cluster nodes that relay
//     (autorelay, fed from the known peers: no central relay); DCUtR hole
//     punching upgrades a relayed connection to a direct one; UPnP/NAT-PMP
//     port mapping. A relayed connection counts as connected; the streams
//     that must work over it opt in (allowLimited in stream.go).
//     Node.NATStatus and PeerInfo.Conn (direct, hole-punched, relayed)
//     report it.
//   - Address exchange (exchange.go): each node sends the peers it knows,
//     relay addresses included, to each connected peer on connect and
//     when the list changes, so sites that met through a hub keep each
//     other once it is gone.
//   - Dial problems (dialerr.go): a failed dial is classified (another
//     network key, another environment, unreachable, ...) in PeerInfo and
//     logged once a minute per peer when it is a misconfiguration.
//   - Replication (Node.Replication): a gossipsub topic for broadcasts and
//     a direct stream protocol for one peer (the heads exchange on
//     connect). A topic validator drops messages whose author is not in
//     Config.Trusted. It satisfies crdt.Transport.
//   - Blocks (Node.DAGService): a DAG service over Config.Blockstore that
//     fetches missing blocks from connected peers with bitswap.
//   - Peer events (Node.SubscribePeers): connected / disconnected, for the
//     heads exchange and for the election's view of the network.
//   - Block and Unblock: a connection gater that refuses a peer and closes
//     its connections; used to simulate partitions in tests.
//   - A given host (Config.Host): everything above runs on a host made
//     elsewhere, such as a libp2p mocknet's, so that simulations run the
//     same code in one process; listening, the private network key, mDNS
//     and NAT traversal, which belong to a host's construction, are then
//     skipped, and the gater is the host's.
//
// # Goroutines and shutdown
//
// The node owns its goroutines: an event loop (connectedness events to
// known-peer state and PeerEvents), the re-dial loop (one timer, nudged
// on every change), the liveness loop (a ticker; one short-lived goroutine
// per ping), the gossip pump, and, with the DHT, an advertise and a find
// loop. Close cancels them, waits for all of them, then closes bitswap,
// pubsub, the DHT and the host, in that order (measured to leak nothing).
//
// # Delivery caveats
//
// Gossipsub is best effort: a message published while a peer is cut off,
// or within about 100 ms after its subscription appears, may never reach
// it. Receive queues messages from the moment New returns, but callers
// must still exchange heads directly (SendTo) when a peer connects, and
// rebroadcast.
package p2p
