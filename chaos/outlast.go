package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/starling-sync/starling/api"
)

// outlastNemesis cuts the cluster in two halves for longer than the
// retained history: it holds the cut until every host has evicted the
// other half from its compaction (evictAfter, then a round) and a round
// has reclaimed past them, with writes going on on both sides. After the
// heal one side must rebase on the other by state transfer, keeping its
// own writes (crdt/evict.go); the checkers then require every
// acknowledged write everywhere. A cut that ends before every host has
// evicted is an error: the scenario would prove nothing.
type outlastNemesis struct{}

func (outlastNemesis) Name() string { return "partition-outlasting-history" }
func (outlastNemesis) Describe() string {
	return "two halves cut off until each has evicted the other from compaction and reclaimed past it, with writes on both sides"
}

func (outlastNemesis) Available(_ context.Context, e *Env) error {
	if n := e.lab.Hosts(); n < 2 || n == 3 {
		// With 3, one side is a node alone with two members it cannot
		// hear: it evicts neither (it cannot tell that it is not the
		// one cut off; crdt's evictStale), so the cut never outlasts.
		return fmt.Errorf("needs 2 hosts or at least 4 (--nodes): with 3, the node alone on its side evicts nobody")
	}
	if !strings.Contains(e.runHelp, "--compact-evict-after") {
		return fmt.Errorf("the node has no --compact-evict-after flag")
	}
	return nil
}

func (outlastNemesis) Inject(ctx context.Context, e *Env, rng *rand.Rand) (Fault, error) {
	id := e.FaultID("partition-outlasting-history")
	n := len(e.hosts)
	p := shuffled(rng, n)
	a, b := p[:n/2], p[n/2:]
	if err := e.SetRules(ctx, id, cut(a, b)); err != nil {
		e.filter.Clear(id)
		return nil, err
	}
	heal := func(ctx context.Context) error { return e.ClearRules(ctx, id) }
	// Eviction takes evictAfter from the last report across the cut, then
	// the next round (compactEvery); the rest is margin for a loaded
	// machine.
	deadline := time.Now().Add(evictAfter + 4*compactEvery + 20*time.Second)
	start := time.Now()
	for {
		missing := e.notEvicting(ctx)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(heal(context.WithoutCancel(ctx)),
				fmt.Errorf("%s: after %v no member evicted on %s: the cut did not outlast the retained history", id, time.Since(start).Round(time.Second), strings.Join(missing, " ")))
		}
		if !sleepCtx(ctx, time.Second) {
			return nil, errors.Join(heal(context.WithoutCancel(ctx)), ctx.Err())
		}
	}
	desc := fmt.Sprintf("%s | %s, held %v until each host had evicted the other half", e.names(a), e.names(b), time.Since(start).Round(time.Second))
	return &fault{desc: desc, heal: heal}, nil
}

// notEvicting names the running hosts whose status shows no evicted
// compaction member yet.
func (e *Env) notEvicting(ctx context.Context) []string {
	var out []string
	for _, h := range e.hosts {
		if !h.Up() || h.Paused() {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		code, body, err := h.Request(rctx, http.MethodGet, "/v1/status", nil)
		cancel()
		var st api.StatusInfo
		if err != nil || code != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Store.CompactEvicted == 0 {
			out = append(out, h.Name())
		}
	}
	return out
}
