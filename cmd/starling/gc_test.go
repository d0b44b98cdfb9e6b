package main

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestSetNodeGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	setNodeGC()
	if got := debug.SetGCPercent(100); got != nodeGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, nodeGCPercent)
	}
	t.Setenv("GOGC", "200")
	setNodeGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC=200 in the environment: setNodeGC changed the GC percent to %d", got)
	}
}
