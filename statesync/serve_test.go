package statesync

import (
	"bytes"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/p2p"
)

// fakeStream is a state request in, the answer out.
type fakeStream struct {
	in  io.Reader
	out bytes.Buffer
}

func (f *fakeStream) Read(p []byte) (int, error)  { return f.in.Read(p) }
func (f *fakeStream) Write(p []byte) (int, error) { return f.out.Write(p) }
func (f *fakeStream) Close() error                { return nil }

// TestServeRefusesBeyondServeMax: a node already serving ServeMax state
// transfers refuses the next request with the reason (the asking node
// tries another peer), instead of taking one more snapshot (three at
// once held a local write for 28 s).
func TestServeRefusesBeyondServeMax(t *testing.T) {
	y := &Syncer{
		cfg:     Config{NodeID: "node1"},
		log:     slog.New(slog.DiscardHandler),
		serving: make(chan struct{}, 1),
	}
	y.prog.Phase = nodestate.PhaseActive
	y.serving <- struct{}{} // one transfer running
	s := &fakeStream{in: strings.NewReader(stateRequest)}
	y.serveState(testutil.PeerID(t), s)
	got := s.out.String()
	if len(got) == 0 || got[0] != 1 || !strings.Contains(got, "already serves 1 state transfer(s) at once") {
		t.Fatalf("answer %q: want a refusal saying the node serves the most at once", got)
	}
}

// TestServeRefusesAPeerAskingAgainTooSoon: one peer asking for state
// transfers back to back (the chaos adversary) gets one, then a refusal
// saying when to ask again; another peer is served meanwhile.
func TestServeRefusesAPeerAskingAgainTooSoon(t *testing.T) {
	y := &Syncer{cfg: Config{NodeID: "node1"}, log: slog.New(slog.DiscardHandler), serving: make(chan struct{}, 2)}
	y.prog.Phase = nodestate.PhaseActive
	mallory, other := testutil.PeerID(t), testutil.PeerID(t)
	if wait := y.servedRecently(mallory); wait != 0 {
		t.Fatalf("first request refused (wait %v)", wait)
	}
	s := &fakeStream{in: strings.NewReader(stateRequest)}
	y.serveState(mallory, s)
	if got := s.out.String(); len(got) == 0 || got[0] != 1 || !strings.Contains(got, "less than 10s ago") {
		t.Fatalf("second request in a row: answer %q, want a refusal saying when to ask again", got)
	}
	if wait := y.servedRecently(other); wait != 0 {
		t.Fatalf("another peer refused (wait %v)", wait)
	}
}

// A new Syncer says JOINING before Start: the node's monitor publishes
// its first report before the Syncer starts, and peers drop a report
// with no phase as bad (each logged it for every node that started).
func TestProgressBeforeStartIsJoining(t *testing.T) {
	y, err := New(Config{NodeID: "node1", Store: &crdt.Store{}, P2P: &p2p.Node{},
		Loads: func() uint64 { return 0 }, Available: func(bool) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	if p := y.Progress(); p.Phase != nodestate.PhaseJoining {
		t.Fatalf("phase before Start = %q, want %s", p.Phase, nodestate.PhaseJoining)
	}
}

// A node trying a transfer while it joins has nothing to give: it
// answers "empty" (a new cluster's nodes, all trying one another, find
// each other new at once), while a node resyncing after it was active
// refuses.
func TestServeWhileSyncing(t *testing.T) {
	for _, c := range []struct {
		name    string
		joining bool
		refused bool
	}{{"joining", true, false}, {"resyncing", false, true}} {
		y := &Syncer{cfg: Config{NodeID: "node1"}, log: slog.New(slog.DiscardHandler), serving: make(chan struct{}, 1)}
		// Resync sets running too: only the join's flag makes "empty".
		y.prog.Phase, y.running, y.joining = nodestate.PhaseSyncing, true, c.joining
		s := &fakeStream{in: strings.NewReader(stateRequest)}
		y.serveState(testutil.PeerID(t), s)
		got := s.out.String()
		if refused := len(got) > 0 && got[0] == 1; refused != c.refused || len(got) == 0 {
			t.Errorf("%s: answer %q, want refused=%v", c.name, got, c.refused)
		}
		if !c.refused && strings.Contains(got, "itself") {
			t.Errorf("%s: answer %q", c.name, got)
		}
	}
}

// TestTransferOrderPutsRelayedLast: a joining node asks peers it reaches
// directly before peers reached only through a relay (whose circuits a
// relay cuts after 16 MiB), and never disconnected or blocked ones.
func TestTransferOrderPutsRelayedLast(t *testing.T) {
	id := func(s string) peer.ID { return peer.ID(s) }
	got := transferOrder([]p2p.PeerInfo{
		{ID: id("a"), Connected: true, Conn: p2p.ConnRelayed},
		{ID: id("b"), Connected: true, Conn: p2p.ConnDirect},
		{ID: id("c"), Connected: false},
		{ID: id("d"), Connected: true, Conn: p2p.ConnHolePunched},
		{ID: id("e"), Connected: true, Blocked: true, Conn: p2p.ConnDirect},
	})
	if want := []peer.ID{"b", "d", "a"}; !slices.Equal(got, want) {
		t.Fatalf("transferOrder = %v, want %v", got, want)
	}
}
