package crdt

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	cid "github.com/ipfs/go-cid"
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
