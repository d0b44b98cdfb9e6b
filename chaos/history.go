package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// Result is how an operation ended, with Jepsen's names.
type Result string

// Results of operations.
const (
	// ResultOK: the node acknowledged the operation. Its effect must
	// survive.
	ResultOK Result = "ok"
	// ResultFail: the operation surely had no effect (no connection, a
	// refusal).
	ResultFail Result = "fail"
	// ResultInfo: the outcome is unknown (a timeout, a reset, a server
	// error): it may have been applied, now or later.
	ResultInfo Result = "info"
)

// NemesisProcess is the Process of the nemesis's events in the history.
const NemesisProcess = "nemesis"

// Kinds of the nemesis's events.
const (
	KindInject  = "inject"  // a fault began; Value describes it
	KindHeal    = "heal"    // a fault ended
	KindForfeit = "forfeit" // acknowledged operations lost with a wiped disk; Ext lists their indexes
)

// Op is one entry of the history: an operation a client ran against a
// host, or an event of the nemesis. The history is written as JSON lines
// as it grows, so it survives a crash of the harness.
type Op struct {
	// Index is the entry's position in the history, set by Append.
	Index int `json:"index"`
	// Process is the client ("n2-c0-g0") or NemesisProcess.
	Process string `json:"process"`
	// Host is the host the client talks to (for the nemesis: the host
	// acted on, if one).
	Host string `json:"host,omitempty"`
	// Kind is the operation ("put", "del") or the nemesis event.
	Kind string `json:"kind"`
	// Key and Value are what was written; for the nemesis, Value
	// describes the fault.
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
	// Result is how it ended.
	Result Result `json:"result"`
	// Start is when the request was sent, End when its answer came.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Error is the failure, for fail and info.
	Error string `json:"error,omitempty"`
	// Ext carries what a model records beyond key and value (for entity
	// fields: the HLC timestamp and writer the node assigned).
	Ext json.RawMessage `json:"ext,omitempty"`
}

// Acked reports whether a client operation was acknowledged.
func (o Op) Acked() bool { return o.Result == ResultOK && o.Process != NemesisProcess }

// History records the operations of one scenario, in the order they
// completed. Safe for concurrent use.
type History struct {
	mu  sync.Mutex
	ops []Op
	f   *os.File
	enc *json.Encoder
	err error // first write error
}

// NewHistory returns a history that also writes each entry to path as
// one JSON line ("" keeps it in memory only).
func NewHistory(path string) (*History, error) {
	h := &History{}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("chaos: history: %w", err)
		}
		h.f, h.enc = f, json.NewEncoder(f)
	}
	return h, nil
}

// Append adds op, sets its Index and returns it.
func (h *History) Append(op Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Index = len(h.ops)
	h.ops = append(h.ops, op)
	if h.enc != nil && h.err == nil {
		h.err = h.enc.Encode(op)
	}
	return op
}

// Ops returns a copy of the entries so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Close closes the file and reports the first write error.
func (h *History) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return h.err
	}
	err := h.f.Close()
	h.f, h.enc = nil, nil
	if h.err != nil {
		return fmt.Errorf("chaos: history: %w", h.err)
	}
	return err
}

// farFuture is a due time after every operation: with it, Expect covers
// the whole history.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// withoutForfeited returns ops without the operations that forfeit
// events list.
func withoutForfeited(ops []Op) []Op {
	f := Forfeited(ops)
	if len(f) == 0 {
		return ops
	}
	out := make([]Op, 0, len(ops))
	for _, o := range ops {
		if !f[o.Index] {
			out = append(out, o)
		}
	}
	return out
}

// Forfeited returns the indexes that forfeit events list: operations
// acknowledged only by a host whose data directory was then wiped.
func Forfeited(ops []Op) map[int]bool {
	out := map[int]bool{}
	for _, o := range ops {
		if o.Process != NemesisProcess || o.Kind != KindForfeit {
			continue
		}
		var idx []int
		if json.Unmarshal(o.Ext, &idx) == nil {
			for _, i := range idx {
				out[i] = true
			}
		}
	}
	return out
}
