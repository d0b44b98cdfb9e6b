package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// startClusterOpts starts k connected nodes; opts(i) gives node i's
// extra options.
func startClusterOpts(t *testing.T, k int, opts func(i int) []node.Option) []*node.Node {
	t.Helper()
	root := t.TempDir()
	nodes := make([]*node.Node, k)
	for i := range nodes {
		dir := filepath.Join(root, fmt.Sprintf("node%d", i+1))
		nodetest.Init(t, dir, fmt.Sprintf("node%d", i+1))
		nodes[i] = nodetest.Open(t, dir, opts(i)...)
	}
	nodetest.Connect(t, nodes)
	return nodes
}

func cut(t *testing.T, nodes []*node.Node, c *node.Node) {
	t.Helper()
	partition(nodes, c)
	testutil.Eventually(t, 10*time.Second, c.NodeID()+" cut off", func() bool { return !anyConnected(c) })
}

// converged waits until every node shows want for ref.field.
func convergedField(t *testing.T, nodes []*node.Node, ref, field string, want entity.Value) {
	t.Helper()
	for _, n := range nodes {
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%s: %s.%s = %v", n.NodeID(), ref, field, want), func() bool {
			f, err := n.Entities().GetField(ref, field)
			return err == nil && f.Value.Equal(want)
		})
	}
}

func visibleOnAll(t *testing.T, nodes []*node.Node, ref string) {
	t.Helper()
	for _, n := range nodes {
		testutil.Eventually(t, 30*time.Second, n.NodeID()+" sees "+ref, func() bool {
			_, err := n.Entities().Get(ref)
			return err == nil
		})
	}
}

// TestLWWFewerLaterWritesWin: node1 writes a field 1,000 times while cut
// off from node3, which then writes it once; after the heal every node
// shows node3's value. go-ds-crdt alone would pick node1's (greater DAG
// height).
func TestLWWFewerLaterWritesWin(t *testing.T) {
	nodes := startClusterOpts(t, 3, func(int) []node.Option { return nil })
	a, c := nodes[0], nodes[2]
	ctx := context.Background()
	if _, err := a.Entities().Create(ctx, "/", "Sensor", "S"); err != nil {
		t.Fatal(err)
	}
	visibleOnAll(t, nodes, "/S")
	cut(t, nodes, c)
	for i := 0; i < 1000; i++ {
		if _, err := a.Entities().Set(ctx, "/S", "v", entity.Int(int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Entities().Set(ctx, "/S", "v", entity.String("node3, later")); err != nil {
		t.Fatal(err)
	}
	heal(nodes)
	convergedField(t, nodes, "/S", "v", entity.String("node3, later"))
}

// TestLWWClockBehind: node3's clock is 5 s behind, but it saw node1's last
// write before the partition; its write made after that wins (HLC).
func TestLWWClockBehind(t *testing.T) {
	nodes := startClusterOpts(t, 3, func(i int) []node.Option {
		if i == 2 {
			return []node.Option{node.WithClockOffset(-5 * time.Second)}
		}
		return nil
	})
	a, c := nodes[0], nodes[2]
	ctx := context.Background()
	if _, err := a.Entities().Create(ctx, "/", "Sensor", "S"); err != nil {
		t.Fatal(err)
	}
	var last entity.Version
	for i := 0; i < 100; i++ {
		v, err := a.Entities().Set(ctx, "/S", "v", entity.Int(int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		last = v
	}
	convergedField(t, nodes, "/S", "v", entity.Int(99))
	cut(t, nodes, c)
	v, err := c.Entities().Set(ctx, "/S", "v", entity.String("node3, slow clock"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Compare(last) <= 0 {
		t.Fatalf("node3 stamped %v, not after node1's last write %v", v, last)
	}
	heal(nodes)
	convergedField(t, nodes, "/S", "v", entity.String("node3, slow clock"))
}

// TestLWWConcurrent: both sides write the same fields during a partition;
// after the heal every node shows, for every field, the value with the
// greatest (timestamp, writer) among the acknowledged writes.
func TestLWWConcurrent(t *testing.T) {
	nodes := startClusterOpts(t, 3, func(int) []node.Option { return nil })
	a, c := nodes[0], nodes[2]
	ctx := context.Background()
	if _, err := a.Entities().Create(ctx, "/", "Sensor", "S"); err != nil {
		t.Fatal(err)
	}
	visibleOnAll(t, nodes, "/S")
	cut(t, nodes, c)
	type ack struct {
		v   entity.Version
		val entity.Value
	}
	best := map[string]ack{}
	for i := 0; i < 50; i++ {
		for _, n := range []*node.Node{a, c} {
			field := fmt.Sprintf("f%d", i%5)
			val := entity.String(fmt.Sprintf("%s-%d", n.NodeID(), i))
			v, err := n.Entities().Set(ctx, "/S", field, val)
			if err != nil {
				t.Fatal(err)
			}
			if b, ok := best[field]; !ok || v.Compare(b.v) > 0 {
				best[field] = ack{v, val}
			}
		}
	}
	heal(nodes)
	for field, b := range best {
		convergedField(t, nodes, "/S", field, b.val)
		for _, n := range nodes {
			f, _ := n.Entities().GetField("/S", field)
			if f.Version != b.v {
				t.Fatalf("%s: %s version %v, want %v", n.NodeID(), field, f.Version, b.v)
			}
		}
	}
}

// TestStructureConflicts plays every concurrent structure edit of the
// entity package doc on 3 real nodes and checks the documented outcome on
// all of them.
func TestStructureConflicts(t *testing.T) {
	nodes := startClusterOpts(t, 3, func(int) []node.Option { return nil })
	a, c := nodes[0], nodes[2]
	ctx := context.Background()
	ea, ec := a.Entities(), c.Entities()
	for _, name := range []string{"X", "Y", "Del", "Parent"} {
		if _, err := ea.Create(ctx, "/", "Dir", name); err != nil {
			t.Fatal(err)
		}
	}
	for _, ref := range []string{"/X", "/Y", "/Del", "/Parent"} {
		visibleOnAll(t, nodes, ref)
	}
	x, _ := ea.Resolve("/X")
	y, _ := ea.Resolve("/Y")
	del, _ := ea.Resolve("/Del")
	parent, _ := ea.Resolve("/Parent")

	cut(t, nodes, c)
	// 1. The same path created on both sides.
	dupA, err := ea.Create(ctx, "/", "Dir", "Twin")
	if err != nil {
		t.Fatal(err)
	}
	dupC, err := ec.Create(ctx, "/", "Dir", "Twin")
	if err != nil {
		t.Fatal(err)
	}
	// 2. A field written on an entity deleted on the other side.
	if _, err := ea.Delete(ctx, "/Del", false); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Set(ctx, "/Del", "note", entity.String("written while deleted")); err != nil {
		t.Fatal(err)
	}
	// 3. Moves that together would make a cycle: X under Y (earlier), Y
	// under X (later, loses).
	if _, err := ea.Move(ctx, "/X", "/Y"); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Move(ctx, "/Y", "/X"); err != nil {
		t.Fatal(err)
	}
	// 4. A parent deleted while a child is created under it.
	if _, err := ea.Delete(ctx, "/Parent", true); err != nil {
		t.Fatal(err)
	}
	child, err := ec.Create(ctx, "/Parent", "Dir", "Child")
	if err != nil {
		t.Fatal(err)
	}
	heal(nodes)

	low := min(dupA, dupC)
	for _, n := range nodes {
		es := n.Entities()
		testutil.Eventually(t, 30*time.Second, n.NodeID()+" converged on structure", func() bool {
			twin, err := es.Get("/Twin")
			if err != nil || twin.ID != low || twin.Duplicates != 1 {
				return false
			}
			if _, err := es.Get(string(del)); !errors.Is(err, entity.ErrNotFound) {
				return false
			}
			ex, err1 := es.Get(string(x))
			ey, err2 := es.Get(string(y))
			if err1 != nil || err2 != nil || ex.Path != "/Y/X" || ey.Path != "/Y" {
				return false
			}
			_, errP := es.Get(string(parent))
			_, errC := es.Get(string(child))
			return errors.Is(errP, entity.ErrNotFound) && errors.Is(errC, entity.ErrNotFound)
		})
		kids, _ := es.Children("/")
		var names []string
		for _, k := range kids {
			names = append(names, k.Name)
		}
		sort.Strings(names)
		if fmt.Sprint(names) != "[Twin Twin Y]" {
			t.Fatalf("%s: root children %v", n.NodeID(), names)
		}
	}
	// Restoring brings back what was hidden, with the concurrent writes.
	if _, err := ec.Update(ctx, func(tx *entity.Tx) error {
		if err := tx.Restore(del); err != nil {
			return err
		}
		return tx.Restore(parent)
	}); err != nil {
		t.Fatal(err)
	}
	convergedField(t, nodes, string(del), "note", entity.String("written while deleted"))
	visibleOnAll(t, nodes, "/Parent/Child")
}

// TestClockSkewedNodeRefusesWrites: node3's clock is two hours ahead.
// Once the node reports flow, it finds itself away from the median of
// its peers and refuses writes with entity.ErrClockSkew (and says so in
// its status), while the two others keep writing and their clocks do not
// follow node3's write made before it knew.
func TestClockSkewedNodeRefusesWrites(t *testing.T) {
	nodes := startClusterOpts(t, 3, func(i int) []node.Option {
		if i == 2 {
			return []node.Option{node.WithClockOffset(2 * time.Hour)}
		}
		return nil
	})
	a, c := nodes[0], nodes[2]
	ctx := context.Background()
	if _, err := a.Entities().Create(ctx, "/", "Sensor", "S"); err != nil {
		t.Fatal(err)
	}
	visibleOnAll(t, nodes, "/S")
	testutil.Eventually(t, 20*time.Second, "node3 refuses writes", func() bool {
		_, err := c.Entities().Set(ctx, "/S", "other", entity.Int(1))
		return errors.Is(err, entity.ErrClockSkew)
	})
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Clock.Skewed || st.Clock.MedianOffsetMS > -float64(time.Hour/time.Millisecond) {
		t.Fatalf("node3's clock status: %+v", st.Clock)
	}
	// It is alive but not ready (it refuses writes); node1 is ready.
	if code := probe(t, c, "/healthz"); code != http.StatusOK {
		t.Errorf("node3 /healthz: %d, want 200", code)
	}
	if code := probe(t, c, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("node3 /readyz: %d, want 503", code)
	}
	if code := probe(t, a, "/readyz"); code != http.StatusOK {
		t.Errorf("node1 /readyz: %d, want 200", code)
	}
	v, err := a.Entities().Set(ctx, "/S", "v", entity.Int(1))
	if err != nil {
		t.Fatalf("node1 cannot write: %v", err)
	}
	if d := time.Until(v.Timestamp.Time()); d > time.Minute {
		t.Fatalf("node1's write is stamped %v ahead", d)
	}
}
