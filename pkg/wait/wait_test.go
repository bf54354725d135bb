package wait

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// The tests run in a synctest bubble: time is fake and moves only when every goroutine
// in the bubble is blocked, so the durations are exact and nothing really sleeps.

func TestSleepFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(t.Context(), time.Hour); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != time.Hour {
			t.Errorf("slept %v, want 1h", got)
		}
	})
}

func TestSleepCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Minute, cancel)
		start := time.Now()
		if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
			t.Fatalf("Sleep = %v, want context.Canceled", err)
		}
		if got := time.Since(start); got != time.Minute {
			t.Errorf("returned after %v, want 1m (when canceled)", got)
		}
	})
}

func TestSleepDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Sleep = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestSleepEndedOrZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ended, cancel := context.WithCancel(t.Context())
		cancel()
		start := time.Now()
		for _, c := range []struct {
			ctx  context.Context
			d    time.Duration
			want error
		}{
			{ended, time.Hour, context.Canceled},
			{ended, 0, context.Canceled},
			{ended, -time.Second, context.Canceled},
			{t.Context(), 0, nil},
			{t.Context(), -time.Second, nil},
		} {
			if err := Sleep(c.ctx, c.d); !errors.Is(err, c.want) {
				t.Errorf("Sleep(ctx with Err %v, %v) = %v, want %v", c.ctx.Err(), c.d, err, c.want)
			}
		}
		if got := time.Since(start); got != 0 {
			t.Errorf("took %v, want no time at all", got)
		}
	})
}

// TestUntilClosed: the context ends when closed is closed, or when its parent ends, and
// the watching goroutine is gone after cancel (synctest fails a test that leaks one).
func TestUntilClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		closed := make(chan struct{})
		ctx, cancel := UntilClosed(t.Context(), closed)
		defer cancel()
		synctest.Wait()
		if ctx.Err() != nil {
			t.Fatal("ended before anything happened")
		}
		close(closed)
		synctest.Wait()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("after close: %v", ctx.Err())
		}
	})
	synctest.Test(t, func(t *testing.T) {
		parent, stop := context.WithCancel(t.Context())
		ctx, cancel := UntilClosed(parent, make(chan struct{}))
		defer cancel()
		stop()
		synctest.Wait()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("after the parent ended: %v", ctx.Err())
		}
	})
}
