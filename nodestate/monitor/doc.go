// Package monitor drives the peer-state machine of package nodestate for
// a running node: it publishes this node's NodeReport on the "nodestate"
// gossip topic every ReportInterval, feeds the machine with the reports
// and connection events it receives, keeps what the operator views need
// (the cluster table, per-node samples for the web page's charts, recent
// transitions and leadership changes) and serves the Prometheus metrics
// of /metrics (MetricsDoc lists every series). It also checks that this
// node's clock agrees with its peers' (clock.go), and that the round
// trips to its peers fit the election's timings (links.go: a warning,
// status and metrics when the LAN preset runs across a wide-area link).
//
// Start takes a Config naming the node's parts; Close publishes a
// goodbye (the others see LEAVING, then LEFT) and stops the goroutines.
package monitor
