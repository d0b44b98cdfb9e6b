package p2p

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// One peer cannot hold more inbound streams than its budget, however
// much memory the machine has (libp2p's default scales the budget with
// it: 640 streams on a 24 GiB host).
func TestPeerCannotHoldMoreStreamsThanItsBudget(t *testing.T) {
	a := newNode(t)
	b := newNode(t, withPeers(a))
	waitConnected(t, a, b)

	release := make(chan struct{})
	var held atomic.Int64
	hold := func(_ peer.ID, s io.ReadWriteCloser) {
		defer s.Close()
		held.Add(1)
		if _, err := s.Write([]byte{1}); err != nil {
			return
		}
		<-release
	}
	// Each protocol has a budget per peer too (about 64 streams): the
	// peer spreads its streams over several to reach the peer's budget.
	const protocols = 8
	for i := range protocols {
		a.HandleStream(fmt.Sprintf("hold%d/1.0.0", i), hold)
	}
	defer close(release)

	const tries = 2 * peerStreamsInbound
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range tries {
		s, err := b.OpenStream(ctx, a.ID(), fmt.Sprintf("hold%d/1.0.0", i%protocols))
		if err != nil {
			refused.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Reset()
			// libp2p opens a stream optimistically: the first read tells
			// whether a served it (one byte) or refused it (a reset).
			buf := make([]byte, 1)
			if _, err := io.ReadFull(s, buf); err != nil {
				refused.Add(1)
				return
			}
			accepted.Add(1)
		}()
	}
	wg.Wait()
	if got := accepted.Load(); got > peerStreamsInbound || got < peerStreamsInbound/2 {
		t.Errorf("a served %d of %d streams from one peer at once, want at most %d (and most of them)", got, tries, peerStreamsInbound)
	}
	if refused.Load() == 0 {
		t.Errorf("no stream of %d refused", tries)
	}
	t.Logf("served %d, refused %d, handler saw %d", accepted.Load(), refused.Load(), held.Load())
}
