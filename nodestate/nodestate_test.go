package nodestate

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Scenario scripts for PeerStates, one command per line; the clock is
// the script's, never the wall clock:
//
//	at 1.5s                          set the clock (absolute)
//	known P                          a peer the node knows of
//	report P node=N phase=ACTIVE [seq=K inc=I leaving queued=Q]
//	up P / down P                    its direct connection
//	tick                             advance the machine to the clock
//	forget P
//	expect P STATE HEALTH            check one peer
//	transitions LINE; LINE; ...      exactly the transitions since the last check ("-" for none)
var peerStateScripts = map[string]string{
	"join, sync, active, suspect, dead, back": `
at 0s
known p1
expect p1 JOINING Disconnected
up p1
report p1 node=n1 phase=JOINING seq=1
expect p1 JOINING Syncing
report p1 node=n1 phase=SYNCING seq=2
expect p1 SYNCING Syncing
report p1 node=n1 phase=ACTIVE seq=3
expect p1 ACTIVE Connected
transitions state ->JOINING; health Disconnected->Connected; health Connected->Syncing; state JOINING->SYNCING; state SYNCING->ACTIVE; health Syncing->Connected
at 2.9s
tick
expect p1 ACTIVE Connected
at 3s
tick
expect p1 SUSPECT Connected
transitions state ACTIVE->SUSPECT
at 5s
report p1 node=n1 phase=ACTIVE seq=4
expect p1 ACTIVE Connected
down p1
at 15s
tick
expect p1 DEAD Disconnected
transitions state SUSPECT->ACTIVE; health Connected->Disconnected; state ACTIVE->DEAD
at 16s
up p1
report p1 node=n1 phase=ACTIVE seq=5
expect p1 ACTIVE Connected
`,
	"stale reports are ignored, a new incarnation is not": `
at 0s
report p1 node=n1 phase=ACTIVE inc=10 seq=5
at 1s
report p1 node=n1 phase=SYNCING inc=10 seq=4
expect p1 ACTIVE Disconnected
report p1 node=n1 phase=SYNCING inc=9 seq=50
expect p1 ACTIVE Disconnected
report p1 node=n1 phase=SYNCING inc=11 seq=1
expect p1 SYNCING Disconnected
`,
	"graceful leave: LEAVING until disconnected, then LEFT": `
at 0s
up p1
report p1 node=n1 phase=ACTIVE seq=1
at 1s
report p1 node=n1 phase=ACTIVE seq=2 leaving
expect p1 LEAVING Connected
at 1.5s
down p1
expect p1 LEFT Disconnected
at 20s
tick
expect p1 LEFT Disconnected
`,
	"LEAVING times out into LEFT while still connected": `
at 0s
up p1
report p1 node=n1 phase=ACTIVE seq=1 leaving
expect p1 LEAVING Connected
at 4.9s
tick
expect p1 LEAVING Connected
at 5s
tick
expect p1 LEFT Connected
`,
	"never heard: JOINING, then DEAD": `
at 0s
known p2
at 9s
tick
expect p2 JOINING Disconnected
at 10s
tick
expect p2 DEAD Disconnected
`,
	"queued blocks mean syncing": `
at 0s
up p1
report p1 node=n1 phase=ACTIVE seq=1 queued=40
expect p1 ACTIVE Syncing
report p1 node=n1 phase=ACTIVE seq=2
expect p1 ACTIVE Connected
`,
	"forget, and forget after an hour of silence": `
at 0s
report p1 node=n1 phase=ACTIVE seq=1
report p2 node=n2 phase=ACTIVE seq=1
forget p1
expect p1 - -
at 10s
tick
expect p2 DEAD Disconnected
at 3610s
tick
expect p2 - -
`,
}

func TestPeerStateScripts(t *testing.T) {
	for name, script := range peerStateScripts {
		t.Run(name, func(t *testing.T) { runPeerStateScript(t, script) })
	}
}

func runPeerStateScript(t *testing.T, script string) {
	s := NewPeerStates(PeerStateConfig{})
	var now time.Duration
	var taken []Transition
	sc := bufio.NewScanner(strings.NewReader(script))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		f := strings.Fields(text)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("line %d %q: %s", line, text, fmt.Sprintf(format, args...))
		}
		switch f[0] {
		case "at":
			d, err := time.ParseDuration(f[1])
			if err != nil {
				fail("%v", err)
			}
			now = d
		case "known":
			s.Known(now, f[1])
		case "up", "down":
			s.Connected(now, f[1], f[0] == "up")
		case "tick":
			s.Tick(now)
		case "forget":
			s.Forget(f[1])
		case "report":
			r := NodeReport{V: 1}
			for _, kv := range f[2:] {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseUint(v, 10, 64)
				switch k {
				case "node":
					r.Node = v
				case "phase":
					r.Sync.Phase = SyncPhase(v)
				case "seq":
					r.Seq = n
				case "inc":
					r.Incarnation = n
				case "queued":
					r.Queued = int(n)
				case "leaving":
					r.Leaving = true
				default:
					fail("unknown report field %q", k)
				}
			}
			s.Observe(now, f[1], r)
		case "expect":
			var got *PeerView
			for _, v := range s.Peers(now) {
				if v.Peer == f[1] {
					got = &v
				}
			}
			if f[2] == "-" {
				if got != nil {
					fail("peer still known: %+v", *got)
				}
				continue
			}
			if got == nil {
				fail("peer unknown")
			}
			if string(got.State) != f[2] || string(got.Health) != f[3] {
				fail("got %s %s", got.State, got.Health)
			}
		case "transitions":
			taken = append(taken, s.Take()...)
			var got []string
			for _, tr := range taken {
				got = append(got, fmt.Sprintf("%s %s->%s", tr.What, tr.From, tr.To))
			}
			want := strings.TrimSpace(strings.TrimPrefix(text, "transitions"))
			if g := strings.Join(got, "; "); g != want && !(want == "-" && g == "") {
				fail("got %s", g)
			}
			taken = nil
		default:
			fail("unknown command")
		}
		taken = append(taken, s.Take()...)
	}
}

func TestDecodeNodeReport(t *testing.T) {
	good := NodeReport{V: 1, Node: "node1", Seq: 3, Sync: SyncProgress{Phase: PhaseActive}, Heads: 2, Height: 9}
	r, err := DecodeNodeReport(good.Encode())
	if err != nil || r.Node != "node1" || r.Height != 9 {
		t.Fatalf("round trip: %+v, %v", r, err)
	}
	bad := []string{
		``, `{`, `[]`, `{"v":2,"node":"n","sync":{"phase":"ACTIVE"}}`,
		`{"v":1,"node":"a b","sync":{"phase":"ACTIVE"}}`,
		`{"v":1,"node":"n","sync":{"phase":"BORED"}}`,
		`{"v":1,"node":"n","sync":{"phase":"ACTIVE"},"heads":-1}`,
		`{"v":1,"node":"n","sync":{"phase":"ACTIVE"},"pad":"` + strings.Repeat("x", MaxReportSize) + `"}`,
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
