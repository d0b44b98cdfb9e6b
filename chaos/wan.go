package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/starling-sync/starling/chaos/internal/nfqueue"
)

// wanKillDelay is the one-way delay of the wan-kill nemesis: a 100 ms
// round trip, a wide-area link that the default (lan) election timings
// still take (their link budget is 150 ms; election.Config.LinkBudget).
const wanKillDelay = 50 * time.Millisecond

// wanKillNemesis is the quick sweep's wide-area failover (issue #15):
// every link held wanKillDelay, then the leader (the lowest running
// host) killed -9. At heal the leader restarts while the links are still
// slow, and the delay ends only once it is connected to every other host
// again: its re-dials and theirs cross the slow links, where two nodes
// dialling each other at once used to collide on every try (TCP
// simultaneous open; p2p's re-dial jitter fixed it), and the election
// must fail over, and hand back, across them. `--link-delay` runs any
// scenario across slow links for longer soaks.
func wanKillNemesis() Nemesis {
	return &processNemesis{
		name: "wan-kill",
		desc: fmt.Sprintf("every link held %v (a %v round trip), the leader killed -9; restarted at heal while the links are still slow, which end once it is connected again", wanKillDelay, 2*wanKillDelay),
		available: func(e *Env) error {
			return delayNemesis().Available(context.Background(), e)
		},
		inject: func(ctx context.Context, e *Env, _ *rand.Rand, id string) (Fault, error) {
			var leader *Host
			for _, h := range e.hosts {
				if _, taken := e.claims[h]; !taken && h.Up() && (leader == nil || h.name < leader.name) {
					leader = h
				}
			}
			if leader == nil {
				return nil, fmt.Errorf("%w: %s: no free running host", ErrNoTargets, id)
			}
			if err := e.Exclusive("delay", id); err != nil {
				return nil, err
			}
			d, err := nfqueue.Open(delayQueue, wanKillDelay)
			if err != nil {
				e.ReleaseExclusive("delay")
				return nil, err
			}
			undelay := func(ctx context.Context) error {
				defer e.ReleaseExclusive("delay")
				err := errors.Join(e.lab.ClearDelay(ctx), d.Close())
				if d.Delayed() == 0 {
					err = errors.Join(err, errors.New("wan-kill: no frame was delayed: the NFQUEUE rules matched nothing"))
				}
				return err
			}
			if err := e.lab.SetDelay(ctx, delayQueue, allPairs(len(e.hosts))); err != nil {
				return nil, errors.Join(err, undelay(ctx))
			}
			e.claims[leader] = id
			hs := []*Host{leader}
			// The failover counts from the kill, not from the delay's
			// set-up (an iptables rule per pair of hosts takes a while).
			killed := time.Now()
			if err := leader.Kill(); err != nil {
				e.Release(hs)
				return nil, errors.Join(err, undelay(ctx))
			}
			return &fault{desc: "links delayed, killed " + leader.name, started: killed, heal: func(ctx context.Context) error {
				defer e.Release(hs)
				err := restart(ctx, e, hs)
				if err == nil {
					err = waitMeshed(ctx, leader, e.meshSize(), e.startTimeout)
				}
				return errors.Join(err, undelay(ctx))
			}}, nil
		},
	}
}

// waitMeshed waits until h is connected to want peers, for at most
// timeout.
func waitMeshed(ctx context.Context, h *Host, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := len(connectedPeers(ctx, h))
		if n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s connected to %d of %d peers within %v of its restart across the slow links", h.name, n, want, timeout)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}
