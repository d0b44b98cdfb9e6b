package node

import "testing"

// TestAvailabilityCombinesReasons: the node leads only while no reason
// holds it back; statesync finishing a resync does not make a node
// whose store cannot write available again.
func TestAvailabilityCombinesReasons(t *testing.T) {
	var got []bool
	a := newAvailability(func(ok bool) error { got = append(got, ok); return nil })
	steps := []struct {
		reason string
		held   bool
		want   bool
	}{
		{holdSync, false, true},  // started
		{holdDisk, true, false},  // the disk fills
		{holdSync, true, false},  // a resync starts
		{holdSync, false, false}, // and ends: the disk still holds it
		{holdDisk, false, true},  // space is back
	}
	for i, s := range steps {
		if err := a.hold(s.reason, s.held); err != nil {
			t.Fatal(err)
		}
		if last := got[len(got)-1]; last != s.want {
			t.Fatalf("step %d (%s held %v): available %v, want %v (holding: %v)", i, s.reason, s.held, last, s.want, a.held())
		}
	}
	if len(a.held()) != 0 {
		t.Fatalf("reasons left: %v", a.held())
	}
}
