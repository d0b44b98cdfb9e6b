// Package testutil holds the helpers Starling's tests share: waiting on a
// condition with a deadline, turning a panic into a test failure, and
// making peer IDs. It imports no Starling package, so every package's
// tests may use it.
package testutil

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// pollEvery is how often Eventually checks its condition.
const pollEvery = 5 * time.Millisecond

// Eventually polls cond until it holds, and fails the test (naming what
// it waited for) if it does not within timeout. Use it instead of a
// fixed sleep.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Eventuallyf is Eventually with a formatted description.
func Eventuallyf(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !Within(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, fmt.Sprintf(format, args...))
	}
}

// Within polls cond until it holds (true) or timeout passes (false).
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// Never polls cond for d and fails the test if it ever holds.
func Never(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if Within(d, cond) {
		t.Fatalf("%s happened within %v", what, d)
	}
}

// FailOnPanic turns a panic of the test's goroutine into a failure, so
// one panicking test does not abort the package's others. Use:
// defer testutil.FailOnPanic(t).
func FailOnPanic(t testing.TB) {
	if r := recover(); r != nil {
		t.Fatalf("panic: %v", r)
	}
}

// PeerID returns a new random libp2p peer ID.
func PeerID(t testing.TB) peer.ID {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Neverf is Never with a formatted description.
func Neverf(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if Within(d, cond) {
		t.Fatalf("within %v: %s", d, fmt.Sprintf(format, args...))
	}
}
