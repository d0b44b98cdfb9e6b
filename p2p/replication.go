package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const (
	// maxMessageSize bounds one replication message, gossip or direct.
	// go-ds-crdt deltas are capped well below (512 KiB by default) and a
	// broadcast may carry blocks; 4 MiB leaves room without letting a peer
	// make us buffer without bound.
	maxMessageSize = 4 << 20
	// gossipBuffer is the subscription buffer. go-ds-crdt's own
	// broadcaster uses 32 and drops heads under bursts (measured).
	gossipBuffer = 4096
	// inboxSize is the number of received messages (gossip and direct)
	// waiting for Receive.
	inboxSize = 1024
	// sendTimeout bounds SendTo (dial, negotiate, write, ack) unless the
	// caller's context ends sooner.
	sendTimeout = 5 * time.Second
	// streamTimeout bounds how long an incoming direct stream may take to
	// deliver its message, and how long it waits for room in the inbox.
	streamTimeout = 10 * time.Second
	// ackByte is written back by the receiver once the message is queued,
	// so SendTo returns only after delivery.
	ackByte = 1
)

// Replication is the replication-topic transport: gossipsub for
// broadcast, plus a direct stream protocol for messages to one peer (the
// heads exchange on connect).
//
// Its methods are safe for concurrent use. Messages from a peer that is
// not in Config.Trusted (when that list is non-empty) are dropped, on
// gossip by the topic validator (so they are not relayed either) and on
// direct streams by resetting the stream.
type Replication struct {
	self  peer.ID
	host  host.Host
	log   *slog.Logger
	proto protocol.ID
	trust *trust

	topic *pubsub.Topic
	sub   *pubsub.Subscription

	inbox *inbox
	gaps  chan gapMsg   // published messages for peers gossip may miss
	done  chan struct{} // closed when the node starts closing

	// misbehaved is Node.Misbehaved.
	misbehaved func(id, why string)
	// counts counts direct messages (traffic.go); nil in tests that
	// build a Replication alone.
	counts *trafficCount
	// dropLogged is when logDropped last logged.
	dropMu     sync.Mutex
	dropLogged time.Time
}

// Misbehaved records that a peer sent a replication message no correct
// node sends (see Node.Misbehaved); the store calls it.
func (r *Replication) Misbehaved(id, why string) {
	if r.misbehaved != nil {
		r.misbehaved(id, why)
	}
}

// gapMsg is a published message to deliver directly to one peer.
type gapMsg struct {
	to   peer.ID
	data []byte
}

// gapQueue bounds the direct copies of published messages waiting to be
// sent; beyond it they are dropped (the heads exchange covers them).
const gapQueue = 256

type inbound struct {
	from string
	data []byte
}

func newReplication(h host.Host, ps *pubsub.PubSub, names envNames, tr *trust, log *slog.Logger) (*Replication, error) {
	r := &Replication{
		self:  h.ID(),
		host:  h,
		log:   log,
		proto: names.directProto,
		trust: tr,
		inbox: newInbox(),
		gaps:  make(chan gapMsg, gapQueue),
		done:  make(chan struct{}),
	}

	// The validator must be in place before the first message can arrive,
	// i.e. before Join/Subscribe announce interest in the topic.
	err := ps.RegisterTopicValidator(names.topic, r.validate, pubsub.WithValidatorInline(true))
	if err != nil {
		return nil, fmt.Errorf("p2p: register replication validator: %w", err)
	}
	r.topic, err = ps.Join(names.topic)
	if err != nil {
		return nil, fmt.Errorf("p2p: join replication topic: %w", err)
	}
	r.sub, err = r.topic.Subscribe(
		pubsub.WithBufferSize(gossipBuffer),
		pubsub.WithMessageFilter(func(m *pubsub.Message) bool { return !r.own(m) }),
	)
	if err != nil {
		_ = r.topic.Close()
		return nil, fmt.Errorf("p2p: subscribe to replication topic: %w", err)
	}
	h.SetStreamHandler(r.proto, r.handleStream)
	return r, nil
}

// close stops the subscription and the stream handler. The pubsub itself
// is stopped by the node.
func (r *Replication) close() {
	r.host.RemoveStreamHandler(r.proto)
	r.sub.Cancel()
	if err := r.topic.Close(); err != nil {
		r.log.Debug("close replication topic", "err", err)
	}
}

func (r *Replication) own(m *pubsub.Message) bool {
	return m.ReceivedFrom == r.self || m.GetFrom() == r.self
}

// validate is the topic validator. It judges the signer (the author of
// the message), not the peer that forwarded it. Inline: it is cheap.
func (r *Replication) validate(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	if r.trust.accepts(m.GetFrom()) {
		return pubsub.ValidationAccept
	}
	r.log.Debug("dropped gossip from untrusted peer", "peer", m.GetFrom())
	return pubsub.ValidationReject
}

// pump moves gossip messages into the inbox until ctx ends. It is run by
// the node under its WaitGroup.
func (r *Replication) pump(ctx context.Context) {
	for {
		m, err := r.sub.Next(ctx)
		if err != nil {
			return
		}
		if r.own(m) {
			continue
		}
		ok := r.inbox.push(inbound{from: m.GetFrom().String(), data: m.Data}, ctx.Done(), nil)
		if !ok && ctx.Err() != nil {
			return
		}
		r.logDropped()
	}
}

// logDropped logs the messages dropped because their sender's share of
// the inbox was full, once a minute at most.
func (r *Replication) logDropped() {
	r.dropMu.Lock()
	defer r.dropMu.Unlock()
	if time.Since(r.dropLogged) < time.Minute {
		return
	}
	if d := r.inbox.takeDropped(); len(d) > 0 {
		r.dropLogged = time.Now()
		r.log.Warn("dropped replication messages: the sender's share of the receive queue was full (it sends faster than this node takes them)", "dropped_by_peer", d)
	}
}

// Publish sends data to all peers on the replication topic.
//
// Gossipsub only sends to peers whose subscription it has seen: a message
// published in the first moments of a connection (measured here: about
// 100 ms, up to a gossip heartbeat) never reaches the new peer. Publish
// therefore also queues a direct copy (SendTo, in the background) for
// every connected peer that gossipsub does not list on the topic yet.
// A message published while a peer is partitioned is still lost; callers
// recover with a heads exchange on connect and periodic rebroadcast.
func (r *Replication) Publish(ctx context.Context, data []byte) error {
	if r.closed() {
		return ErrClosed
	}
	if len(data) > maxMessageSize {
		return fmt.Errorf("p2p: publish: message of %d bytes exceeds the %d-byte limit", len(data), maxMessageSize)
	}
	if err := r.topic.Publish(ctx, data); err != nil {
		if r.closed() {
			return ErrClosed
		}
		return fmt.Errorf("p2p: publish: %w", err)
	}
	onTopic := make(map[peer.ID]bool)
	for _, p := range r.topic.ListPeers() {
		onTopic[p] = true
	}
	for _, p := range r.host.Network().Peers() {
		if onTopic[p] || !r.trust.trusts(p) {
			continue
		}
		select {
		case r.gaps <- gapMsg{to: p, data: data}:
		default:
			r.log.Debug("direct copy of a publish dropped: queue full", "peer", p)
		}
	}
	return nil
}

// fillGaps sends the direct copies queued by Publish until ctx ends. It
// is run by the node under its WaitGroup.
func (r *Replication) fillGaps(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-r.gaps:
			if err := r.SendTo(ctx, m.to.String(), m.data); err != nil {
				r.log.Debug("direct copy of a publish failed", "peer", m.to, "err", err)
			}
		}
	}
}

// SendTo sends data to one peer over a direct stream. to is the peer ID
// in its string form (peer.ID.String). It dials the peer if needed and
// returns once the peer has queued the message, or an error (at most 5s,
// less if ctx ends sooner). A peer that does not trust this node resets
// the stream, which makes SendTo fail.
func (r *Replication) SendTo(ctx context.Context, to string, data []byte) error {
	if r.closed() {
		return ErrClosed
	}
	id, err := peer.Decode(to)
	if err != nil {
		return fmt.Errorf("p2p: send to %q: bad peer ID: %w", to, err)
	}
	if id == r.self {
		return fmt.Errorf("p2p: send to %s: that is this node", id)
	}
	if len(data) > maxMessageSize {
		return fmt.Errorf("p2p: send to %s: message of %d bytes exceeds the %d-byte limit", id, len(data), maxMessageSize)
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()

	s, err := r.host.NewStream(allowLimited(ctx, "replication"), id, r.proto)
	if err != nil {
		if r.closed() {
			return ErrClosed
		}
		return fmt.Errorf("p2p: send to %s: open stream: %w", id, err)
	}
	if r.counts != nil {
		r.counts.msgsOut.Add(1)
	}
	if err := r.send(ctx, s, data); err != nil {
		_ = s.Reset()
		if r.closed() {
			return ErrClosed
		}
		return fmt.Errorf("p2p: send to %s: %w", id, err)
	}
	return s.Close()
}

func (r *Replication) send(ctx context.Context, s network.Stream, data []byte) error {
	if deadline, ok := ctx.Deadline(); ok {
		if err := s.SetDeadline(deadline); err != nil {
			return err
		}
	}
	// A stream blocked in Read or Write does not watch ctx; reset it when
	// ctx ends before the deadline does (a cancel by the caller).
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()

	if err := writeFrame(s, data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(s, ack[:]); err != nil {
		return fmt.Errorf("no acknowledgement (does the peer trust this node?): %w", err)
	}
	if ack[0] != ackByte {
		return fmt.Errorf("bad acknowledgement %d", ack[0])
	}
	return nil
}

// handleStream receives one direct message. libp2p runs it on its own
// goroutine; it ends within streamTimeout, or at once when the node closes.
func (r *Replication) handleStream(s network.Stream) {
	remote := s.Conn().RemotePeer()
	if !r.trust.accepts(remote) {
		r.log.Debug("dropped direct stream from untrusted peer", "peer", remote)
		_ = s.Reset()
		return
	}
	_ = s.SetDeadline(time.Now().Add(streamTimeout))
	data, err := readFrame(bufio.NewReader(s), maxMessageSize)
	if err != nil {
		r.log.Debug("bad direct message", "peer", remote, "err", err)
		_ = s.Reset()
		return
	}
	if r.counts != nil {
		r.counts.msgsIn.Add(1)
	}
	wctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	ok := r.inbox.push(inbound{from: remote.String(), data: data}, wctx.Done(), r.done)
	cancel()
	if !ok {
		r.logDropped()
		_ = s.Reset()
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(sendTimeout))
	if _, err := s.Write([]byte{ackByte}); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// Receive returns the next message received from gossip or a direct
// stream (never one this node published itself), with the sender's peer
// ID as a string. It returns ctx.Err() when ctx ends and ErrClosed after
// Close.
//
// Messages are queued from the moment New returns; a caller that does not
// call Receive for a long time makes gossip drop messages once the
// buffers (about 5,000 messages) are full, and makes SendTo to this node
// fail.
func (r *Replication) Receive(ctx context.Context) (from string, data []byte, err error) {
	if r.closed() {
		return "", nil, ErrClosed
	}
	m, err := r.inbox.pop(ctx, r.done)
	if err != nil {
		return "", nil, err
	}
	return m.from, m.data, nil
}

func (r *Replication) closed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// errFrameTooLarge is returned by readFrame for a length over the limit.
var errFrameTooLarge = errors.New("frame too large")

// writeFrame writes data prefixed with its length as an unsigned varint.
func writeFrame(w io.Writer, data []byte) error {
	buf := make([]byte, 0, binary.MaxVarintLen64+len(data))
	buf = binary.AppendUvarint(buf, uint64(len(data)))
	buf = append(buf, data...)
	_, err := w.Write(buf)
	return err
}

// byteReader is what readFrame needs: a bufio.Reader or a bytes.Reader.
type byteReader interface {
	io.Reader
	io.ByteReader
}

// readFrame reads one frame written by writeFrame, refusing lengths over
// limit before allocating.
func readFrame(r byteReader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("read length: %w", err)
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, limit)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	return data, nil
}
