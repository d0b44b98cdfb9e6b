package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/p2p"
)

// CheckConfig checks the node of data directory dir without starting
// it: config.json (its JSON, every key known and of the right type),
// the configuration with s applied as `run` would apply it (Validate),
// and the files it names or needs (the private network key, identity.key,
// api.token). It reports every problem it finds, each naming the config
// key (or file) and flag; none means `run` would accept the config. The
// error is for a directory that cannot be checked at all (no node).
func CheckConfig(dir string, s Settings) ([]Problem, error) {
	path := filepath.Join(dir, api.ConfigFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s: create it with `starling init --data %s`", api.ErrNotInitialised, dir, api.ConfigFile, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var ps []Problem
	add := func(key, flag, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Flag: flag, Msg: fmt.Sprintf(format, args...)})
	}
	cfg := DefaultConfig()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		add(api.ConfigFile, "", "not a JSON object (%v): fix the file or re-create it with `starling init --force --data %s`", err, dir)
		return ps, nil
	}
	keys := configKeys()
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	cv := reflect.ValueOf(&cfg).Elem()
	for _, k := range names {
		i, ok := keys[k]
		if !ok {
			add(k, "", "unknown key%s: remove it", nearKey(k, keys))
			continue
		}
		f := cv.Field(i)
		dec := json.NewDecoder(bytes.NewReader(raw[k]))
		if err := dec.Decode(f.Addr().Interface()); err != nil {
			add(k, flagOfKey[k], "%s is not %s", raw[k], jsonKind(f.Type()))
		}
	}
	s.Apply(&cfg)
	var ce *ConfigError
	if err := cfg.Validate(); errors.As(err, &ce) {
		ps = append(ps, ce.Problems...)
	}
	if p := cfg.PSKPath(dir); p != "" && !(&ConfigError{Problems: ps}).Has("psk_file") {
		if err := checkPSKFile(p2pKeys{}, p); err != nil {
			add("psk_file", "--psk-file", "%s", strings.TrimPrefix(err.Error(), "psk_file (--psk-file): "))
		}
	}
	if _, err := p2p.ReadPeerID(filepath.Join(dir, api.IdentityFile)); err != nil {
		add(api.IdentityFile, "", "%v: this file is the node's identity; restore it from a backup, or make a new node with `starling init` in an empty directory", err)
	}
	if _, err := api.ReadToken(dir); err != nil {
		add(api.TokenFile, "", "%v", err)
	}
	return ps, nil
}

// flagOfKey is the flag of each config key.
var flagOfKey = map[string]string{
	"env": "--env", "node_id": "--node-id", "listen_addrs": "--listen", "api_addr": "--api",
	"peers": "--peer", "mdns": "--no-mdns", "dht": "--no-dht", "psk_file": "--psk-file",
	"open_network": "--open", "trusted": "--trust", "log_level": "--log-level",
	"compact_every": "--compact-every", "compact_evict_after": "--compact-evict-after",
}

// configKeys maps each JSON key of Config to its field index.
func configKeys() map[string]int {
	t := reflect.TypeOf(Config{})
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list of strings"
	}
	return "of type " + t.String()
}

// nearKey is " (did you mean K?)" for a key a letter or two from a known one.
func nearKey(k string, keys map[string]int) string {
	best, bestD := "", 3
	for known := range keys {
		if d := levenshtein(k, known); d < bestD || d == bestD && best != "" && known < best {
			best, bestD = known, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
