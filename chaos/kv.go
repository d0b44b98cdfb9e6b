package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/starling-sync/starling/api"
)

// The KV model drives the raw key-value API (PUT/DELETE /v1/kv/KEY, GET
// /v1/kv). Its keys live under kvPrefix:
//
//	chaos/u/<process>/<seq>   written once, never deleted
//	chaos/d/<process>/<seq>   written once, deleted later by the same
//	                          process (whether it will be is known when
//	                          it is written, so the oracle never has to
//	                          guess whether a delete is in flight)
//	chaos/o/<j>               overwritten by every process, never deleted
//
// Every value is "<process>:<seq>", unique in the scenario, so a value
// nobody wrote is recognised. The raw store promises convergence, not
// last-writer-wins: for overwritten keys any written value may win, as
// long as every host agrees.
const (
	kvPrefix    = "chaos"
	kvUnique    = kvPrefix + "/u/"
	kvDeletable = kvPrefix + "/d/"
	kvOverwrite = kvPrefix + "/o/"
	kindPut     = "put"
	kindDel     = "del"
	// Operation mix, in percent: deletes of the process's own deletable
	// keys, overwrites of shared keys, writes of deletable keys, the rest
	// writes of unique keys.
	kvDeletePct    = 10
	kvOverwritePct = 20
	kvDeletablePct = 15
)

func newKVModel(cfg ModelConfig) (*Model, error) {
	if cfg.OverwriteKeys < 1 {
		return nil, fmt.Errorf("chaos: kv model: OverwriteKeys %d, want >= 1", cfg.OverwriteKeys)
	}
	return &Model{
		Name:     "kv",
		Workload: kvWorkload{overwriteKeys: cfg.OverwriteKeys},
		Reader:   kvReader{},
		Oracle:   kvOracle{},
		Checkers: []Checker{kvLostChecker{}, kvPhantomChecker{}},
	}, nil
}

type kvWorkload struct{ overwriteKeys int }

func (w kvWorkload) NewClient(p Process) Client {
	return &kvClient{p: p, overwriteKeys: w.overwriteKeys}
}

type kvClient struct {
	p             Process
	overwriteKeys int
	seq           int
	deletable     []string // acknowledged deletable keys not yet deleted
}

func (c *kvClient) Invoke(ctx context.Context, rng *rand.Rand) Op {
	c.seq++
	r := rng.IntN(100)
	switch {
	case r < kvDeletePct && len(c.deletable) > 0:
		i := rng.IntN(len(c.deletable))
		key := c.deletable[i]
		c.deletable = append(c.deletable[:i], c.deletable[i+1:]...) // deleted once, whatever the outcome
		return c.do(ctx, kindDel, key, "")
	case r < kvDeletePct+kvOverwritePct:
		key := fmt.Sprintf("%s%02d", kvOverwrite, rng.IntN(c.overwriteKeys))
		return c.do(ctx, kindPut, key, c.value())
	case r < kvDeletePct+kvOverwritePct+kvDeletablePct:
		key := fmt.Sprintf("%s%s/%06d", kvDeletable, c.p.ID, c.seq)
		op := c.do(ctx, kindPut, key, c.value())
		if op.Result == ResultOK {
			c.deletable = append(c.deletable, key)
		}
		return op
	default:
		return c.do(ctx, kindPut, fmt.Sprintf("%s%s/%06d", kvUnique, c.p.ID, c.seq), c.value())
	}
}

func (c *kvClient) value() string { return fmt.Sprintf("%s:%d", c.p.ID, c.seq) }

func (c *kvClient) do(ctx context.Context, kind, key, value string) Op {
	op := Op{Host: c.p.Host.Name(), Kind: kind, Key: key, Value: value, Start: time.Now()}
	method, body := http.MethodPut, []byte(value)
	if kind == kindDel {
		method, body = http.MethodDelete, nil
	}
	code, resp, err := c.p.Host.Request(ctx, method, "/v1/kv/"+key, body)
	op.End = time.Now()
	op.Result = Classify(code, err)
	switch {
	case err != nil:
		op.Error = err.Error()
	case op.Result != ResultOK:
		op.Error = fmt.Sprintf("HTTP %d: %s", code, strings.TrimSpace(string(resp)))
	}
	return op
}

// kvState is a host's whole key-value store.
type kvState struct {
	entries map[string]string
	digest  string
}

func (s *kvState) Digest() string { return s.digest }

type kvReader struct{}

func (kvReader) Read(ctx context.Context, h *Host) (State, error) {
	code, body, err := h.Request(ctx, http.MethodGet, "/v1/kv?prefix="+url.QueryEscape(""), nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/kv: HTTP %d: %s", code, strings.TrimSpace(string(body)))
	}
	var lr struct {
		Entries []api.Entry `json:"entries"`
	}
	if err := json.Unmarshal(body, &lr); err != nil {
		return nil, fmt.Errorf("GET /v1/kv: %w", err)
	}
	return newKVState(lr.Entries), nil
}

func newKVState(es []api.Entry) *kvState {
	s := &kvState{entries: make(map[string]string, len(es))}
	for _, e := range es {
		s.entries[e.Key] = string(e.Value)
	}
	sum := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(s.entries)) {
		fmt.Fprintf(sum, "%d:%s%d:%s", len(k), k, len(s.entries[k]), s.entries[k])
	}
	s.digest = hex.EncodeToString(sum.Sum(nil))
	return s
}

// kvOracle: an acknowledged write of a unique key must be there with its
// value, an acknowledged write of an overwritten key must leave the key
// there (with some written value: the phantom checker judges which), an
// acknowledged delete must leave its key absent. A deletable key's
// write is expected only once the workload has stopped, and only if no
// delete of it may have been applied: none was sent, or every one sent
// surely failed.
type kvOracle struct{}

type kvExpectation struct {
	present map[string]kvExpect // key -> expected value ("" for any)
	absent  map[string]int      // key -> index of the acknowledged delete
}

type kvExpect struct {
	value string
	index int
}

func (kvOracle) Expect(h []Op, due time.Time, final bool) Expectation {
	e := &kvExpectation{present: map[string]kvExpect{}, absent: map[string]int{}}
	maybeDeleted := map[string]bool{}
	for _, o := range h {
		if o.Process != NemesisProcess && o.Kind == kindDel && o.Result != ResultFail {
			maybeDeleted[o.Key] = true
		}
	}
	for _, o := range h {
		if !o.Acked() || !o.End.Before(due) {
			continue
		}
		switch {
		case o.Kind == kindPut && strings.HasPrefix(o.Key, kvUnique):
			e.present[o.Key] = kvExpect{value: o.Value, index: o.Index}
		case o.Kind == kindPut && strings.HasPrefix(o.Key, kvOverwrite):
			if _, ok := e.present[o.Key]; !ok {
				e.present[o.Key] = kvExpect{index: o.Index}
			}
		case o.Kind == kindPut && strings.HasPrefix(o.Key, kvDeletable):
			if final && !maybeDeleted[o.Key] {
				e.present[o.Key] = kvExpect{value: o.Value, index: o.Index}
			}
		case o.Kind == kindDel:
			e.absent[o.Key] = o.Index
		}
	}
	return e
}

func (e *kvExpectation) Missing(s State) []int {
	st := s.(*kvState)
	var out []int
	for k, want := range e.present {
		got, ok := st.entries[k]
		if !ok || (want.value != "" && got != want.value) {
			out = append(out, want.index)
		}
	}
	for k, idx := range e.absent {
		if _, ok := st.entries[k]; ok {
			out = append(out, idx)
		}
	}
	sort.Ints(out)
	return out
}

// kvLostChecker counts acknowledged operations whose effect is missing
// on at least one host: unique writes absent or with another value,
// deletes whose key is back, overwritten keys that vanished.
type kvLostChecker struct{}

func (kvLostChecker) Name() string { return "kv-lost" }

func (kvLostChecker) Check(in CheckInput) Verdict {
	v := Verdict{Checker: "kv-lost", Counts: map[string]int{"lost": 0, "forfeited": len(in.Forfeited)}}
	var live []Op
	byIndex := map[int]Op{}
	for _, o := range in.History {
		if !in.Forfeited[o.Index] {
			live = append(live, o)
			byIndex[o.Index] = o
		}
	}
	exp := kvOracle{}.Expect(live, farFuture, true)
	lost := map[int][]string{}
	for _, hs := range in.Final {
		if hs.Err != nil {
			continue // the divergence checker reports unreadable hosts
		}
		for _, i := range exp.Missing(hs.State) {
			lost[i] = append(lost[i], hs.Host)
		}
	}
	idx := make([]int, 0, len(lost))
	for i := range lost {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		o := byIndex[i]
		what := fmt.Sprintf("put %s=%q", o.Key, o.Value)
		effect := "missing"
		if o.Kind == kindDel {
			what, effect = "del "+o.Key, "key still present"
		}
		v.problem("op %d %s acknowledged by %s at %s: %s on %s",
			i, what, o.Host, o.End.Format("15:04:05.000"), effect, strings.Join(lost[i], " "))
	}
	v.Counts["lost"] = len(idx)
	v.OK = len(idx) == 0
	return v
}

// kvPhantomChecker counts values under the workload's prefix that no
// operation wrote to that key (whatever its outcome).
type kvPhantomChecker struct{}

func (kvPhantomChecker) Name() string { return "kv-phantom" }

func (kvPhantomChecker) Check(in CheckInput) Verdict {
	v := Verdict{Checker: "kv-phantom", Counts: map[string]int{"phantom": 0}}
	written := map[string]map[string]bool{}
	for _, o := range in.History {
		if o.Process == NemesisProcess || o.Kind != kindPut {
			continue
		}
		if written[o.Key] == nil {
			written[o.Key] = map[string]bool{}
		}
		written[o.Key][o.Value] = true
	}
	seen := map[string]bool{}
	for _, hs := range in.Final {
		if hs.Err != nil {
			continue
		}
		st := hs.State.(*kvState)
		for _, k := range slices.Sorted(maps.Keys(st.entries)) {
			if !strings.HasPrefix(k, kvPrefix+"/") {
				continue
			}
			val := st.entries[k]
			if written[k][val] || seen[k+"\x00"+val] {
				continue
			}
			seen[k+"\x00"+val] = true
			v.Counts["phantom"]++
			v.problem("%s: %s=%q was never written", hs.Host, k, val)
		}
	}
	v.OK = v.Counts["phantom"] == 0
	return v
}

var (
	_ Workload    = kvWorkload{}
	_ Client      = (*kvClient)(nil)
	_ Reader      = kvReader{}
	_ State       = (*kvState)(nil)
	_ Oracle      = kvOracle{}
	_ Expectation = (*kvExpectation)(nil)
	_ Checker     = kvLostChecker{}
	_ Checker     = kvPhantomChecker{}
)
