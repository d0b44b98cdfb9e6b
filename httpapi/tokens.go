package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Role is what a token may do. Each role may do what the ones below it
// may.
type Role int

const (
	// RoleRead may read: every GET (entities, fields, schemas, kv, watch
	// streams, status, cluster, election, /metrics) except a backup.
	RoleRead Role = iota + 1
	// RoleWrite may also write data and take part in elections: entity,
	// field, schema and kv writes, election candidacy.
	RoleWrite
	// RoleAdmin may do everything: peers, resync, compaction, backups,
	// web login codes. The data directory's api.token is an admin token.
	RoleAdmin
)

var roleNames = map[Role]string{RoleRead: "read", RoleWrite: "write", RoleAdmin: "admin"}

func (r Role) String() string {
	if s, ok := roleNames[r]; ok {
		return s
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole parses "read", "write" or "admin".
func ParseRole(s string) (Role, error) {
	for r, name := range roleNames {
		if strings.EqualFold(s, name) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("httpapi: unknown role %q: want read, write or admin", s)
}

func (r Role) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

func (r *Role) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseRole(s)
	*r = v
	return err
}

// roleFor is the role a request needs.
func roleFor(r *http.Request) Role {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		if p == "/v1/store/backup" {
			return RoleAdmin // the whole store in one response
		}
		return RoleRead
	case strings.HasPrefix(p, "/v1/kv/"), p == "/v1/kv",
		strings.HasPrefix(p, "/v1/entities"), strings.HasPrefix(p, "/v1/fields"),
		strings.HasPrefix(p, "/v1/schemas"), strings.HasPrefix(p, "/v1/election/"):
		return RoleWrite
	default:
		return RoleAdmin
	}
}

// TokenInfo describes a scoped token. The token itself is never stored:
// only its SHA-256, so a copy of the file gives no access.
type TokenInfo struct {
	// ID names the token in `token ls` and `token rm`: the first 8 hex
	// digits of its hash.
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

type tokenFile struct {
	Tokens []TokenInfo `json:"tokens"`
}

// TokensFile is the name of a node's scoped tokens file in its data
// directory (mode 0600).
const TokensFile = "tokens.json"

// ErrNoToken means `token rm` named no token.
var ErrNoToken = errors.New("httpapi: no such token")

// ReadTokens reads dir's scoped tokens (none if the file is missing).
func ReadTokens(dir string) ([]TokenInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, TokensFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f tokenFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("httpapi: %s: %w (fix or remove the file; api.token still works)", filepath.Join(dir, TokensFile), err)
	}
	return f.Tokens, nil
}

func writeTokens(dir string, ts []TokenInfo) error {
	b, err := json.MarshalIndent(tokenFile{Tokens: ts}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, TokensFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// AddToken makes a new token of role in dir's tokens file and returns it
// (shown once: only its hash is kept) with its entry. A running node
// takes it within a second. name defaults to "<role>-<id>"; names are
// unique.
func AddToken(dir, name string, role Role) (string, TokenInfo, error) {
	if _, ok := roleNames[role]; !ok {
		return "", TokenInfo{}, fmt.Errorf("httpapi: unknown role %d", role)
	}
	ts, err := ReadTokens(dir)
	if err != nil {
		return "", TokenInfo{}, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", TokenInfo{}, err
	}
	tok := hex.EncodeToString(b)
	h := hashToken(tok)
	ti := TokenInfo{ID: h[:8], Name: strings.TrimSpace(name), Role: role, SHA256: h, Created: time.Now().UTC().Truncate(time.Second)}
	if ti.Name == "" {
		ti.Name = role.String() + "-" + ti.ID
	}
	for _, t := range ts {
		if t.Name == ti.Name {
			return "", TokenInfo{}, fmt.Errorf("httpapi: a token named %q exists already (id %s): pick another --name, or remove it first", ti.Name, t.ID)
		}
	}
	if err := writeTokens(dir, append(ts, ti)); err != nil {
		return "", TokenInfo{}, err
	}
	return tok, ti, nil
}

// RemoveToken removes the token named, or with the ID, ref.
func RemoveToken(dir, ref string) (TokenInfo, error) {
	ts, err := ReadTokens(dir)
	if err != nil {
		return TokenInfo{}, err
	}
	i := slices.IndexFunc(ts, func(t TokenInfo) bool { return t.Name == ref || t.ID == ref })
	if i < 0 {
		return TokenInfo{}, fmt.Errorf("%w named or with ID %q: `starling token ls` lists them", ErrNoToken, ref)
	}
	gone := ts[i]
	if err := writeTokens(dir, slices.Delete(ts, i, i+1)); err != nil {
		return TokenInfo{}, err
	}
	return gone, nil
}

// FileTokens serves the scoped tokens of a data directory to the API,
// reading the file again when it changes (checked at most once a
// second), so `token add` and `token rm` work on a running node.
type FileTokens struct {
	dir     string
	mu      sync.Mutex
	checked time.Time
	mtime   time.Time
	size    int64
	byHash  map[string]TokenInfo
}

// NewFileTokens returns the tokens of dir.
func NewFileTokens(dir string) *FileTokens { return &FileTokens{dir: dir} }

// Lookup returns the entry of tok, if it is a scoped token.
func (f *FileTokens) Lookup(tok string) (TokenInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.checked) >= time.Second || f.byHash == nil {
		f.checked = now
		f.reload()
	}
	h := hashToken(tok)
	ti, ok := f.byHash[h]
	// The map lookup is by hash, whose bytes an attacker cannot steer;
	// the comparison below keeps the check constant-time anyway.
	if !ok || subtle.ConstantTimeCompare([]byte(ti.SHA256), []byte(h)) != 1 {
		return TokenInfo{}, false
	}
	return ti, true
}

func (f *FileTokens) reload() {
	st, err := os.Stat(filepath.Join(f.dir, TokensFile))
	if errors.Is(err, fs.ErrNotExist) {
		f.byHash, f.mtime, f.size = map[string]TokenInfo{}, time.Time{}, 0
		return
	}
	if err != nil || (f.byHash != nil && st.ModTime().Equal(f.mtime) && st.Size() == f.size) {
		return
	}
	ts, err := ReadTokens(f.dir)
	if err != nil {
		return // keep the last good set; `token ls` reports the file's error
	}
	m := make(map[string]TokenInfo, len(ts))
	for _, t := range ts {
		m[t.SHA256] = t
	}
	f.byHash, f.mtime, f.size = m, st.ModTime(), st.Size()
}
