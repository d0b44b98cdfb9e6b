package nodestate

// Scenario scripts (testdata/*.txt) drive one PeerStates per script with
// a scripted clock: no goroutines, no wall clock. The scripts are run by
// github.com/cockroachdb/datadriven, as etcd raft's and pebble's are:
// each command is followed by "----" and the output it must produce.
// After a change in behaviour, rewrite the expected output with
//
//	go test ./nodestate/ -run TestScenarios -rewrite
//
// and read the diff: it is the change.
//
// A line starting with '#' is a comment. The clock starts at 0 and moves
// only with tick. Every command prints
// the transitions it caused (Take), one a line:
//
//	PEER [(NODE)] state|health FROM -> TO (REASON)
//
// FROM is "(new)" for a peer just learnt of; NODE is the node ID of its
// last report, if any. Commands:
//
//	config [suspect=D] [dead=D] [left=D] [forget=D]
//	                          a machine with this config (zero: default);
//	                          only before any other command; prints the
//	                          Validate error, if any
//	report PEER [node=N] [phase=JOINING|SYNCING|ACTIVE] [inc=I] [seq=K]
//	       [leaving] [queued=Q] [dirty] [heads=H] [height=H]
//	       [writes_out=W] [writes_in=W] [repl_ms=F]
//	                          a NodeReport from PEER, received now. It goes
//	                          through Encode and DecodeNodeReport as on the
//	                          wire; a report the decoder refuses is dropped
//	                          (as the monitor drops it) and printed as
//	                          "dropped: ERROR". Defaults: node, phase and
//	                          inc those of PEER's newest report so far
//	                          (else no node, ACTIVE, 1); seq one above
//	                          its seq if inc is the same (else 1). A late
//	                          or dropped report changes no default
//	connect PEER / disconnect PEER
//	                          its direct connection came up / went down
//	known PEER                the node knows of PEER, without news of it
//	ontime PEER               prints "on time" or "not on time" (OnTime)
//	forget PEER               the operator removed PEER; prints
//	                          "forgotten" or "unknown"
//	tick [D]                  advances the clock by D (0 by default) and
//	                          then the machine; prints the clock first,
//	                          "t=D"
//	peers                     the table (Peers), one peer a line:
//	    PEER NODE|- STATE HEALTH since=D [age=D inc=I seq=K phase=P ...]
//	                          (age and the report's fields once heard;
//	                          the report's counters when not zero)

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario scripts in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			sc := &scenario{s: NewPeerStates(PeerStateConfig{}), sent: map[string]NodeReport{}}
			datadriven.RunTest(t, f, sc.run)
		})
	}
}

type scenario struct {
	s    *PeerStates
	now  time.Duration
	used bool                  // a command other than config ran
	sent map[string]NodeReport // the newest report sent by each peer
}

func (sc *scenario) run(t *testing.T, td *datadriven.TestData) string {
	var out strings.Builder
	if td.Cmd != "config" {
		sc.used = true
	}
	switch td.Cmd {
	case "config":
		if sc.used {
			td.Fatalf(t, "config must come before any other command")
		}
		var cfg PeerStateConfig
		for _, a := range td.CmdArgs {
			d := sc.duration(t, td, a)
			switch a.Key {
			case "suspect":
				cfg.SuspectAfter = d
			case "dead":
				cfg.DeadAfter = d
			case "left":
				cfg.LeftAfter = d
			case "forget":
				cfg.ForgetAfter = d
			default:
				td.Fatalf(t, "unknown config key %q", a.Key)
			}
		}
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
		}
		sc.s = NewPeerStates(cfg)
	case "report":
		peer := sc.peer(t, td)
		r := sc.report(t, td, peer)
		got, err := DecodeNodeReport(r.Encode())
		if err != nil {
			fmt.Fprintf(&out, "dropped: %v\n", err)
			break
		}
		if prev, ok := sc.sent[peer]; !ok || r.Incarnation > prev.Incarnation ||
			(r.Incarnation == prev.Incarnation && r.Seq > prev.Seq) {
			sc.sent[peer] = r
		}
		sc.s.Observe(sc.now, peer, *got)
	case "connect", "disconnect":
		sc.s.Connected(sc.now, sc.peer(t, td), td.Cmd == "connect")
	case "known":
		sc.s.Known(sc.now, sc.peer(t, td))
	case "ontime":
		if sc.s.OnTime(sc.now, sc.peer(t, td)) {
			out.WriteString("on time\n")
		} else {
			out.WriteString("not on time\n")
		}
	case "forget":
		if sc.s.Forget(sc.peer(t, td)) {
			out.WriteString("forgotten\n")
		} else {
			out.WriteString("unknown\n")
		}
	case "tick":
		if len(td.CmdArgs) > 1 {
			td.Fatalf(t, "tick takes one duration")
		}
		if len(td.CmdArgs) == 1 {
			d, err := time.ParseDuration(td.CmdArgs[0].Key)
			if err != nil || d < 0 {
				td.Fatalf(t, "bad duration %q", td.CmdArgs[0].Key)
			}
			sc.now += d
		}
		sc.s.Tick(sc.now)
		fmt.Fprintf(&out, "t=%v\n", sc.now)
	case "peers":
		for _, v := range sc.s.Peers(sc.now) {
			out.WriteString(sc.view(t, td, v))
			out.WriteByte('\n')
		}
	default:
		td.Fatalf(t, "unknown command %q", td.Cmd)
	}
	for _, tr := range sc.s.Take() {
		if tr.At != sc.now {
			t.Errorf("%s: transition %v stamped %v, clock %v", td.Pos, tr, tr.At, sc.now)
		}
		from := tr.From
		if from == "" {
			from = "(new)"
		}
		name := tr.Peer
		if tr.Node != "" {
			name += " (" + tr.Node + ")"
		}
		fmt.Fprintf(&out, "%s %s %s -> %s (%s)\n", name, tr.What, from, tr.To, tr.Reason)
	}
	return out.String()
}

// peer is the command's first argument, a peer ID.
func (sc *scenario) peer(t *testing.T, td *datadriven.TestData) string {
	if len(td.CmdArgs) == 0 || len(td.CmdArgs[0].Vals) > 0 {
		td.Fatalf(t, "%s needs a peer first", td.Cmd)
	}
	return td.CmdArgs[0].Key
}

func (sc *scenario) duration(t *testing.T, td *datadriven.TestData, a datadriven.CmdArg) time.Duration {
	d, err := time.ParseDuration(a.SingleVal(t))
	if err != nil {
		td.Fatalf(t, "%s: %v", a.Key, err)
	}
	return d
}

// report builds PEER's report from the arguments and its newest one.
func (sc *scenario) report(t *testing.T, td *datadriven.TestData, peer string) NodeReport {
	prev, ok := sc.sent[peer]
	r := NodeReport{Node: prev.Node, Incarnation: 1, Sync: SyncProgress{Phase: PhaseActive}}
	if ok {
		r.Incarnation, r.Sync.Phase = prev.Incarnation, prev.Sync.Phase
	}
	seqSet := false
	for _, a := range td.CmdArgs[1:] {
		if a.Key == "leaving" || a.Key == "dirty" {
			if len(a.Vals) > 0 {
				td.Fatalf(t, "%s takes no value", a.Key)
			}
			r.Leaving = r.Leaving || a.Key == "leaving"
			r.Dirty = r.Dirty || a.Key == "dirty"
			continue
		}
		v := a.SingleVal(t)
		var n uint64
		var f float64
		var err error
		switch a.Key {
		case "node", "phase":
		case "repl_ms":
			f, err = strconv.ParseFloat(v, 64)
		default:
			n, err = strconv.ParseUint(v, 10, 64)
		}
		if err != nil {
			td.Fatalf(t, "%s: %v", a.Key, err)
		}
		switch a.Key {
		case "node":
			r.Node = v
		case "phase":
			r.Sync.Phase = SyncPhase(v)
		case "inc":
			r.Incarnation = n
		case "seq":
			r.Seq, seqSet = n, true
		case "queued":
			r.Queued = int(n)
		case "heads":
			r.Heads = int(n)
		case "height":
			r.Height = n
		case "writes_out":
			r.WritesOut = n
		case "writes_in":
			r.WritesIn = n
		case "repl_ms":
			r.ReplLatencyMS = f
		case "period_ms":
			r.PeriodMS = int64(n)
		default:
			td.Fatalf(t, "unknown report field %q", a.Key)
		}
	}
	if !seqSet {
		r.Seq = 1
		if ok && prev.Incarnation == r.Incarnation {
			r.Seq = prev.Seq + 1
		}
	}
	return r
}

// view prints one row of the table.
func (sc *scenario) view(t *testing.T, td *datadriven.TestData, v PeerView) string {
	if v.Connected != (v.Health == HealthConnected || v.Health == HealthSyncing) {
		t.Errorf("%s: %s: connected %v, health %s", td.Pos, v.Peer, v.Connected, v.Health)
	}
	node := v.Node
	if node == "" {
		node = "-"
	}
	row := fmt.Sprintf("%s %s %s %s since=%v", v.Peer, node, v.State, v.Health, v.Since)
	if !v.Heard {
		return row
	}
	r := v.Report
	row += fmt.Sprintf(" age=%v inc=%d seq=%d phase=%s", v.Age, r.Incarnation, r.Seq, r.Sync.Phase)
	if r.Leaving {
		row += " leaving"
	}
	if r.Dirty {
		row += " dirty"
	}
	for _, c := range []struct {
		k string
		v uint64
	}{{"queued", uint64(r.Queued)}, {"heads", uint64(r.Heads)}, {"height", r.Height},
		{"writes_out", r.WritesOut}, {"writes_in", r.WritesIn}} {
		if c.v != 0 {
			row += fmt.Sprintf(" %s=%d", c.k, c.v)
		}
	}
	if r.ReplLatencyMS != 0 {
		row += fmt.Sprintf(" repl_ms=%g", r.ReplLatencyMS)
	}
	return row
}
