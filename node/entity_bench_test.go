package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/node"
)

func benchNodes(b *testing.B, k int) []*node.Node {
	b.Helper()
	root := b.TempDir()
	var nodes []*node.Node
	for i := 1; i <= k; i++ {
		dir := filepath.Join(root, fmt.Sprintf("node%d", i))
		initBenchNode(b, dir)
		n, err := node.Open(context.Background(), dir)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	for i, a := range nodes {
		for _, o := range nodes[i+1:] {
			if err := a.P2P().AddPeer(context.Background(), addrInfo(b, o)); err != nil {
				b.Fatal(err)
			}
		}
	}
	return nodes
}

func percentiles(lat []time.Duration) (p50, p99 float64) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
}

// BenchmarkFieldWrite measures field writes per second on one node: one
// write per Update from one writer, 64 writers and 256 writers, and 250 and 1,000 writes
// per Update (a batch); and the latency of a single write.
func BenchmarkFieldWrite(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []string{"single", "writers=64", "writers=256", "batch=100", "batch=250", "batch=1000"} {
		b.Run(mode, func(b *testing.B) {
			n := benchNodes(b, 1)[0]
			es := n.Entities()
			const ents = 100
			for i := 0; i < ents; i++ {
				if _, err := es.Create(ctx, "/", "Sensor", fmt.Sprintf("s%d", i)); err != nil {
					b.Fatal(err)
				}
			}
			ref := func(i int) string { return fmt.Sprintf("/s%d", i%ents) }
			field := func(i int) string { return fmt.Sprintf("f%d", (i/ents)%100) }
			b.ResetTimer()
			start := time.Now()
			switch mode {
			case "single":
				lat := make([]time.Duration, 0, b.N)
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					if _, err := es.Set(ctx, ref(i), field(i), entity.Int(int64(i))); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				p50, p99 := percentiles(lat)
				b.ReportMetric(p50, "p50-ms")
				b.ReportMetric(p99, "p99-ms")
			case "writers=64", "writers=256":
				var nw int
				fmt.Sscanf(mode, "writers=%d", &nw)
				var wg sync.WaitGroup
				for w := 0; w < nw; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for i := w; i < b.N; i += nw {
							if _, err := es.Set(ctx, ref(i), field(i), entity.Int(int64(i))); err != nil {
								b.Error(err)
								return
							}
						}
					}(w)
				}
				wg.Wait()
			default:
				var size int
				fmt.Sscanf(mode, "batch=%d", &size)
				for i := 0; i < b.N; i += size {
					if _, err := es.Update(ctx, func(tx *entity.Tx) error {
						for j := i; j < i+size && j < b.N; j++ {
							if err := tx.Set(ref(j), field(j), entity.Int(int64(j))); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}

// BenchmarkFieldRead measures reading one field of one of 10,000 entities.
func BenchmarkFieldRead(b *testing.B) {
	ctx := context.Background()
	n := benchNodes(b, 1)[0]
	es := n.Entities()
	const ents = 10_000
	for i := 0; i < ents; i += 200 {
		if _, err := es.Update(ctx, func(tx *entity.Tx) error {
			for j := i; j < i+200; j++ {
				id, err := tx.Create("/", "Sensor", fmt.Sprintf("s%d", j))
				if err != nil {
					return err
				}
				if err := tx.Set(string(id), "v", entity.Int(int64(j))); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := es.GetField(fmt.Sprintf("/s%d", i%ents), "v"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	p50, p99 := percentiles(lat)
	b.ReportMetric(p50*1000, "p50-µs")
	b.ReportMetric(p99*1000, "p99-µs")
}

// BenchmarkFieldVisible measures a field write on node1 until node2 and
// node3 both show it (their watch streams), one write at a time; and a
// burst of 1,000 writes from 16 writers until all are visible on both.
func BenchmarkFieldVisible(b *testing.B) {
	ctx := context.Background()
	nodes := benchNodes(b, 3)
	e1 := nodes[0].Entities()
	if _, err := e1.Create(ctx, "/", "Sensor", "S"); err != nil {
		b.Fatal(err)
	}
	for _, n := range nodes[1:] {
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := n.Entities().Get("/S"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("/S not replicated")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var watches []*entity.Watcher
	for _, n := range nodes[1:] {
		w := n.Entities().Watch("/S", 4096)
		defer w.Close()
		watches = append(watches, w)
	}
	waitAll := func(field string, count int) {
		for _, w := range watches {
			got := 0
			for got < count {
				select {
				case ev := <-w.C():
					if ev.Field == field {
						got++
					}
				case <-time.After(10 * time.Second):
					b.Fatalf("%d of %d writes of %s visible after 10s", got, count, field)
				}
			}
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := e1.Set(ctx, "/S", "v", entity.Int(int64(i))); err != nil {
			b.Fatal(err)
		}
		waitAll("v", 1)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	p50, p99 := percentiles(lat)
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")

	// Burst: 1,000 writes of distinct fields, 16 writers.
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < 1000; i += 16 {
				if _, err := e1.Set(ctx, "/S", fmt.Sprintf("burst%d", i), entity.Int(1)); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	for _, w := range watches {
		got := 0
		for got < 1000 {
			select {
			case ev := <-w.C():
				if len(ev.Field) > 5 && ev.Field[:5] == "burst" {
					got++
				}
			case <-time.After(30 * time.Second):
				b.Fatalf("burst: %d of 1000 visible after 30s", got)
			}
		}
	}
	b.ReportMetric(float64(time.Since(t0).Milliseconds()), "burst1000-ms")
}
