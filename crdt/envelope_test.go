package crdt

import (
	"bytes"
	"errors"
	"testing"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

func testCID(t testing.TB, data []byte) cid.Cid {
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.DagProtobuf, h)
}

func TestEnvelopeRoundTrip(t *testing.T) {
	data := []byte("block")
	e := envelope{payload: []byte("heads"), blocks: []carriedBlock{{cid: testCID(t, data), data: data}}}
	got, err := decodeEnvelope(e.encode())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.payload, e.payload) || len(got.blocks) != 1 || !got.blocks[0].cid.Equals(e.blocks[0].cid) {
		t.Fatalf("round trip: %+v", got)
	}
	if err := got.verify(); err != nil {
		t.Fatal(err)
	}
	got.blocks[0].data = []byte("other")
	if err := got.verify(); !errors.Is(err, errEnvelope) {
		t.Fatalf("verify of a wrong block: %v", err)
	}
}

func TestEnvelopeBad(t *testing.T) {
	good := (&envelope{payload: []byte("p")}).encode()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     {'X', 1, 0, 0},
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 0),
		"huge len":  {'S', 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := decodeEnvelope(b); !errors.Is(err, errEnvelope) {
			t.Errorf("%s: err = %v, want errEnvelope", name, err)
		}
	}
	// Another release's format is not malformed: its sender is not
	// scored down for it.
	if _, err := decodeEnvelope([]byte{'S', 9, 0, 0}); !errors.Is(err, errEnvelopeVersion) || errors.Is(err, errEnvelope) {
		t.Errorf("version 9: err = %v, want errEnvelopeVersion only", err)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	data := []byte("block")
	f.Add((&envelope{payload: []byte("heads"), blocks: []carriedBlock{{cid: testCID(f, data), data: data}}}).encode())
	f.Add([]byte{'S', 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes.
		if !bytes.Equal(e.encode(), b) {
			t.Fatalf("re-encoding differs")
		}
		_ = e.verify()
	})
}
