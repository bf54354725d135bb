// Package wait is how weft code waits a while: a sleep that ends early when its context
// ends, for retry and back-off loops. It starts no goroutines and keeps no state.
package wait

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx ends if that comes first. It returns nil after d, and
// ctx.Err() when ctx has ended, also when it had ended before the call (even with d ≤ 0).
// A d ≤ 0 with a live ctx returns nil at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
