package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ReadPeerID returns the peer ID of the identity at path, which must
// exist (an error wrapping fs.ErrNotExist otherwise).
func ReadPeerID(path string) (peer.ID, error) {
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("p2p: read identity: %w", err)
	}
	key, err := LoadOrCreateIdentity(path)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(key)
}

// LoadOrCreateIdentity reads an Ed25519 key from path, or creates one
// (file mode 0600, written atomically) when path does not exist.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := crypto.UnmarshalPrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("p2p: load identity %s: not a libp2p private key (delete it to create a new identity, which changes the peer ID): %w", path, err)
		}
		if key.Type() != crypto.Ed25519 {
			return nil, fmt.Errorf("p2p: load identity %s: key type %s, want Ed25519", path, key.Type())
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("p2p: load identity: %w", err)
	}

	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: create identity: %w", err)
	}
	data, err = crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: create identity: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("p2p: create identity: %w", err)
	}
	if err := writeFileAtomic(path, data, false); err != nil {
		return nil, fmt.Errorf("p2p: create identity: %w", err)
	}
	return key, nil
}

// writeFileAtomic writes data to a temporary file (mode 0600) in path's
// directory, syncs it, and moves it to path, so that a crash never leaves
// a half-written key. With exclusive, an existing path is not replaced
// (the move is a hard link, which fails when path exists).
func writeFileAtomic(path string, data []byte, exclusive bool) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			_ = tmp.Close()
		}
		if err != nil || exclusive {
			_ = os.Remove(tmpName)
		}
	}()
	// CreateTemp already uses 0600; Chmod guards against a future change.
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		tmp = nil
		return err
	}
	tmp = nil
	if exclusive {
		if err = os.Link(tmpName, path); err != nil {
			return err
		}
	} else if err = os.Rename(tmpName, path); err != nil {
		return err
	}
	// Make the new directory entry durable too.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
