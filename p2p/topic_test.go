package p2p

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/starling-sync/starling/internal/testutil"
)

// topicInbox collects what Receive returns on t until the test ends.
func topicInbox(t *testing.T, tp *Topic) (msgs func() []message) {
	t.Helper()
	var mu sync.Mutex
	var got []message
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			from, data, err := tp.Receive(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, message{from, string(data)})
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() []message {
		mu.Lock()
		defer mu.Unlock()
		return append([]message(nil), got...)
	}
}

func hasFrom(ms []message, from peer.ID, prefix string) bool {
	for _, m := range ms {
		if m.from == from.String() && strings.HasPrefix(m.data, prefix) {
			return true
		}
	}
	return false
}

func TestTopicTrustedOnly(t *testing.T) {
	a := newNode(t)
	c := newNode(t, withPeers(a)) // not trusted by b; a trusts everyone
	b := newNode(t, withPeers(a, c), func(cfg *Config) { cfg.Trusted = []peer.ID{a.ID()} })
	waitConnected(t, a, b)
	waitConnected(t, c, b)
	waitConnected(t, c, a)

	join := func(n *Node) *Topic {
		tp, err := n.JoinTopic("election")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tp.Close() })
		return tp
	}
	ta, tb, tc := join(a), join(b), join(c)
	if tb.Name() != "starling/test/election" {
		t.Errorf("Name = %q", tb.Name())
	}
	inB := topicInbox(t, tb)
	inA := topicInbox(t, ta)

	// Gossip needs the subscriptions to be known: publish until received.
	ctx := context.Background()
	for i := 0; ; i++ {
		if err := ta.Publish(ctx, fmt.Appendf(nil, "from-a-%d", i)); err != nil {
			t.Fatal(err)
		}
		if err := tc.Publish(ctx, fmt.Appendf(nil, "from-c-%d", i)); err != nil {
			t.Fatal(err)
		}
		if err := tb.Publish(ctx, fmt.Appendf(nil, "from-b-%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		// a hearing c proves c's messages flow: b must still drop them.
		if hasFrom(inB(), a.ID(), "from-a-") && hasFrom(inA(), b.ID(), "from-b-") && hasFrom(inA(), c.ID(), "from-c-") {
			break
		}
		if i > 250 {
			t.Fatalf("topic messages not delivered within 5s: b got %v", inB())
		}
	}
	// A few more rounds from the untrusted c, now that the mesh is up.
	for i := range 10 {
		_ = tc.Publish(ctx, fmt.Appendf(nil, "from-c-late-%d", i))
	}
	_ = ta.Publish(ctx, []byte("from-a-last"))
	testutil.Eventuallyf(t, 5*time.Second, func() bool { return hasFrom(inB(), a.ID(), "from-a-last") }, "last message from a not received")
	for _, m := range inB() {
		if m.from != a.ID().String() {
			t.Errorf("b received %q from %s, which it does not trust", m.data, m.from)
		}
	}
	for _, m := range inA() {
		if m.from == a.ID().String() {
			t.Errorf("a received its own message %q", m.data)
		}
	}
}

func TestTopicNamesAndClose(t *testing.T) {
	n := newNode(t)
	for _, bad := range []string{"", "Election", "a/b", "replication", strings.Repeat("x", 33)} {
		if _, err := n.JoinTopic(bad); err == nil {
			t.Errorf("JoinTopic(%q) succeeded", bad)
		}
	}
	tp, err := n.JoinTopic("election")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.JoinTopic("election"); err == nil {
		t.Error("joining the same topic twice succeeded")
	}
	if err := tp.Publish(context.Background(), make([]byte, maxTopicMessage+1)); err == nil {
		t.Error("oversized publish succeeded")
	}
	// Receive honours its context, and ends with ErrClosed on Close.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := tp.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive with an ending context: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		_, _, err := tp.Receive(context.Background())
		got <- err
	}()
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Receive after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive did not end after Close")
	}
	if err := tp.Publish(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	// The name is free again.
	tp2, err := n.JoinTopic("election")
	if err != nil {
		t.Fatalf("rejoin after Close: %v", err)
	}
	// A topic still open when the node closes: Receive ends with ErrClosed.
	go func() {
		_, _, err := tp2.Receive(context.Background())
		got <- err
	}()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Receive after node Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive did not end when the node closed")
	}
	if err := tp2.Close(); err != nil {
		t.Errorf("Close after the node closed: %v", err)
	}
	if _, err := n.JoinTopic("other"); !errors.Is(err, ErrClosed) {
		t.Errorf("JoinTopic after Close: %v, want ErrClosed", err)
	}
}
