package chaos

import (
	"strings"
	"time"

	"github.com/starling-sync/starling/entity"
)

// entClockChecker asserts that no honest node's timestamps jump: every
// acknowledged write of a host whose clock was not skewed at the time
// (clock-skew nemesis) carries a version no further ahead of the moment
// it was acknowledged than the hybrid clock's bound, unless it replaced a
// far-future version (its logical counter then has the top bit the
// clock gives only to such stamps, see entity.Clock.NowAfter). Before the
// bound, one write of a node years ahead moved every node's clock there.
type entClockChecker struct{ m *entityModel }

// clockSlack covers the time between an answer and its record, and the
// restart of a host after its fault heals.
const clockSlack = 10 * time.Second

func (entClockChecker) Name() string { return "entity-clock" }

func (c entClockChecker) Check(in CheckInput) Verdict {
	v := Verdict{Checker: "entity-clock", Counts: map[string]int{"clock-jumps": 0}}
	// When each host ran with a skewed clock: from the fault's inject to
	// a little after its heal (the restart with offset 0).
	type span struct{ from, to time.Time }
	skewed := map[string][]span{}
	open := map[string]time.Time{}
	for _, o := range in.History {
		if o.Process != NemesisProcess || o.Key != "clock-skew" {
			continue
		}
		host, _, _ := strings.Cut(o.Value, " ")
		switch o.Kind {
		case KindInject:
			open[host] = o.Start.Add(-clockSlack) // it restarts before the event is recorded
		case KindHeal:
			if from, ok := open[host]; ok {
				skewed[host] = append(skewed[host], span{from, o.End.Add(clockSlack)})
				delete(open, host)
			}
		}
	}
	for host, from := range open {
		skewed[host] = append(skewed[host], span{from, time.Now().Add(time.Hour)})
	}
	wasSkewed := func(host string, at time.Time) bool {
		for _, s := range skewed[host] {
			if !at.Before(s.from) && !at.After(s.to) {
				return true
			}
		}
		return false
	}
	bound := entity.DefaultMaxClockOffset + clockSlack
	for _, o := range c.m.decoded(in.History) {
		if !o.Acked() || o.Version == nil || wasSkewed(o.Host, o.End) {
			continue
		}
		ts := o.Version.Timestamp
		ahead := ts.Time().Sub(o.End)
		if ahead <= bound || ts.Logical >= 1<<31 {
			continue
		}
		v.Counts["clock-jumps"]++
		v.problem("op %d %s acknowledged by %s at %s is stamped %s, %v ahead (its clock was not skewed): a far-future timestamp moved it",
			o.Index, o.Kind, o.Host, o.End.Format("15:04:05.000"), ts.Time().Format(time.RFC3339), ahead.Round(time.Second))
	}
	v.OK = v.Counts["clock-jumps"] == 0
	if v.OK && len(skewed) > 0 {
		v.Counts["skewed-hosts"] = len(skewed)
	}
	return v
}

var _ Checker = entClockChecker{}

// farOffset draws a clock offset for the clock-skew nemesis: minutes
// (within or just past the bound), days, or years, ahead or behind.
func farOffset(r interface{ IntN(int) int }) time.Duration {
	var off time.Duration
	switch r.IntN(3) {
	case 0:
		off = 30*time.Second + time.Duration(r.IntN(571))*time.Second
	case 1:
		off = time.Duration(1+r.IntN(30)) * 24 * time.Hour
	default:
		off = time.Duration(1+r.IntN(10)) * 365 * 24 * time.Hour
	}
	if r.IntN(2) == 0 {
		off = -off
	}
	return off
}
