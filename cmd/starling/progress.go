package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/starling-sync/starling/nodestate"
)

// Progress of a join or resync (nodestate.SyncProgress) in the terminal: a
// bar with the percentage, the counts and an ETA. `cluster status`
// prints it for every node that is not ACTIVE; followSync redraws it
// until the transfer is done (for `starling resync` and friends).

// progressBarWidth is the bar's width in characters, brackets excluded.
const progressBarWidth = 30

// progressLine renders p at now on one line, for example
//
//	SYNCING from node1 [=============>                ] 45%  90000/200000 entries  6.4 MB/14.3 MB  ETA 3s
//
// JOINING and ACTIVE have no bar. now is the caller's clock (tests pass a
// fixed one).
func progressLine(p nodestate.SyncProgress, now time.Time) string {
	var b strings.Builder
	b.WriteString(string(p.Phase))
	switch p.Phase {
	case nodestate.PhaseActive:
		b.WriteString(": holds the current state")
		if p.Transfers > 0 {
			fmt.Fprintf(&b, " (%d state transfer%s since start)", p.Transfers, plural(p.Transfers))
		}
		return b.String()
	case nodestate.PhaseJoining:
		b.WriteString(": looking for a peer to copy the state from")
		if p.LastError != "" {
			fmt.Fprintf(&b, " (last attempt: %s)", p.LastError)
		}
		return b.String()
	}
	if p.Source != "" {
		fmt.Fprintf(&b, " from %s", p.Source)
	}
	frac, known := progressFraction(p)
	if !known {
		// No bar until the source says how much there is: a bar of
		// question marks read as an error.
		fmt.Fprintf(&b, ": starting, %s (%s) received so far; the size of the copy is not known yet",
			counted(int(p.EntriesDone), "entry", "entries"), humanBytes(p.BytesDone))
		if p.LastError != "" {
			fmt.Fprintf(&b, "  (retrying after: %s)", p.LastError)
		}
		return b.String()
	}
	fmt.Fprintf(&b, " %s %3.0f%%", bar(frac, progressBarWidth), frac*100)
	if p.EntriesTotal > 0 {
		fmt.Fprintf(&b, "  %d/%d entries", p.EntriesDone, p.EntriesTotal)
	}
	if p.BytesTotal > 0 {
		fmt.Fprintf(&b, "  %s/%s", humanBytes(p.BytesDone), humanBytes(p.BytesTotal))
	}
	if eta, ok := progressETA(p, frac, now); ok {
		fmt.Fprintf(&b, "  ETA %s", formatETA(eta))
	} else {
		b.WriteString("  ETA -")
	}
	if p.LastError != "" {
		fmt.Fprintf(&b, "  (retrying after: %s)", p.LastError)
	}
	return b.String()
}

// progressFraction is the part done, by bytes when their total is known,
// else by entries; known is false before the source announced a total.
func progressFraction(p nodestate.SyncProgress) (frac float64, known bool) {
	switch {
	case p.BytesTotal > 0:
		frac = float64(p.BytesDone) / float64(p.BytesTotal)
	case p.EntriesTotal > 0:
		frac = float64(p.EntriesDone) / float64(p.EntriesTotal)
	default:
		return 0, false
	}
	return min(max(frac, 0), 1), true
}

// progressETA extrapolates the rate since Started.
func progressETA(p nodestate.SyncProgress, frac float64, now time.Time) (time.Duration, bool) {
	if p.Started.IsZero() || frac <= 0 {
		return 0, false
	}
	elapsed := now.Sub(p.Started)
	if elapsed <= 0 {
		return 0, false
	}
	if frac >= 1 {
		return 0, true
	}
	return time.Duration(float64(elapsed) * (1 - frac) / frac), true
}

func bar(frac float64, width int) string {
	full := int(frac * float64(width))
	var b strings.Builder
	b.WriteByte('[')
	b.WriteString(strings.Repeat("=", full))
	if full < width {
		b.WriteByte('>')
		b.WriteString(strings.Repeat(" ", width-full-1))
	}
	b.WriteByte(']')
	return b.String()
}

func formatETA(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %cB", f, "kMGT"[i-1])
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// isTerminal reports whether w is a character device (a terminal), where
// a progress line can be redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// followSync prints the progress that get returns every interval until
// the phase is ACTIVE, then the final line; it returns get's error or
// ctx's. On a terminal the line is redrawn in place; elsewhere (a log, a
// pipe) a line is printed only when it changes, at most every interval.
func followSync(ctx context.Context, w io.Writer, interval time.Duration, get func(context.Context) (nodestate.SyncProgress, error)) error {
	tty := isTerminal(w)
	t := time.NewTicker(interval)
	defer t.Stop()
	last := ""
	for {
		p, err := get(ctx)
		if err != nil {
			if tty && last != "" {
				fmt.Fprintln(w)
			}
			return err
		}
		line := progressLine(p, time.Now())
		switch {
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", line)
		case line != last:
			fmt.Fprintln(w, line)
		}
		last = line
		if p.Phase == nodestate.PhaseActive {
			if tty {
				fmt.Fprintln(w)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}
