package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"

	cid "github.com/ipfs/go-cid"
)

// The wire format of a replication message. go-ds-crdt's own broadcast
// (a protobuf list of head CIDs) travels as the payload; new blocks
// travel beside it so that a receiver can apply them at once instead of
// spending a bitswap round (20 ms minimum here) per block.
//
//	byte     magic 'S'
//	byte     version (1)
//	uvarint  len(payload), payload
//	uvarint  number of blocks
//	  uvarint len(cid), cid bytes, uvarint len(data), data   (per block)
//	uvarint  number of wants
//	  uvarint len(cid), cid bytes                            (per want)
//
// A message with wants asks the receiver for those blocks and what lies
// below them (see broadcaster.serveWants); the answer is a message with
// blocks and no payload.
const (
	envelopeMagic   = 'S'
	envelopeVersion = 1
	// maxEnvelope bounds a decoded message; libp2p streams and gossipsub
	// messages are limited well below it.
	maxEnvelope = 8 << 20
	// maxEnvelopeBlocks bounds the number of blocks in one message.
	maxEnvelopeBlocks = 4096
)

// errEnvelope reports a malformed replication message. errEnvelopeVersion
// reports one of another format version: a node of another release, not
// a misbehaving one (a rolling upgrade must not get peers banned).
var (
	errEnvelope        = errors.New("crdt: malformed replication message")
	errEnvelopeVersion = errors.New("crdt: replication message of another version")
)

// envelope is a decoded replication message.
type envelope struct {
	payload []byte // go-ds-crdt broadcast bytes; empty in branch requests and replies
	blocks  []carriedBlock
	wants   []cid.Cid // roots of branches the sender asks for
}

// carriedBlock is a DAG block carried inside a message.
type carriedBlock struct {
	cid  cid.Cid
	data []byte
}

func (e *envelope) encode() []byte {
	n := 2 + binary.MaxVarintLen64*2 + len(e.payload)
	for _, b := range e.blocks {
		n += 2*binary.MaxVarintLen64 + b.cid.ByteLen() + len(b.data)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, envelopeMagic, envelopeVersion)
	buf = binary.AppendUvarint(buf, uint64(len(e.payload)))
	buf = append(buf, e.payload...)
	buf = binary.AppendUvarint(buf, uint64(len(e.blocks)))
	for _, b := range e.blocks {
		cb := b.cid.Bytes()
		buf = binary.AppendUvarint(buf, uint64(len(cb)))
		buf = append(buf, cb...)
		buf = binary.AppendUvarint(buf, uint64(len(b.data)))
		buf = append(buf, b.data...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(e.wants)))
	for _, c := range e.wants {
		cb := c.Bytes()
		buf = binary.AppendUvarint(buf, uint64(len(cb)))
		buf = append(buf, cb...)
	}
	return buf
}

// decodeEnvelope parses a message. It does not verify block hashes; see
// verify.
func decodeEnvelope(buf []byte) (*envelope, error) {
	if len(buf) > maxEnvelope {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", errEnvelope, len(buf), maxEnvelope)
	}
	if len(buf) < 2 || buf[0] != envelopeMagic {
		return nil, fmt.Errorf("%w: bad magic", errEnvelope)
	}
	if buf[1] != envelopeVersion {
		return nil, fmt.Errorf("%w: version %d, this node speaks %d (upgrade the older node)", errEnvelopeVersion, buf[1], envelopeVersion)
	}
	r := reader{buf: buf[2:]}
	e := &envelope{payload: r.bytes()}
	nblocks := r.uvarint()
	if r.err == nil && nblocks > maxEnvelopeBlocks {
		return nil, fmt.Errorf("%w: %d blocks exceeds the limit of %d", errEnvelope, nblocks, maxEnvelopeBlocks)
	}
	for i := uint64(0); i < nblocks && r.err == nil; i++ {
		cb := r.bytes()
		data := r.bytes()
		if r.err != nil {
			break
		}
		c, err := cid.Cast(cb)
		if err != nil {
			return nil, fmt.Errorf("%w: block %d: %v", errEnvelope, i, err)
		}
		e.blocks = append(e.blocks, carriedBlock{cid: c, data: data})
	}
	nwants := r.uvarint()
	if r.err == nil && nwants > maxEnvelopeBlocks {
		return nil, fmt.Errorf("%w: %d wants exceeds the limit of %d", errEnvelope, nwants, maxEnvelopeBlocks)
	}
	for i := uint64(0); i < nwants && r.err == nil; i++ {
		cb := r.bytes()
		if r.err != nil {
			break
		}
		c, err := cid.Cast(cb)
		if err != nil {
			return nil, fmt.Errorf("%w: want %d: %v", errEnvelope, i, err)
		}
		e.wants = append(e.wants, c)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", errEnvelope, r.err)
	}
	if len(r.buf) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errEnvelope, len(r.buf))
	}
	return e, nil
}

// verify checks every carried block against its CID. A message with one
// bad block is dropped whole: passing its heads on would make go-ds-crdt
// wait for a fetch of a block that was just shown to be unavailable.
func (e *envelope) verify() error {
	for i, b := range e.blocks {
		got, err := b.cid.Prefix().Sum(b.data)
		if err != nil {
			return fmt.Errorf("%w: block %d: %v", errEnvelope, i, err)
		}
		if !got.Equals(b.cid) {
			return fmt.Errorf("%w: block %d does not match its CID %s", errEnvelope, i, b.cid)
		}
	}
	return nil
}

type reader struct {
	buf []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.err = errors.New("truncated varint")
		return 0
	}
	if n > 1 && r.buf[n-1] == 0 {
		// One message, one encoding: refuse padded varints.
		r.err = errors.New("non-minimal varint")
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.buf)) {
		r.err = fmt.Errorf("length %d exceeds the %d bytes left", n, len(r.buf))
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}
