package entity

// Merge scenarios (testdata/scenarios/*.txt) drive several nodes, each a
// Store over its own in-memory backend (memBackend) with its own fake
// clock, through concurrent writes, partitions and deliveries, and print
// what each node then shows. The scripts are run by
// github.com/cockroachdb/datadriven, the library etcd raft, pebble and
// cockroach use for theirs: each command is followed by "----" and the
// output it must produce. After a change in behaviour, rewrite the
// expected output with
//
//	go test ./entity/ -run TestScenarios -rewrite
//
// and read the diff: it is the change, as every node shows it.
//
// Nothing reaches a node unless a script delivers it, and no clock moves
// unless a script sets it: a write's at=D sets its node's physical clock
// to the scenario's epoch plus D (a Go duration, negative for a clock
// behind) before stamping. Timestamps print the same way, "@5ms", with
// "+N" for a logical counter N > 0. Entities are named by aliases (the
// alias of the root is /); IDs in the output are replaced by them.
//
//	open NODE...                  opens nodes, each with an empty backend
//	restart NODE                  closes NODE's store and opens it again
//	                              on the same backend (the view is loaded)
//	create NODE ALIAS [under=REF] [type=T] [name=N] [at=D]
//	                              an entity (type Dir, name ALIAS by default)
//	set NODE REF F=V... [at=D] [repeat=N] [every=D]
//	                              writes fields in one update (V: true,
//	                              false, an int, a float, null to clear,
//	                              anything else a string), N times, the
//	                              clock moving by every=D between them
//	rename NODE REF name=N [at=D]
//	move NODE REF under=REF [at=D]
//	delete NODE REF [recursive] [at=D]
//	restore NODE REF [at=D]
//	    Each write prints its version, or the error it returned.
//	partition A,B C...            cuts every link between the groups
//	heal                          restores every link
//	sync                          every node exchanges records with every
//	                              node it has a link to, until all hold
//	                              what their side of the partition holds
//	deliver FROM TO               FROM's records and deletions reach TO
//	                              (one way, links or not)
//	inject NODE key=K [value=TEXT]
//	    a raw entry, as if replicated from elsewhere
//	inject NODE [writer=W] at=D ent=REF field=F|attr=t|n|p|x hex=BYTES|value=TEXT
//	    a well-formed record of one write (by writer z unless told) with
//	    the given stored value, as if replicated from elsewhere
//	gc NODE                       one garbage-collection tick on NODE
//	view [NODE...]                each node's tree and fields (all nodes
//	                              by default), with the alias of each
//	                              entity not named as its alias; nodes
//	                              showing the same are printed together,
//	                              so one block means they converged
//	get NODE REF                  what REF resolves to on NODE
//	records NODE                  the records NODE's backend holds
//	log NODE                      the warnings NODE logged since the last
//	                              log command, each once, sorted

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

func TestScenarios(t *testing.T) {
	datadriven.Walk(t, filepath.Join("testdata", "scenarios"), func(t *testing.T, path string) {
		sc := &scenario{
			nodes: map[string]*scenarioNode{},
			cut:   map[[2]string]bool{},
			ids:   map[string]ID{"/": Root},
			alias: map[ID]string{Root: "/"},
		}
		datadriven.RunTest(t, path, sc.run)
	})
}

// scenarioEpoch is the physical time at offset 0 of every clock.
var scenarioEpoch = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

type scenario struct {
	nodes map[string]*scenarioNode
	names []string           // nodes in the order opened
	cut   map[[2]string]bool // node pairs that cannot talk
	ids   map[string]ID      // alias -> ID
	alias map[ID]string      // ID -> alias
}

type scenarioNode struct {
	*testStore
	rand *seqReader // kept across restarts, so IDs stay unique
	log  *logSink
}

// logSink collects a node's log lines (written by its goroutines).
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.Split(strings.TrimSuffix(string(p), "\n"), "\n")...)
	return len(p), nil
}

func (l *logSink) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

func (sc *scenario) run(t *testing.T, td *datadriven.TestData) string {
	switch td.Cmd {
	case "open":
		for _, a := range td.CmdArgs {
			sc.open(t, a.Key)
		}
		return ""
	case "restart":
		n := sc.node(t, td, 0)
		n.Close()
		sc.open(t, n.NodeID())
		return ""
	case "create":
		n, alias := sc.writer(t, td), sc.word(t, td, 1)
		if _, ok := sc.ids[alias]; ok {
			td.Fatalf(t, "alias %s is taken", alias)
		}
		under, typ, name := sc.argRef(t, td, "under", "/"), sc.arg(td, "type", "Dir"), sc.arg(td, "name", alias)
		return sc.write(n, func(tx *Tx) error {
			id, err := tx.Create(under, typ, name)
			if err == nil {
				sc.ids[alias], sc.alias[id] = id, alias
			}
			return err
		})
	case "set":
		n, ref := sc.writer(t, td), sc.ref(t, td, sc.word(t, td, 1))
		repeat, every := 1, time.Duration(0)
		td.MaybeScanArgs(t, "repeat", &repeat)
		if td.HasArg("every") {
			every = sc.duration(t, td, "every")
		}
		var out string
		for i := 0; i < repeat; i++ {
			if i > 0 {
				n.clock.Add(every)
			}
			out = sc.write(n, func(tx *Tx) error {
				for _, a := range td.CmdArgs[2:] {
					if a.Key == "at" || a.Key == "repeat" || a.Key == "every" {
						continue
					}
					v, err := InferValue(a.SingleVal(t))
					if err != nil {
						return err
					}
					if a.SingleVal(t) == "null" {
						v = Null()
					}
					if err := tx.Set(ref, a.Key, v); err != nil {
						return err
					}
				}
				return nil
			})
		}
		return out
	case "rename":
		n, ref, name := sc.writer(t, td), sc.ref(t, td, sc.word(t, td, 1)), sc.arg(td, "name", "")
		return sc.write(n, func(tx *Tx) error { return tx.Rename(ref, name) })
	case "move":
		n, ref, under := sc.writer(t, td), sc.ref(t, td, sc.word(t, td, 1)), sc.argRef(t, td, "under", "")
		return sc.write(n, func(tx *Tx) error { return tx.Move(ref, under) })
	case "delete":
		n, ref := sc.writer(t, td), sc.ref(t, td, sc.word(t, td, 1))
		return sc.write(n, func(tx *Tx) error { return tx.Delete(ref, td.HasArg("recursive")) })
	case "restore":
		n, ref := sc.writer(t, td), sc.ref(t, td, sc.word(t, td, 1))
		return sc.write(n, func(tx *Tx) error { return tx.Restore(ID(ref)) })
	case "partition":
		for i, a := range td.CmdArgs {
			for _, b := range td.CmdArgs[i+1:] {
				for _, x := range strings.Split(a.Key, ",") {
					for _, y := range strings.Split(b.Key, ",") {
						sc.nodeNamed(t, td, x)
						sc.nodeNamed(t, td, y)
						sc.cut[[2]string{x, y}], sc.cut[[2]string{y, x}] = true, true
					}
				}
			}
		}
		return ""
	case "heal":
		clear(sc.cut)
		return ""
	case "sync":
		// Two rounds of every linked pair, both ways: after them every
		// node holds what its side of the partition holds.
		for range 2 {
			for i, a := range sc.names {
				for _, b := range sc.names[i+1:] {
					if !sc.cut[[2]string{a, b}] {
						deliver(sc.nodes[a].b, sc.nodes[b].b)
						deliver(sc.nodes[b].b, sc.nodes[a].b)
					}
				}
			}
		}
		sc.settle(t)
		return ""
	case "deliver":
		from, to := sc.node(t, td, 0), sc.node(t, td, 1)
		deliver(from.b, to.b)
		sc.settle(t)
		return ""
	case "inject":
		return sc.inject(t, td)
	case "gc":
		n := sc.node(t, td, 0)
		if err := n.collectGarbage(context.Background()); err != nil {
			td.Fatalf(t, "gc: %v", err)
		}
		sc.settle(t)
		return ""
	case "view":
		return sc.view(t, td)
	case "get":
		n, ref := sc.node(t, td, 0), sc.ref(t, td, sc.word(t, td, 1))
		e, err := n.Get(ref)
		if err != nil {
			return sc.aliased("error: " + err.Error())
		}
		if e.ID == Root {
			return "/"
		}
		return sc.aliased(fmt.Sprintf("%s id=%s", e.Path, e.ID))
	case "records":
		return sc.records(t, td)
	case "log":
		n := sc.node(t, td, 0)
		lines := slices.Compact(slices.Sorted(slices.Values(n.log.take())))
		return sc.aliased(strings.Join(lines, "\n"))
	}
	td.Fatalf(t, "unknown command %q", td.Cmd)
	return ""
}

func (sc *scenario) open(t *testing.T, name string) {
	n, ok := sc.nodes[name]
	b, clock := newMemBackend(), newFakeClock()
	clock.Set(scenarioEpoch)
	if ok { // a restart: same backend, clock and ID source
		b, clock = n.b, n.clock
	} else {
		n = &scenarioNode{rand: &seqReader{n: name[len(name)-1]}, log: &logSink{}}
		sc.nodes[name] = n
		sc.names = append(sc.names, name)
	}
	n.testStore = openMem(t, name, b, clock, func(o *Options) {
		o.Rand = n.rand
		o.GCInterval = time.Hour // GC runs when a script says so
		o.Logger = slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey && len(groups) == 0 {
					return slog.Attr{}
				}
				return a
			},
		}))
	})
}

// word returns the i-th argument without a value.
func (sc *scenario) word(t *testing.T, td *datadriven.TestData, i int) string {
	if i >= len(td.CmdArgs) || len(td.CmdArgs[i].Vals) > 0 {
		td.Fatalf(t, "%s: argument %d must be a bare word", td.Cmd, i+1)
	}
	return td.CmdArgs[i].Key
}

func (sc *scenario) node(t *testing.T, td *datadriven.TestData, i int) *scenarioNode {
	return sc.nodeNamed(t, td, sc.word(t, td, i))
}

// writer returns the node a write command names, its physical clock set
// to the time its at= argument gives, if any.
func (sc *scenario) writer(t *testing.T, td *datadriven.TestData) *scenarioNode {
	n := sc.node(t, td, 0)
	if td.HasArg("at") {
		n.clock.Set(scenarioEpoch.Add(sc.duration(t, td, "at")))
	}
	return n
}

func (sc *scenario) nodeNamed(t *testing.T, td *datadriven.TestData, name string) *scenarioNode {
	n, ok := sc.nodes[name]
	if !ok {
		td.Fatalf(t, "no node %q; open it first", name)
	}
	return n
}

func (sc *scenario) arg(td *datadriven.TestData, key, def string) string {
	if a, ok := td.Arg(key); ok && len(a.Vals) == 1 {
		return a.Vals[0]
	}
	return def
}

// ref turns an alias, "/" or a path into a reference the store reads.
func (sc *scenario) ref(t *testing.T, td *datadriven.TestData, s string) string {
	if id, ok := sc.ids[s]; ok {
		if id == Root {
			return "/"
		}
		return string(id)
	}
	if strings.HasPrefix(s, "/") {
		return s
	}
	td.Fatalf(t, "no entity with alias %q", s)
	return ""
}

func (sc *scenario) argRef(t *testing.T, td *datadriven.TestData, key, def string) string {
	s := sc.arg(td, key, def)
	if s == "" {
		td.Fatalf(t, "%s: missing %s=", td.Cmd, key)
	}
	return sc.ref(t, td, s)
}

func (sc *scenario) duration(t *testing.T, td *datadriven.TestData, key string) time.Duration {
	d, err := time.ParseDuration(sc.arg(td, key, ""))
	if err != nil {
		td.Fatalf(t, "%s=: %v", key, err)
	}
	return d
}

// write runs one update on n.
func (sc *scenario) write(n *scenarioNode, fn func(tx *Tx) error) string {
	v, err := n.Update(context.Background(), fn)
	if err != nil {
		return sc.aliased("error: " + err.Error())
	}
	return sc.version(v)
}

func (sc *scenario) ts(ts Timestamp) string {
	s := "@" + time.Duration(ts.Wall-scenarioEpoch.UnixNano()).String()
	if ts.Logical > 0 {
		s += fmt.Sprintf("+%d", ts.Logical)
	}
	return s
}

func (sc *scenario) version(v Version) string { return sc.ts(v.Timestamp) + " by " + v.Writer }

// aliased replaces entity IDs by their aliases.
func (sc *scenario) aliased(s string) string {
	var pairs []string
	for id, a := range sc.alias {
		if id != Root {
			pairs = append(pairs, string(id), a)
		}
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// settle waits until every node has applied what its backend holds.
func (sc *scenario) settle(t *testing.T) {
	for _, name := range sc.names {
		settle(t, sc.nodes[name].testStore)
	}
}

func (sc *scenario) inject(t *testing.T, td *datadriven.TestData) string {
	n := sc.node(t, td, 0)
	var key string
	var value []byte
	if td.HasArg("key") {
		key, value = sc.arg(td, "key", ""), []byte(sc.arg(td, "value", ""))
	} else {
		var w write
		switch {
		case td.HasArg("field"):
			w.reg = regKey{entity: ID(sc.argRef(t, td, "ent", "")), kind: 'f', name: sc.arg(td, "field", "")}
		case td.HasArg("attr"):
			w.reg = regKey{entity: ID(sc.argRef(t, td, "ent", "")), kind: 'a', name: sc.arg(td, "attr", "")}
		default:
			td.Fatalf(t, "inject: give key=, or field= or attr=")
		}
		w.ts = Timestamp{Wall: scenarioEpoch.Add(sc.duration(t, td, "at")).UnixNano()}
		if td.HasArg("hex") {
			var err error
			if w.value, err = hex.DecodeString(sc.arg(td, "hex", "")); err != nil {
				td.Fatalf(t, "inject: hex=: %v", err)
			}
		} else {
			w.value = []byte(sc.arg(td, "value", ""))
		}
		key = recordKey(Version{Timestamp: w.ts, Writer: sc.arg(td, "writer", "z")})
		value = encodeRecord([]write{w})
	}
	n.b.mu.Lock()
	n.b.put(key, value, false)
	n.b.mu.Unlock()
	sc.settle(t)
	return ""
}

func (sc *scenario) view(t *testing.T, td *datadriven.TestData) string {
	names := sc.names
	if len(td.CmdArgs) > 0 {
		names = nil
		for i := range td.CmdArgs {
			names = append(names, sc.node(t, td, i).NodeID())
		}
	}
	sc.settle(t)
	var order []string               // distinct views, in the order first shown
	shownBy := map[string][]string{} // view -> nodes showing it
	for _, name := range names {
		var b strings.Builder
		err := sc.nodes[name].Walk("/", func(e Entity) error {
			if e.ID == Root {
				return nil
			}
			fmt.Fprintf(&b, "  %s", e.Path)
			if sc.alias[e.ID] != e.Name {
				fmt.Fprintf(&b, " id=%s", e.ID)
			}
			fmt.Fprintf(&b, " type=%s", e.Type)
			if e.Duplicates > 0 {
				fmt.Fprintf(&b, " duplicates=%d", e.Duplicates)
			}
			b.WriteByte('\n')
			for _, f := range slices.Sorted(maps.Keys(e.Fields)) {
				fv := e.Fields[f]
				v := fv.Value.String()
				if fv.Value.Kind == KindString {
					v = fmt.Sprintf("%q", v)
				}
				if fv.Default {
					fmt.Fprintf(&b, "    %s=%s (default)\n", f, v)
				} else {
					fmt.Fprintf(&b, "    %s=%s %s\n", f, v, sc.version(fv.Version))
				}
			}
			return nil
		})
		if err != nil {
			td.Fatalf(t, "view %s: %v", name, err)
		}
		s := b.String()
		if s == "" {
			s = "  (empty)\n"
		}
		if _, ok := shownBy[s]; !ok {
			order = append(order, s)
		}
		shownBy[s] = append(shownBy[s], name)
	}
	var out strings.Builder
	for _, s := range order {
		fmt.Fprintf(&out, "%s:\n%s", strings.Join(shownBy[s], " "), s)
	}
	return sc.aliased(out.String())
}

var attrNames = map[string]string{attrType: "$type", attrName: "$name", attrParent: "$parent", attrExists: "$exists"}

func (sc *scenario) records(t *testing.T, td *datadriven.TestData) string {
	n := sc.node(t, td, 0)
	n.b.mu.Lock()
	keys := make([]string, 0, len(n.b.adds))
	for k := range n.b.adds {
		keys = append(keys, k)
	}
	vals := copyMap(n.b.adds)
	n.b.mu.Unlock()
	sort.Strings(keys)
	var out bytes.Buffer
	for _, k := range keys {
		v, err := parseRecordKey(k)
		if err != nil {
			fmt.Fprintf(&out, "%s: not a record key\n", k)
			continue
		}
		ws, err := decodeRecord(vals[k])
		if err != nil {
			fmt.Fprintf(&out, "%s: undecodable\n", k)
			continue
		}
		var regs []string
		for _, w := range ws {
			switch w.reg.kind {
			case 'a':
				regs = append(regs, string(w.reg.entity)+"."+attrNames[w.reg.name])
			case 'f':
				regs = append(regs, string(w.reg.entity)+"."+w.reg.name)
			default:
				regs = append(regs, "schema "+w.reg.name)
			}
		}
		fmt.Fprintf(&out, "%s: %s\n", sc.version(v), strings.Join(regs, " "))
	}
	return sc.aliased(out.String())
}
