package node

import (
	"fmt"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/p2p"
)

// configMu serialises the changes of config.json made while a node runs.
var configMu sync.Mutex

// SavePeer adds the static peer addr (a multiaddr ending in /p2p/<id>)
// to DIR/config.json's peers, so that the node dials it again after a
// restart. An address already there is left alone; another address of
// the same peer is replaced. Only the file changes: flags given to the
// running node (`run --peer`) are not written into it.
func SavePeer(dir, addr string) error {
	ai, err := p2p.ParsePeerAddr(addr)
	if err != nil {
		return fmt.Errorf("peers (--peer): %w", err)
	}
	configMu.Lock()
	defer configMu.Unlock()
	cfg, err := LoadConfig(dir)
	if err != nil {
		return err
	}
	suffix := "/p2p/" + ai.ID.String()
	kept := cfg.Peers[:0]
	for _, p := range cfg.Peers {
		if p == addr {
			return nil
		}
		if !strings.HasSuffix(p, suffix) {
			kept = append(kept, p)
		}
	}
	cfg.Peers = append(kept, addr)
	return writeConfig(dir, cfg)
}

// ForgetPeer removes every address of peer id from DIR/config.json's
// peers (`cluster remove`); the file is left alone when it has none.
func ForgetPeer(dir string, id peer.ID) error {
	configMu.Lock()
	defer configMu.Unlock()
	cfg, err := LoadConfig(dir)
	if err != nil {
		return err
	}
	suffix := "/p2p/" + id.String()
	kept := make([]string, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		if !strings.HasSuffix(p, suffix) {
			kept = append(kept, p)
		}
	}
	if len(kept) == len(cfg.Peers) {
		return nil
	}
	cfg.Peers = kept
	return writeConfig(dir, cfg)
}
