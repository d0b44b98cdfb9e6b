// Package bench puts Starling beside raw go-ds-crdt on the same
// workloads and prints one table: workload | starling | raw go-ds-crdt |
// ratio | target. It is the engine of `starling bench`.
//
// Both columns run in this process, one system at a time, on the same
// machine and the same workload definitions:
//
//   - Starling: real nodes (node.Open: LevelDB, libp2p on 127.0.0.1,
//     gossipsub, bitswap, the entity tree), writes are entity field
//     writes. The mocknet workload uses crdt.Store directly over
//     libp2p's mocknet (node.Open listens on real sockets).
//   - raw go-ds-crdt v0.6.8 set up the way its README does: go-ds-leveldb
//     with default options, crdt.DefaultOptions(), its PubSubBroadcaster
//     over gossipsub, and boxo bitswap + merkledag as DAG service; a field
//     write is a Put of one key.
//
// Every run has a time budget (Config.Budget): a run that does not finish
// within it is cut off and reported as "> budget (timed out, N% done)"
// instead of being waited for (raw go-ds-crdt needs minutes to walk long
// DAGs; see shared/DESIGN.md).
//
// Walk-through: Run picks the workloads (Config.Only), runs each on both
// systems (workloads.go) through the cluster interface (cluster.go) that
// the Starling harness (starling.go), the raw harness (raw.go) and the
// mocknet harnesses (mocknet.go) implement, and collects Rows into a
// Report, which Format prints as the table (report.go).
package bench
