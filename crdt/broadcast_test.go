package crdt

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	offline "github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	pb "github.com/ipfs/go-ds-crdt/pb"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
	"github.com/starling-sync/starling/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// publishedTransport records what is published and receives nothing.
type publishedTransport struct{ pub chan []byte }

func (p *publishedTransport) Publish(ctx context.Context, data []byte) error {
	p.pub <- data
	return nil
}
func (p *publishedTransport) SendTo(context.Context, string, []byte) error { return nil }
func (p *publishedTransport) Receive(ctx context.Context) (string, []byte, error) {
	<-ctx.Done()
	return "", nil, ctx.Err()
}

func published(t *testing.T, tr *publishedTransport) *envelope {
	t.Helper()
	select {
	case msg := <-tr.pub:
		env, err := decodeEnvelope(msg)
		if err != nil {
			t.Fatal(err)
		}
		return env
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published within 10s")
		return nil
	}
}

// TestBroadcastCarriesWithoutDecoding: the broadcast of a commit carries
// the blocks the commit added, found in its context, and leaves go-ds-crdt's
// heads message undecoded (here it is not even a protobuf); any other
// broadcast (go-ds-crdt's rebroadcast) is decoded to find the blocks of
// its heads.
func TestBroadcastCarriesWithoutDecoding(t *testing.T) {
	tr := &publishedTransport{pub: make(chan []byte, 4)}
	recent := newRecentBlocks(1 << 20)
	b := newBroadcaster(tr, nil, recent, Options{}.withDefaults())
	defer b.close()

	nd := merkledag.NodeWithData([]byte("delta"))
	ctx := withAddedBlocks(context.Background())
	addedIn(ctx).add(nd)
	notProtobuf := []byte{0xff, 0xff}
	if err := b.Broadcast(ctx, notProtobuf); err != nil {
		t.Fatalf("commit broadcast: %v (was its heads message decoded?)", err)
	}
	env := published(t, tr)
	if !bytes.Equal(env.payload, notProtobuf) || len(env.blocks) != 1 || !env.blocks[0].cid.Equals(nd.Cid()) || env.verify() != nil {
		t.Fatalf("commit broadcast: %+v, want the payload as given and the added block", env)
	}

	// A rebroadcast: no collector in its context.
	recent.add(nd.Cid(), nd.RawData())
	payload, err := headsPayload([]cid.Cid{nd.Cid()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Broadcast(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	if env := published(t, tr); len(env.blocks) != 1 || !env.blocks[0].cid.Equals(nd.Cid()) {
		t.Fatalf("rebroadcast: %+v, want the head's block", env)
	}
	if err := b.Broadcast(context.Background(), notProtobuf); err == nil {
		t.Fatal("a rebroadcast that does not decode was published")
	}
}

// headsEnvelope is a heads message for cids, as a peer sends it.
func headsEnvelope(t *testing.T, cids []cid.Cid) []byte {
	t.Helper()
	p, err := headsPayload(cids)
	if err != nil {
		t.Fatal(err)
	}
	return (&envelope{payload: p}).encode()
}

// randomCIDs makes n CIDs of blocks nobody has.
func randomCIDs(t *testing.T, n int) []cid.Cid {
	t.Helper()
	out := make([]cid.Cid, n)
	for i := range out {
		h, err := mh.Sum([]byte(fmt.Sprintf("%s-%d", t.Name(), i)), mh.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = cid.NewCidV1(cid.DagProtobuf, h)
	}
	return out
}

// TestForgedHeadsCannotFillMemory: heads messages whose blocks never
// come are held by bytes, not only by count (150 messages of 4 MiB of
// forged heads took a node from 62 MB to 2.4 GB), and a message with
// more heads than any cluster makes is refused outright.
func TestForgedHeadsCannotFillMemory(t *testing.T) {
	net := newMemNet()
	n := openTestNode(t, net, "a", t.TempDir(), noAutoCompact(fastOpts()))
	defer n.close(t)
	b := n.store.bc

	if err := b.accept("mallory", headsEnvelope(t, randomCIDs(t, maxHeads+1))); err == nil {
		t.Fatalf("a message with %d heads was accepted", maxHeads+1)
	}
	b.parkMu.Lock()
	parked := len(b.parked)
	b.parkMu.Unlock()
	if parked != 0 {
		t.Fatalf("%d broadcasts parked after a refused one", parked)
	}

	const msgs = 400 // of maxHeads heads each: ~23 MB if all were kept
	for i := range msgs {
		cids := randomCIDs(t, maxHeads)
		cids[0] = testCID(t, []byte(fmt.Sprint("message ", i))) // unique messages
		if err := b.accept("mallory", headsEnvelope(t, cids)); err != nil {
			t.Fatal(err)
		}
	}
	b.parkMu.Lock()
	defer b.parkMu.Unlock()
	sum := 0
	for _, p := range b.parked {
		sum += p.size()
	}
	if sum != b.parkedSize || b.parkedSize > maxParkBytes || len(b.parked) == 0 {
		t.Fatalf("%d broadcasts parked holding %d bytes (counted %d): want at most %d", len(b.parked), sum, b.parkedSize, maxParkBytes)
	}
	if d := b.headsDropped.Load(); d == 0 {
		t.Fatal("no parked broadcast was dropped to stay within the bytes limit")
	}
}

// TestForgedDeltaDoesNotStallReplication: a carried delta whose child
// block nobody has is held back (and dropped after parkTTL) instead of
// being handed to go-ds-crdt, which waited DAGSyncerTimeout for the
// child with every other broadcast queued behind it, then went dirty.
// With the timeout at an hour, only the holding back lets b see a's
// write.
func TestForgedDeltaDoesNotStallReplication(t *testing.T) {
	net := newMemNet()
	opts := noAutoCompact(fastOpts())
	opts.DAGSyncerTimeout = time.Hour
	a := openTestNode(t, net, "a", t.TempDir(), opts)
	defer a.close(t)
	b := openTestNode(t, net, "b", t.TempDir(), opts)
	defer b.close(t)
	ctx := context.Background()
	if err := a.store.Put(ctx, key(0), []byte("before")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "b has a's first write", func() bool {
		v, err := b.store.Get(ctx, key(0))
		return err == nil && string(v) == "before"
	})

	// The forged delta: high priority, one link to a block nobody has.
	data, err := proto.Marshal(&pb.Delta{Priority: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	forged := merkledag.NodeWithData(data)
	if err := forged.AddRawLink("", &ipld.Link{Cid: testCID(t, []byte("nobody has this"))}); err != nil {
		t.Fatal(err)
	}
	payload, err := headsPayload([]cid.Cid{forged.Cid()})
	if err != nil {
		t.Fatal(err)
	}
	msg := (&envelope{payload: payload, blocks: []carriedBlock{{cid: forged.Cid(), data: forged.RawData()}}}).encode()
	if err := b.store.bc.accept("mallory", msg); err != nil {
		t.Fatal(err)
	}

	if err := a.store.Put(ctx, key(1), []byte("after")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "b has a's write made after the forged delta", func() bool {
		v, err := b.store.Get(ctx, key(1))
		return err == nil && string(v) == "after"
	})
	if b.store.Status(ctx).Dirty {
		t.Fatal("b's store went dirty")
	}
}

// TestUnreferencedBlocksAreNotStored: a message carrying blocks that
// neither its heads nor any block this node asked for point to (issue
// 14: 50 such messages put 176 MB on disk, never collected) gets none of
// them stored; the blocks its heads reach are stored as before.
func TestUnreferencedBlocksAreNotStored(t *testing.T) {
	net := newMemNet()
	b := openTestNode(t, net, "b", t.TempDir(), noAutoCompact(fastOpts()))
	defer b.close(t)
	ctx := context.Background()
	data, err := proto.Marshal(&pb.Delta{Priority: 1})
	if err != nil {
		t.Fatal(err)
	}
	head := merkledag.NodeWithData(data)
	junk := merkledag.NodeWithData(bytes.Repeat([]byte("junk"), 64<<10))
	payload, err := headsPayload([]cid.Cid{head.Cid()})
	if err != nil {
		t.Fatal(err)
	}
	msg := (&envelope{payload: payload, blocks: []carriedBlock{
		{cid: head.Cid(), data: head.RawData()},
		{cid: junk.Cid(), data: junk.RawData()},
	}}).encode()
	if err := b.store.bc.accept("mallory", msg); err != nil {
		t.Fatal(err)
	}
	if has, _ := b.store.opts.LocalBlocks.Has(ctx, junk.Cid()); has {
		t.Fatal("an unreferenced carried block was stored")
	}
	if has, _ := b.store.opts.LocalBlocks.Has(ctx, head.Cid()); !has {
		t.Fatal("the message's head block was not stored")
	}
	if got := b.store.bc.unreferenced.Load(); got != 1 {
		t.Fatalf("%d unreferenced blocks counted, want 1", got)
	}
}

// TestOnePeerCannotPushOutAnothersParkedHeads: a peer flooding heads
// nobody can resolve keeps at most a quarter of the parked room, and an
// honest peer's parked broadcast stays (before, the flood pushed out the
// oldest, whoever sent it).
func TestOnePeerCannotPushOutAnothersParkedHeads(t *testing.T) {
	net := newMemNet()
	n := openTestNode(t, net, "a", t.TempDir(), noAutoCompact(fastOpts()))
	defer n.close(t)
	b := n.store.bc
	if err := b.accept("alice", headsEnvelope(t, []cid.Cid{testCID(t, []byte("alice's head"))})); err != nil {
		t.Fatal(err)
	}
	// More one-head messages than the whole room holds (maxPark): the old
	// rule dropped the oldest parked broadcast, alice's.
	for i := range maxPark + 100 {
		if err := b.accept("mallory", headsEnvelope(t, []cid.Cid{testCID(t, []byte(fmt.Sprint("message ", i)))})); err != nil {
			t.Fatal(err)
		}
	}
	b.parkMu.Lock()
	defer b.parkMu.Unlock()
	alice, mallory, mallorys := 0, 0, 0
	for _, p := range b.parked {
		switch p.from {
		case "alice":
			alice++
		case "mallory":
			mallory += p.size()
			mallorys++
		}
	}
	if alice != 1 || mallory > maxParkBytes/4 || mallorys > maxPark/4 {
		t.Fatalf("alice's parked broadcasts %d (want 1); mallory's %d holding %d bytes (at most %d and %d)", alice, mallorys, mallory, maxPark/4, maxParkBytes/4)
	}
}

// countingBlocks counts the block reads of a LocalBlocks.
type countingBlocks struct {
	LocalBlocks
	gets atomic.Int64
}

func (c *countingBlocks) Get(ctx context.Context, k cid.Cid) (blocks.Block, error) {
	c.gets.Add(1)
	return c.LocalBlocks.Get(ctx, k)
}

// TestParkedBranchWalkedAgainOnlyWhenItsBlockArrives: a broadcast parked
// for a block missing below a long stored branch that is not merged (as
// after a rebase, the blocks of the replaced history) is not walked
// again at every look, only once that block is here. Before, each look
// read the whole branch again for every parked broadcast, with the park
// lock held: on a node with many such broadcasts the receive loop waited
// on that lock, no branch request was served, and replication stopped on
// every node (partition-halves, 7 nodes, seed 4401: 65 writes lost).
func TestParkedBranchWalkedAgainOnlyWhenItsBlockArrives(t *testing.T) {
	ctx := context.Background()
	bs := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	dagSvc := merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
	local := &countingBlocks{LocalBlocks: bs}
	opts := Options{LocalBlocks: local}.withDefaults()
	b := newBroadcaster(&publishedTransport{pub: make(chan []byte, 64)}, dagSvc, newRecentBlocks(1<<20), opts)
	defer b.close()

	// A chain of stored blocks; its bottom links to one nobody has yet.
	const chain = 500
	bottomData, err := proto.Marshal(&pb.Delta{Priority: 1})
	if err != nil {
		t.Fatal(err)
	}
	absent := merkledag.NodeWithData(bottomData)
	below := absent.Cid()
	var nodes []ipld.Node
	for i := range chain {
		data, err := proto.Marshal(&pb.Delta{Priority: uint64(i + 2)})
		if err != nil {
			t.Fatal(err)
		}
		nd := merkledag.NodeWithData(data)
		if err := nd.AddRawLink("", &ipld.Link{Cid: below}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
		below = nd.Cid()
	}
	if err := dagSvc.AddMany(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	if err := b.accept("peer", headsEnvelope(t, []cid.Cid{below})); err != nil {
		t.Fatal(err)
	}
	b.parkMu.Lock()
	parked := len(b.parked)
	b.parkMu.Unlock()
	if parked != 1 {
		t.Fatalf("%d broadcasts parked, want 1", parked)
	}

	before := local.gets.Load()
	for range 20 {
		b.unpark()
	}
	if n := local.gets.Load() - before; n >= chain {
		t.Fatalf("20 looks at the parked broadcast read %d blocks; want the branch (%d blocks) read at most once more", n, chain)
	}
	// Once the missing block is here, the broadcast goes on.
	if err := dagSvc.Add(ctx, absent); err != nil {
		t.Fatal(err)
	}
	b.unpark()
	b.parkMu.Lock()
	parked = len(b.parked)
	b.parkMu.Unlock()
	if parked != 0 || b.queueLen() != 1 {
		t.Fatalf("after its block arrived: %d parked, %d queued; want 0 and 1", parked, b.queueLen())
	}
}

// stuckTransport's SendTo to stuck blocks until its context ends (a
// dial through a relay that hangs until the transport's timeout); every
// other SendTo reports its peer on sent.
type stuckTransport struct {
	publishedTransport
	stuck string
	sent  chan string
}

func (s *stuckTransport) SendTo(ctx context.Context, to string, _ []byte) error {
	if to == s.stuck {
		<-ctx.Done()
		return ctx.Err()
	}
	s.sent <- to
	return nil
}

// TestSendToOnePeerDoesNotWaitForAnother: a message to one peer (a branch
// request to the hub) goes out while a send to another peer hangs. With
// one queue for all peers it waited for the hung send's 10 s timeout
// (nat-symmetric: a write shown at the other sites after 4.6 s).
func TestSendToOnePeerDoesNotWaitForAnother(t *testing.T) {
	tr := &stuckTransport{publishedTransport: publishedTransport{pub: make(chan []byte, 4)}, stuck: "site", sent: make(chan string, 4)}
	b := newBroadcaster(tr, nil, newRecentBlocks(1<<20), Options{}.withDefaults())
	defer b.close()
	b.sendTo("site", []byte("request"))
	b.sendTo("hub", []byte("request"))
	select {
	case to := <-tr.sent:
		if to != "hub" {
			t.Fatalf("sent to %q, want hub", to)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the message to the hub waited for the hung send to the site")
	}
}
