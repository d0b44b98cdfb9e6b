package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/starling-sync/starling/api"
)

// writeFileAtomic writes data to path through a temporary file in the
// same directory and a rename, so that a crash or an error never leaves a
// half-written file behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// newToken returns a random API token: 32 bytes, hex-encoded.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// ensureToken creates DIR/api.token (mode 0600) unless it exists, and
// returns the token and whether it created the file.
func ensureToken(dir string) (tok string, created bool, err error) {
	if _, err := os.Stat(filepath.Join(dir, api.TokenFile)); err == nil {
		tok, err := api.ReadToken(dir)
		return tok, false, err
	}
	tok, err = newToken()
	if err != nil {
		return "", false, fmt.Errorf("create API token: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, api.TokenFile), []byte(tok+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write API token: %w", err)
	}
	return tok, true, nil
}

// exists reports whether path exists (errors other than "not exist"
// count as existing, so that callers never overwrite what they cannot see).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
