package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/crdt"
)

// CompactOff is the value of compact_every (--compact-every) that turns
// automatic compaction rounds off.
const CompactOff = "off"

// MinCompactEvery is the shortest compact_every: a round walks the
// history below every member's heads, so rounds much closer than that
// would keep a node busy walking for little (the chaos suite uses 3s).
const MinCompactEvery = time.Second

// compactLookMax is the longest between two looks of the policy at the
// history's size when compact_every is set: the store's default look
// interval.
const compactLookMax = time.Minute

// parseCompactEvery reads compact_every: d > 0 for a duration, off for
// "off", neither for "" (the store's defaults). The error says what is
// accepted.
func parseCompactEvery(s string) (d time.Duration, off bool, err error) {
	switch v := strings.TrimSpace(s); {
	case v == "":
		return 0, false, nil
	case strings.EqualFold(v, CompactOff):
		return 0, true, nil
	default:
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, false, fmt.Errorf("%q is not a duration: use e.g. 30m or 1h (the longest between two automatic compactions), or %q to turn them off", s, CompactOff)
		}
		if d < MinCompactEvery {
			return 0, false, fmt.Errorf("%q is too short: use at least %v, or %q to turn automatic compaction off", s, MinCompactEvery, CompactOff)
		}
		return d, false, nil
	}
}

// parseEvictAfter reads compact_evict_after: d > 0 for a duration, -1
// for "off", 0 for "" (the store's default). The error says what is
// accepted.
func parseEvictAfter(s string) (time.Duration, error) {
	switch v := strings.TrimSpace(s); {
	case v == "":
		return 0, nil
	case strings.EqualFold(v, CompactOff):
		return -1, nil
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return 0, fmt.Errorf("%q is not a duration of at least 1s: use e.g. 1h or 24h (how long compaction waits for a node it does not hear from), or %q to wait until the node is removed", s, CompactOff)
		}
		return d, nil
	}
}

// compactOptions maps compact_every onto the store's options: the
// longest between two rounds (CompactMaxAge) and how often the policy
// looks (CompactInterval, min(1m, every)); "off" sets CompactInterval
// negative. Options already set in o (a test's WithCRDTOptions) win.
// every must have passed Validate.
func compactOptions(every string, o crdt.Options) crdt.Options {
	d, off, err := parseCompactEvery(every)
	if err != nil {
		return o // Validate refused it before Open gets here
	}
	switch {
	case off:
		if o.CompactInterval == 0 {
			o.CompactInterval = -1
		}
	case d > 0:
		if o.CompactMaxAge == 0 {
			o.CompactMaxAge = d
		}
		if o.CompactInterval == 0 {
			o.CompactInterval = min(compactLookMax, d)
		}
	}
	return o
}

// ErrNoMemberTable means a stopped node's data directory does not say
// which nodes share its data, so an offline round could delete blocks
// they still need; compact it while it runs. Test with errors.Is.
var ErrNoMemberTable = errors.New("node: no compaction member table")

// CompactOffline runs one compaction round on the data directory of a
// node that is not running, as `starling compact` does when no node
// answers on it: the node's LevelDB, its blocks, and the store with no
// network. The round is bounded by the member table the node saved
// (every node it heard from, with the heads each last reported), so it
// reclaims what a round on the running node would have. progress, if not
// nil, is called after each chunk of blocks.
//
// It refuses a directory that is not a node's (api.ErrNotInitialised),
// one a process has open (ErrInUse), and one whose member table is
// missing while the node may have peers (ErrNoMemberTable). A node that
// never ran has nothing to compact: the round is Skipped.
func CompactOffline(ctx context.Context, dir string, progress func(crdt.CompactProgress), log *slog.Logger) (_ crdt.CompactStats, err error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return crdt.CompactStats{}, err
	}
	dbPath := filepath.Join(dir, api.DatastoreDir)
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		return crdt.CompactStats{Started: time.Now(), Skipped: "the node has never run: it has no datastore yet"}, nil
	}
	ldb, err := crdt.OpenLevelDB(dbPath)
	if err != nil {
		return crdt.CompactStats{}, datastoreError(dir, dbPath, err)
	}
	defer func() {
		if cerr := ldb.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close datastore: %w", cerr))
		}
	}()
	saved, err := crdt.HasMemberTable(ctx, ldb)
	if err != nil {
		return crdt.CompactStats{}, err
	}
	if !saved && (len(cfg.Peers) > 0 || cfg.MDNS || cfg.DHT) {
		return crdt.CompactStats{}, fmt.Errorf("%w: %s does not say which nodes share its data (it was last run by a version without compaction, or stopped before hearing any node), so a round offline could delete blocks they still need: start the node (`starling run --data %s`) and run `starling compact --data %s` while it runs", ErrNoMemberTable, dir, dir, dir)
	}
	store, err := offlineStore(ctx, ldb, log)
	if err != nil {
		return crdt.CompactStats{}, err
	}
	st, err := store.Compact(ctx, progress)
	if cerr := store.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
	}
	return st, err
}
