package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/starling-sync/starling/api"
)

// TestStatusShowsFailingWrites: `starling status` says when the store's
// writes fail, and why; and says nothing of it while they work.
func TestStatusShowsFailingWrites(t *testing.T) {
	var out bytes.Buffer
	e := &cmdEnv{stdout: &out}
	e.printStatus(&api.StatusInfo{NodeID: "n1", Store: api.StoreStatus{Writable: true}})
	if strings.Contains(out.String(), "FAILING") {
		t.Fatalf("status of a writable store says writes fail:\n%s", out.String())
	}
	out.Reset()
	e.printStatus(&api.StatusInfo{NodeID: "n1", Store: api.StoreStatus{WriteError: "write: no space left on device"}})
	if !strings.Contains(out.String(), "FAILING: write: no space left on device") {
		t.Fatalf("status of a store whose writes fail:\n%s", out.String())
	}
}
