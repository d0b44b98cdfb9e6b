package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/p2p"
)

// The p2p topic adapter is what the election runner consumes.
var _ election.Transport = (*p2p.Topic)(nil)

// ElectionTopic is the name under which the election's gossipsub topic
// is joined: "starling/<env>/election". Heartbeats never enter the CRDT
// store (they would grow the Merkle-DAG forever).
const ElectionTopic = "election"

// TermsFile keeps the highest election term of each group across
// restarts (local to the node, not replicated).
const TermsFile = "election-terms.json"

// WithElectionConfig adjusts the election's config after it is built
// from the LAN preset, the node ID and the peer ID (tests use
// election.FastConfig timings; a WAN deployment WANConfig's).
func WithElectionConfig(f func(*election.Config)) Option {
	return func(o *openOptions) { o.electionConfig = append(o.electionConfig, f) }
}

// WithElectionPreset sets the election's timings (Interval, Timeout,
// Warmup, LeaveLinger) to the preset named name: "lan" (the default),
// "wan" or "fast" (election.Preset).
func WithElectionPreset(name string) (Option, error) {
	p, err := election.Preset(name)
	if err != nil {
		return nil, err
	}
	return WithElectionConfig(func(c *election.Config) {
		c.Interval, c.Timeout, c.Warmup, c.LeaveLinger = p.Interval, p.Timeout, p.Warmup, p.LeaveLinger
	}), nil
}

// electionState is the node's part of the leader election.
type electionState struct {
	runner *election.Runner
	topic  *p2p.Topic
}

// startElection joins the election topic and starts the runner, whose
// cluster candidate is not available yet: statesync makes it available
// once the node is ACTIVE, so a node still syncing is never elected.
func (n *Node) startElection(adjust []func(*election.Config)) error {
	topic, err := n.p2p.JoinTopic(ElectionTopic)
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	cfg := election.LANConfig()
	cfg.NodeID = n.cfg.NodeID
	cfg.Peer = n.p2p.ID().String()
	cfg.Terms = termsFile(filepath.Join(n.dir, TermsFile))
	cfg.Logger = n.log
	for _, f := range adjust {
		f(&cfg)
	}
	r, err := election.New(cfg, topic)
	if err != nil {
		_ = topic.Close()
		return fmt.Errorf("start election: %w", err)
	}
	n.elect = electionState{runner: r, topic: topic}
	return nil
}

// closeElection says goodbye (the others fail over at once) and leaves
// the topic. Called first in Close, while the network is still up; it
// also ends the API's election streams.
func (n *Node) closeElection() error {
	var errs []error
	if n.elect.runner != nil {
		errs = append(errs, n.elect.runner.Close())
	}
	if n.elect.topic != nil {
		errs = append(errs, n.elect.topic.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close election: %w", err)
	}
	return nil
}

// Election is the node's leader election: the cluster group, and the
// groups services join (the Go lifecycle API).
func (n *Node) Election() *election.Runner { return n.elect.runner }

// termsFile stores terms as JSON in one file, written atomically.
type termsFile string

func (f termsFile) LoadTerms() (map[string]uint64, error) {
	b, err := os.ReadFile(string(f))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var terms map[string]uint64
	if err := json.Unmarshal(b, &terms); err != nil {
		// Terms are an optimisation (peers tell the current ones): a
		// damaged file must not keep the node from starting.
		return nil, nil
	}
	return terms, nil
}

func (f termsFile) SaveTerms(terms map[string]uint64) error {
	b, err := json.Marshal(terms)
	if err != nil {
		return err
	}
	return writeFileAtomic(string(f), append(b, '\n'), 0o600)
}
