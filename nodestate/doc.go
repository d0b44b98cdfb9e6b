// Package nodestate is what each node computes for every peer it knows:
// its state (JOINING, SYNCING, ACTIVE, SUSPECT, DEAD, LEAVING, LEFT) and
// the health of the replication link (connected, syncing,
// disconnected). PeerStates is the pure state machine: no clock (every
// input carries the time as a duration), no goroutines, no network,
// built like election's rule. Package nodestate/monitor drives it with a
// ticker, the "nodestate" gossip topic and the p2p connection events.
//
// Each node publishes a small NodeReport every second on the gossipsub
// topic "starling/<env>/nodestate": its sync phase (SyncProgress), store
// counters and whether it is leaving. Why a topic of its own and not the
// election heartbeat: the heartbeat's wire format refuses unknown flags
// and trailing bytes, so extending it would break every node of the
// previous version, and the reports carry counters the election has no
// use for. The cost is one ~300-byte message per node per second.
//
// SyncProgress and its phases are the node's own join/resync state
// (package statesync keeps it); they ride in the report and in the API.
package nodestate
