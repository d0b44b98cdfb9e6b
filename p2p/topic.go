package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxTopicMessage bounds one message on a Topic: topics carry small
// control messages (election heartbeats are a few hundred bytes).
const maxTopicMessage = 1 << 20

// topicBuffer is a Topic's subscription buffer: at most a few messages
// per peer are waiting at any time, but a reader stalled for a moment
// must not lose them.
const topicBuffer = 1024

var topicNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Topic is a gossipsub topic of this node's environment for small,
// ephemeral messages (election heartbeats): Publish floods to every peer
// on the topic, Receive returns messages of other nodes with their
// author. As on the replication topic, a validator drops messages whose
// author is not in Config.Trusted (when that list is non-empty), so they
// are neither delivered nor relayed.
//
// Unlike Replication there is no direct copy to peers gossip does not
// list yet: a message published in the first ~100 ms of a connection may
// be lost, which suits periodic messages. Its methods are safe for
// concurrent use.
type Topic struct {
	name  string
	self  peer.ID
	log   *slog.Logger
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	trust *trust
	lag   lagMeter

	// ctx ends when the topic or the node closes; Receive watches it.
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// JoinTopic joins the gossipsub topic "starling/<env>/<name>" (name:
// 1-32 characters of a-z, 0-9 and '-', e.g. "election") and subscribes
// to it. Joining a name twice fails; Close the first Topic first.
// ErrClosed after the node closed.
func (n *Node) JoinTopic(name string) (*Topic, error) {
	if !topicNameRE.MatchString(name) {
		return nil, fmt.Errorf("p2p: topic name %q: use 1-32 characters of a-z, 0-9 and '-'", name)
	}
	if name == "replication" {
		return nil, fmt.Errorf("p2p: topic name %q is the replication topic (use Node.Replication)", name)
	}
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	full := "starling/" + n.cfg.Env + "/" + name
	t := &Topic{
		name:  full,
		self:  n.self,
		log:   n.base.With("component", "topic", "topic", full),
		ps:    n.ps,
		trust: n.trust,
	}
	// The validator must be in place before Join announces interest.
	if err := n.ps.RegisterTopicValidator(full, t.validate, pubsub.WithValidatorInline(true)); err != nil {
		return nil, fmt.Errorf("p2p: join topic %s: register validator: %w", full, err)
	}
	var err error
	if t.topic, err = n.ps.Join(full); err != nil {
		_ = n.ps.UnregisterTopicValidator(full)
		return nil, fmt.Errorf("p2p: join topic %s: %w", full, err)
	}
	t.sub, err = t.topic.Subscribe(
		pubsub.WithBufferSize(topicBuffer),
		pubsub.WithMessageFilter(func(m *pubsub.Message) bool {
			if t.own(m) {
				t.lag.arrived(m.Data, time.Now())
				return false
			}
			return true
		}),
	)
	if err != nil {
		_ = t.topic.Close()
		_ = n.ps.UnregisterTopicValidator(full)
		return nil, fmt.Errorf("p2p: subscribe to topic %s: %w", full, err)
	}
	// The node's context ends in Close: pubsub does not close
	// subscriptions when it stops, so Receive must watch the node too.
	t.ctx, t.cancel = context.WithCancel(n.ctx)
	return t, nil
}

// Name is the full topic name, "starling/<env>/<name>".
func (t *Topic) Name() string { return t.name }

func (t *Topic) own(m *pubsub.Message) bool {
	return m.ReceivedFrom == t.self || m.GetFrom() == t.self
}

// validate judges the author (signer) of a message, not the peer that
// forwarded it. Inline: it is cheap.
func (t *Topic) validate(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	if t.trust.accepts(m.GetFrom()) {
		return pubsub.ValidationAccept
	}
	t.log.Debug("dropped message from untrusted peer", "peer", m.GetFrom())
	return pubsub.ValidationReject
}

// Publish floods data to every peer on the topic (best effort).
func (t *Topic) Publish(ctx context.Context, data []byte) error {
	if t.ctx.Err() != nil {
		return ErrClosed
	}
	if len(data) > maxTopicMessage {
		return fmt.Errorf("p2p: publish on %s: message of %d bytes exceeds the %d-byte limit", t.name, len(data), maxTopicMessage)
	}
	t.lag.sent(data, time.Now())
	if err := t.topic.Publish(ctx, data); err != nil {
		if t.ctx.Err() != nil {
			return ErrClosed
		}
		return fmt.Errorf("p2p: publish on %s: %w", t.name, err)
	}
	return nil
}

// Lag is the longest time one of this node's own messages took, within
// the last period within, from Publish through gossipsub's validation
// and processing to the point where it is delivered to subscribers: the
// queue every message from a peer waits in too. A node whose own
// pipeline lags that much has received its peers' messages that late
// (the election extends its timeouts by it).
func (t *Topic) Lag(within time.Duration) time.Duration { return t.lag.max(within, time.Now()) }

// Receive returns the next message of another trusted node with its
// author's peer ID (string form). ctx.Err() when ctx ends, ErrClosed
// once the topic or the node is closed.
func (t *Topic) Receive(ctx context.Context) (from string, data []byte, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel)
	defer stop()
	for {
		m, err := t.sub.Next(ctx)
		if err != nil {
			if t.ctx.Err() != nil {
				return "", nil, ErrClosed
			}
			if ctx.Err() != nil {
				return "", nil, ctx.Err()
			}
			return "", nil, ErrClosed // subscription cancelled
		}
		if t.own(m) {
			continue
		}
		return m.GetFrom().String(), m.Data, nil
	}
}

// Close leaves the topic. Safe to call twice, and after the node closed.
func (t *Topic) Close() error {
	var err error
	t.once.Do(func() {
		t.cancel()
		t.sub.Cancel()
		err = errors.Join(t.topic.Close(), t.ps.UnregisterTopicValidator(t.name))
		if errors.Is(err, context.Canceled) {
			err = nil // pubsub already stopped with the node
		}
	})
	if err != nil {
		return fmt.Errorf("p2p: close topic %s: %w", t.name, err)
	}
	return nil
}
