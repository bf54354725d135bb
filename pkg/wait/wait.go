// Package wait is how weft code waits: a sleep that ends early when its context ends, for
// retry and back-off loops, and a context that also ends when a Close signals, for the
// Run loops of networks. It keeps no state.
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

// UntilClosed returns a copy of ctx that is also cancelled when closed is closed (a
// Network's Close), and its cancel function, which the caller must call (it also releases
// the goroutine that watches closed).
func UntilClosed(ctx context.Context, closed <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
