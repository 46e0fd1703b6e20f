// Package testwait is the one way Tandem's tests wait for something to
// happen: poll a condition until it holds or a deadline passes, never a
// bare sleep.
package testwait

import (
	"testing"
	"time"
)

// Default is the timeout tests use when nothing slower is expected.
const Default = 10 * time.Second

// For polls cond every few milliseconds until it holds, and fails t (with
// what it waited for) once timeout has passed.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
