package main

import (
	"os"
	"runtime/debug"
)

// nodeGCPercent is the collector's GOGC in a process that runs nodes
// (`starling run`, `starling local`) when its environment sets no GOGC.
//
// Go's default, 100, lets garbage grow as large as the live heap before it
// collects, so an idle node's RSS was about twice its live heap; 50 lets
// it grow to half. Measured with `starling local --nodes 24` idle (two
// runs each): 13.1, 13.0 -> 11.0, 10.8 MiB RSS per node, 5 -> 8-11
// collections in 20 s, process CPU within the noise of a shared machine;
// under write load 6-9% more CPU per field write (BenchmarkFieldWrite),
// writes/s within the noise. GOGC in the environment (any value, off
// included) is the operator's choice and wins; GOMEMLIMIT applies on top.
const nodeGCPercent = 50

// setNodeGC applies nodeGCPercent unless the environment sets GOGC.
func setNodeGC() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(nodeGCPercent)
}
