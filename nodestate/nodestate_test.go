package nodestate

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeNodeReport(t *testing.T) {
	good := NodeReport{V: 1, Node: "node1", Seq: 3, Sync: SyncProgress{Phase: PhaseActive}, Heads: 2, Height: 9,
		LiveBytes: 1200, HistoryBytes: 34000}
	r, err := DecodeNodeReport(good.Encode())
	if err != nil || r.Node != "node1" || r.Height != 9 || r.LiveBytes != 1200 || r.HistoryBytes != 34000 {
		t.Fatalf("round trip: %+v, %v", r, err)
	}
	bad := []string{
		``, `{`, `[]`, `{"v":2,"node":"n","sync":{"phase":"ACTIVE"}}`,
		`{"v":1,"node":"a b","sync":{"phase":"ACTIVE"}}`,
		`{"v":1,"node":"n","sync":{"phase":"BORED"}}`,
		`{"v":1,"node":"n","sync":{"phase":"ACTIVE"},"heads":-1}`,
		`{"v":1,"node":"n","sync":{"phase":"ACTIVE"},"live_bytes":-1}`,
		`{"v":1,"node":"n","sync":{"phase":"ACTIVE"},"history_bytes":-5}`,
		`{"v":1,"node":"n","sync":{"phase":"ACTIVE"},"pad":"` + strings.Repeat("x", MaxReportSize) + `"}`,
	}
	// A report of an older node has no sizes: accepted, sizes 0.
	old, err := DecodeNodeReport([]byte(`{"v":1,"node":"n","sync":{"phase":"ACTIVE"}}`))
	if err != nil || old.LiveBytes != 0 || old.HistoryBytes != 0 {
		t.Errorf("report without sizes: %+v, %v", old, err)
	}
	for _, b := range bad {
		if _, err := DecodeNodeReport([]byte(b)); !errors.Is(err, ErrBadReport) {
			t.Errorf("%.60q: %v, want ErrBadReport", b, err)
		}
	}
}

func FuzzDecodeNodeReport(f *testing.F) {
	f.Add((&NodeReport{V: 1, Node: "n", Sync: SyncProgress{Phase: PhaseSyncing, EntriesTotal: 5}}).Encode())
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeNodeReport(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode the same again.
		r2, err := DecodeNodeReport(r.Encode())
		if err != nil || r2.Node != r.Node || r2.Seq != r.Seq || r2.Sync.Phase != r.Sync.Phase {
			t.Fatalf("re-decode: %+v vs %+v, %v", r, r2, err)
		}
	})
}

func TestPeerStateConfigValidate(t *testing.T) {
	if err := (PeerStateConfig{SuspectAfter: 5 * time.Second, DeadAfter: 2 * time.Second}).Validate(); err == nil {
		t.Error("DeadAfter below SuspectAfter accepted")
	}
	if err := (PeerStateConfig{}).Validate(); err != nil {
		t.Error(err)
	}
}
