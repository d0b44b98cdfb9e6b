package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/p2p"
)

func rtts(msList ...int) []time.Duration {
	var out []time.Duration
	for _, v := range msList {
		out = append(out, time.Duration(v)*time.Millisecond)
	}
	return out
}

// TestJudgeLinks: a link is judged by the second highest of its samples
// against a quarter of the preset's pause tolerance (LAN 150 ms, WAN
// 1 s); one outlier does not count, a link with too few samples or not
// connected is not judged, and the advice names the preset that fits.
func TestJudgeLinks(t *testing.T) {
	peers := []p2p.PeerLink{
		{ID: peer.ID("wan-link"), Connected: true, RTTs: rtts(200, 201, 205, 199, 210)},
		{ID: peer.ID("lan-link"), Connected: true, RTTs: rtts(1, 2, 1, 900, 1)}, // one outlier
		{ID: peer.ID("jittery"), Connected: true, RTTs: rtts(20, 20, 400, 20, 380)},
		{ID: peer.ID("new"), Connected: true, RTTs: rtts(500, 500)},
		{ID: peer.ID("gone"), Connected: false, RTTs: rtts(500, 500, 500)},
		{ID: peer.ID("removed"), Connected: true, RTTs: rtts(500, 500, 500)},
	}
	names := map[string]string{peer.ID("wan-link").String(): "n2"}
	skip := map[string]bool{peer.ID("removed").String(): true}

	lan, medians, judged := judgeLinks(peers, peer.ID.String, names, skip, election.LANConfig())
	if lan.Preset != "lan" || lan.BudgetMS != 150 || lan.Measured != 3 || lan.WorstMS != 380 {
		t.Fatalf("lan: %+v", lan)
	}
	if len(lan.Slow) != 2 || lan.Slow[0].PeerID != peer.ID("jittery").String() || lan.Slow[1].NodeID != "n2" ||
		lan.Slow[1].RTTMS != 205 || lan.Slow[1].MinRTTMS != 199 {
		t.Fatalf("lan slow links: %+v", lan.Slow)
	}
	if !strings.Contains(lan.Advice, "--election-preset wan") {
		t.Fatalf("lan advice: %q", lan.Advice)
	}
	if len(judged) != 3 || !judged[peer.ID("lan-link").String()] || judged[peer.ID("new").String()] {
		t.Fatalf("judged: %v", judged)
	}
	if len(medians) != 4 || medians[peer.ID("new").String()] != 500*time.Millisecond || medians[peer.ID("lan-link").String()] != time.Millisecond {
		t.Fatalf("medians for the metrics: %v", medians)
	}

	wan, _, _ := judgeLinks(peers, peer.ID.String, names, skip, election.WANConfig())
	if wan.Preset != "wan" || wan.BudgetMS != 1000 || len(wan.Slow) != 0 || wan.Advice != "" {
		t.Fatalf("wan: %+v", wan)
	}
	slowWAN := []p2p.PeerLink{{ID: peer.ID("far"), Connected: true, RTTs: rtts(1500, 1400, 1600)}}
	if st, _, _ := judgeLinks(slowWAN, peer.ID.String, nil, nil, election.WANConfig()); len(st.Slow) != 1 || strings.Contains(st.Advice, "--election-preset") {
		t.Fatalf("links beyond the wan budget: %+v", st)
	}
}

// TestLinkWarner: one warning when a link becomes slow, none while it
// stays slow (a check runs every second), again after linkWarnEvery or
// when another peer becomes slow, and one "fit again" when the slow
// links are judged again and fit; a slow peer that went away (no longer
// judged) has not become fast (it said "fit again" then).
func TestLinkWarner(t *testing.T) {
	slow := func(ids ...string) api.LinkStatus {
		var st api.LinkStatus
		for _, id := range ids {
			st.Slow = append(st.Slow, api.SlowLink{PeerID: id})
		}
		return st
	}
	var w linkWarner
	all := map[string]bool{"a": true, "b": true}
	steps := []struct {
		at            time.Duration
		st            api.LinkStatus
		judged        map[string]bool
		warn, cleared bool
	}{
		{0, slow(), all, false, false},
		{time.Second, slow("a"), all, true, false},
		{2 * time.Second, slow("a"), all, false, false},
		{time.Minute, slow("a"), all, false, false},
		{time.Minute + time.Second, slow("a", "b"), all, true, false},
		{time.Minute + 2*time.Second, slow("a"), map[string]bool{"a": true}, false, false}, // b went away
		{time.Minute + 3*time.Second, slow(), map[string]bool{"a": true}, false, false},    // a fits, b unknown
		{2 * time.Minute, slow(), all, false, true},
		{2*time.Minute + time.Second, slow(), all, false, false},
		{3 * time.Minute, slow("a"), all, false, false},             // back within 10 min of its warning: no new warning
		{time.Minute + linkWarnEvery, slow("a"), all, false, false}, // named again with b at 1m1s
		{time.Minute + time.Second + linkWarnEvery, slow("a"), all, true, false},
	}
	for i, s := range steps {
		warn, cleared := w.update(s.at, s.st, s.judged)
		if warn != s.warn || cleared != s.cleared {
			t.Fatalf("step %d at %v: warn %v cleared %v, want %v %v", i, s.at, warn, cleared, s.warn, s.cleared)
		}
	}
}
