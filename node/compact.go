package node

import (
	"fmt"
	"strings"
	"time"

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
