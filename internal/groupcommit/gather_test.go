package groupcommit

import (
	"testing"
	"time"
)

func TestGatherTakesWhatIsWaitingAndCarriesWhatDoesNotFit(t *testing.T) {
	ch := make(chan int, 10)
	g := &Gatherer[int]{C: ch, Window: time.Hour}
	for i := 2; i <= 6; i++ {
		ch <- i
	}
	sum := 1
	group, open := g.Gather(1, func(r int) bool {
		if sum+r > 10 {
			return false
		}
		sum += r
		return true
	}, func() bool { return false })
	if !open || len(group) != 4 || group[3] != 4 {
		t.Fatalf("group %v (open %v), want [1 2 3 4]", group, open)
	}
	if c, ok := g.Carried(); !ok || c != 5 {
		t.Fatalf("carried %v, %v; want 5", c, ok)
	}
	if _, ok := g.Carried(); ok {
		t.Fatal("the carried request is handed out twice")
	}
}

// TestGatherWaitsForTheWritersItAnswered: after a group of three (one
// more carried), the next group waits for four requests, no longer than
// the window, and not at all once they are there.
func TestGatherWaitsForTheWritersItAnswered(t *testing.T) {
	ch := make(chan int, 10)
	g := &Gatherer[int]{C: ch, Window: time.Hour}
	none := func() bool { return false }
	// A lone request: no wait, whatever the window.
	if group, _ := g.Gather(1, func(int) bool { return true }, none); len(group) != 1 {
		t.Fatalf("lone group %v", group)
	}
	ch <- 2
	ch <- 3
	ch <- 4
	n := 1
	g.Gather(1, func(int) bool { n++; return n <= 3 }, none) // [1 2 3], 4 carried: 4 answered
	first, _ := g.Carried()
	go func() {
		for i := 5; i <= 7; i++ {
			time.Sleep(time.Millisecond)
			ch <- i
		}
	}()
	done := make(chan []int)
	go func() {
		group, _ := g.Gather(first, func(int) bool { return true }, none)
		done <- group
	}()
	select {
	case group := <-done:
		if len(group) != 4 {
			t.Fatalf("group %v, want the carried request and the three that came back", group)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Gather waited for more than the writers it answered (the window is an hour)")
	}
	// A window ends the wait when the writers do not come back.
	g.Window = 20 * time.Millisecond
	start := time.Now()
	group, _ := g.Gather(9, func(int) bool { return true }, none)
	if len(group) != 1 || time.Since(start) < g.Window {
		t.Fatalf("group %v after %v: want the first alone, after the window", group, time.Since(start))
	}
}

func TestGatherStopsWhenFullAndWhenClosed(t *testing.T) {
	ch := make(chan int, 10)
	g := &Gatherer[int]{C: ch}
	for i := 2; i <= 5; i++ {
		ch <- i
	}
	n := 1
	group, _ := g.Gather(1, func(int) bool { n++; return true }, func() bool { return n >= 3 })
	if len(group) != 3 {
		t.Fatalf("group %v, want 3 (full)", group)
	}
	if _, ok := g.Carried(); ok {
		t.Fatal("a full group carried a request it never took")
	}
	close(ch)
	group, open := g.Gather(0, func(int) bool { return true }, func() bool { return false })
	if open || len(group) != 3 {
		t.Fatalf("group %v open %v, want [0 4 5] and closed", group, open)
	}
}
