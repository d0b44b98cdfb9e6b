package chaos

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-sync/starling/api"
)

func state(kv ...string) *kvState {
	var es []api.Entry
	for i := 0; i+1 < len(kv); i += 2 {
		es = append(es, api.Entry{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return newKVState(es)
}

// hist numbers ops as Append would.
func hist(ops ...Op) []Op {
	for i := range ops {
		ops[i].Index = i
		if ops[i].Process == "" {
			ops[i].Process = "n1-c0-g0"
		}
	}
	return ops
}

func put(key, val string, r Result) Op {
	return Op{Kind: kindPut, Key: key, Value: val, Result: r, Host: "n1"}
}
func del(key string, r Result) Op { return Op{Kind: kindDel, Key: key, Result: r, Host: "n1"} }

func TestKVStateDigest(t *testing.T) {
	a := state("a", "1", "b", "2")
	b := state("b", "2", "a", "1")
	if a.Digest() != b.Digest() {
		t.Error("same entries, different digests")
	}
	// Length-prefixed: moving bytes between key and value changes it.
	if state("ab", "c").Digest() == state("a", "bc").Digest() {
		t.Error("digest is ambiguous")
	}
	if state().Digest() == a.Digest() {
		t.Error("empty and non-empty states share a digest")
	}
}

func TestKVOracle(t *testing.T) {
	u1, o := kvUnique+"p/000001", kvOverwrite+"03"
	d1, d2, d3, d4 := kvDeletable+"p/000002", kvDeletable+"p/000003", kvDeletable+"p/000004", kvDeletable+"p/000005"
	t0 := time.Unix(1000, 0)
	at := func(op Op, sec int) Op { op.End = t0.Add(time.Duration(sec) * time.Second); return op }
	ops := hist(
		at(put(u1, "p:1", ResultOK), 1),
		at(put(d1, "p:2", ResultOK), 1),
		at(del(d1, ResultOK), 2),
		at(put(o, "p:4", ResultOK), 2),
		at(put(o, "q:1", ResultOK), 3),
		at(put(d2, "p:6", ResultOK), 3), // 5: never deleted
		at(put(d3, "p:7", ResultOK), 3), // 6: delete failed for sure
		at(del(d3, ResultFail), 4),
		at(put(d4, "p:9", ResultOK), 4), // 8: delete outcome unknown
		at(del(d4, ResultInfo), 4),
		at(put(kvUnique+"p/000099", "p:99", ResultOK), 9), // 10: after the due time
	)
	due := t0.Add(5 * time.Second)
	all := state(u1, "p:1", o, "q:1", d2, "p:6", d3, "p:7")
	tests := []struct {
		name  string
		final bool
		state *kvState
		want  []int
	}{
		{"caught up", true, all, nil},
		{"caught up, unknown delete applied", true, state(u1, "p:1", o, "q:1", d2, "p:6", d3, "p:7", d4, "p:9"), nil},
		{"overwrite, any written value", true, state(u1, "p:1", o, "p:4", d2, "p:6", d3, "p:7"), nil},
		{"unique write missing", true, state(o, "q:1", d2, "p:6", d3, "p:7"), []int{0}},
		{"unique write with another value", true, state(u1, "x", o, "q:1", d2, "p:6", d3, "p:7"), []int{0}},
		{"delete not applied", true, state(u1, "p:1", d1, "p:2", o, "q:1", d2, "p:6", d3, "p:7"), []int{2}},
		{"overwritten key gone", true, state(u1, "p:1", d2, "p:6", d3, "p:7"), []int{3}},
		{"deletable write missing at the end", true, state(u1, "p:1", o, "q:1", d3, "p:7"), []int{5}},
		{"deletable write whose delete failed", true, state(u1, "p:1", o, "q:1", d2, "p:6"), []int{6}},
		// While clients run, a delete in flight may remove a deletable
		// key at any moment: it is not expected.
		{"running: deletable keys not expected", false, state(u1, "p:1", o, "q:1"), nil},
		{"running: delete still expected", false, state(u1, "p:1", o, "q:1", d1, "p:2"), []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := kvOracle{}.Expect(ops, due, tt.final).Missing(tt.state)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Missing = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestKVCheckers(t *testing.T) {
	u1, u2, u3 := kvUnique+"p/000001", kvUnique+"p/000002", kvUnique+"p/000003"
	ops := hist(
		put(u1, "p:1", ResultOK),
		put(u2, "p:2", ResultInfo), // may or may not exist
		put(u3, "p:3", ResultOK),   // forfeited below
		Op{Process: NemesisProcess, Kind: KindForfeit, Result: ResultInfo, Ext: []byte("[2]")},
	)
	in := func(states ...*kvState) CheckInput {
		var final []HostState
		for i, s := range states {
			final = append(final, HostState{Host: hostName(i + 1), State: s})
		}
		return CheckInput{History: ops, Final: final, Forfeited: Forfeited(ops)}
	}
	good := state(u1, "p:1", u2, "p:2")
	tests := []struct {
		name                     string
		in                       CheckInput
		lost, phantom, divergent int
	}{
		{"all good", in(good, good), 0, 0, 0},
		{"unknown write absent is fine", in(state(u1, "p:1"), state(u1, "p:1")), 0, 0, 0},
		{"lost on one host", in(good, state(u2, "p:2")), 1, 0, 1},
		{"phantom value", in(state(u1, "p:1", u2, "zz"), state(u1, "p:1", u2, "zz")), 0, 1, 0},
		{"phantom key", in(state(u1, "p:1", kvUnique+"x/1", "x:1"), good), 0, 1, 1},
		{"keys outside the prefix are not phantoms", in(state(u1, "p:1", "other/k", "v"), state(u1, "p:1", "other/k", "v")), 0, 0, 0},
		{"unreadable host", CheckInput{History: ops, Forfeited: Forfeited(ops), Final: []HostState{{Host: "n1", State: good}, {Host: "n2", Err: errors.New("down")}}}, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lost := kvLostChecker{}.Check(tt.in)
			ph := kvPhantomChecker{}.Check(tt.in)
			dv := digestChecker{}.Check(tt.in)
			if lost.Counts["lost"] != tt.lost || lost.OK != (tt.lost == 0) {
				t.Errorf("lost = %v (ok %v), want %d: %v", lost.Counts, lost.OK, tt.lost, lost.Problems)
			}
			if ph.Counts["phantom"] != tt.phantom || ph.OK != (tt.phantom == 0) {
				t.Errorf("phantom = %v, want %d: %v", ph.Counts, tt.phantom, ph.Problems)
			}
			if dv.Counts["divergent"] != tt.divergent || dv.OK != (tt.divergent == 0) {
				t.Errorf("divergent = %v, want %d: %v", dv.Counts, tt.divergent, dv.Problems)
			}
		})
	}
	if v := (kvLostChecker{}).Check(in(good, good)); v.Counts["forfeited"] != 1 {
		t.Errorf("forfeited = %d, want 1", v.Counts["forfeited"])
	}
}

// fakeAPI is a minimal node API over a map, to test the client and
// reader without a node.
type fakeAPI struct {
	mu   sync.Mutex
	data map[string]string
	fail int // answer this status to writes when non-zero
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/kv":
		var es []string
		for k, v := range f.data {
			es = append(es, `{"key":"`+k+`","value":"`+v+`"}`)
		}
		_, _ = w.Write([]byte(`{"entries":[` + strings.Join(es, ",") + `]}`))
	case f.fail != 0:
		w.WriteHeader(f.fail)
	case r.Method == http.MethodPut:
		b := make([]byte, r.ContentLength)
		_, _ = r.Body.Read(b)
		f.data[key] = string(b)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete:
		delete(f.data, key)
		w.WriteHeader(http.StatusNoContent)
	}
}

func fakeHost(t *testing.T, h http.Handler) *Host {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ap := netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
	return &Host{name: "n1", index: 1, addr: ap.Addr(), token: "tok", hc: srv.Client(), apiPortOverride: ap.Port()}
}

func TestKVClientAgainstFakeAPI(t *testing.T) {
	api := &fakeAPI{data: map[string]string{}}
	h := fakeHost(t, api)
	m, err := newKVModel(ModelConfig{Hosts: 1, OverwriteKeys: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := m.Workload.NewClient(Process{ID: "n1-c0-g0", Host: h})
	rng := rand.New(rand.NewPCG(1, 2))
	var ops []Op
	for range 200 {
		op := c.Invoke(context.Background(), rng)
		op.Process = "n1-c0-g0"
		op.Index = len(ops)
		ops = append(ops, op)
	}
	kinds := map[string]int{}
	for _, o := range ops {
		if o.Result != ResultOK {
			t.Fatalf("op %+v not acknowledged", o)
		}
		kinds[o.Kind]++
	}
	if kinds[kindDel] == 0 || kinds[kindPut] == 0 {
		t.Errorf("operation mix %v: want puts and deletes", kinds)
	}
	st, err := m.Reader.Read(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if miss := m.Oracle.Expect(ops, farFuture, true).Missing(st); len(miss) != 0 {
		t.Errorf("the fake store misses ops %v", miss)
	}
	in := CheckInput{History: ops, Final: []HostState{{Host: "n1", State: st}}}
	for _, ch := range m.Checkers {
		if v := ch.Check(in); !v.OK {
			t.Errorf("%s: %v", v.Checker, v.Problems)
		}
	}

	api.fail = http.StatusInternalServerError
	if op := c.Invoke(context.Background(), rng); op.Result != ResultInfo {
		t.Errorf("a 500 answer gave %s, want info", op.Result)
	}
	api.fail = http.StatusBadRequest
	if op := c.Invoke(context.Background(), rng); op.Result != ResultFail {
		t.Errorf("a 400 answer gave %s, want fail", op.Result)
	}
}

func TestClassify(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	_, dialErr := http.Get("http://" + addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr, nil)
	_, ctxErr := http.DefaultClient.Do(req)
	tests := []struct {
		status int
		err    error
		want   Result
	}{
		{204, nil, ResultOK},
		{200, nil, ResultOK},
		{404, nil, ResultFail},
		{401, nil, ResultFail},
		{500, nil, ResultInfo},
		{503, nil, ResultInfo},
		{0, dialErr, ResultFail},
		{0, ctxErr, ResultInfo},
		{0, errors.New("connection reset"), ResultInfo},
	}
	for _, tt := range tests {
		if got := Classify(tt.status, tt.err); got != tt.want {
			t.Errorf("Classify(%d, %v) = %s, want %s", tt.status, tt.err, got, tt.want)
		}
	}
}
