package p2p

import "testing"

func TestRenewDue(t *testing.T) {
	var due []int
	for m := 1; m <= 100; m++ {
		if renewDue(m) {
			due = append(due, m)
		}
	}
	want := []int{2, 3, 5, 9, 17, 33, 65, 97}
	if len(due) != len(want) {
		t.Fatalf("renewed at checks %v, want %v", due, want)
	}
	for i := range want {
		if due[i] != want[i] {
			t.Fatalf("renewed at checks %v, want %v", due, want)
		}
	}
}
