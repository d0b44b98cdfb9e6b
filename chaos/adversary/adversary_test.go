package adversary

import (
	"encoding/binary"
	"testing"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	pb "github.com/ipfs/go-ds-crdt/pb"
	"google.golang.org/protobuf/proto"
)

// TestForgedDelta: the forged block hashes to its CID (a node's verify
// passes it) and decodes as a go-ds-crdt delta linking to the child.
func TestForgedDelta(t *testing.T) {
	child := randomCID()
	raw, c, err := ForgedDelta("/r/x", child)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Prefix().Sum(raw)
	if err != nil || !sum.Equals(c) {
		t.Fatalf("CID %s does not match the block (%v, %v)", c, sum, err)
	}
	nd, err := dag.DecodeProtobuf(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(nd.Links()) != 1 || !nd.Links()[0].Cid.Equals(child) {
		t.Fatalf("links %v, want the child %s", nd.Links(), child)
	}
	var d pb.Delta
	if err := proto.Unmarshal(nd.Data(), &d); err != nil || len(d.GetElements()) != 1 || d.GetElements()[0].GetKey() != "/r/x" {
		t.Fatalf("delta %v (%v)", &d, err)
	}
}

// TestEnvelope checks the layout crdt/envelope.go documents: magic,
// version, payload, blocks, no wants.
func TestEnvelope(t *testing.T) {
	payload := HeadsPayload(nil)
	b := Envelope([]byte("hi"), []Block{{CID: randomCID(), Data: []byte("data")}})
	if b[0] != 'S' || b[1] != 1 {
		t.Fatalf("header % x", b[:2])
	}
	r := b[2:]
	next := func() uint64 {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			t.Fatal("truncated")
		}
		r = r[n:]
		return v
	}
	if n := next(); n != 2 || string(r[:2]) != "hi" {
		t.Fatalf("payload length %d", n)
	}
	r = r[2:]
	if next() != 1 {
		t.Fatal("want one block")
	}
	r = r[next():] // cid
	if n := next(); string(r[:n]) != "data" {
		t.Fatal("block data")
	}
	r = r[4:]
	if next() != 0 || len(r) != 0 {
		t.Fatal("want no wants and nothing after")
	}
	if len(payload) != 0 {
		t.Fatalf("no heads encode to %d bytes", len(payload))
	}
}
