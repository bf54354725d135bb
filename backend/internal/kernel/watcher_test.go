package kernel

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-logr/logr/testr"
)

// The Watcher tests run in a synctest bubble: time is fake and moves only when every
// goroutine in the bubble is blocked, so the pass counts and the gaps between passes are
// exact whatever the load of the machine, and nothing really sleeps.

// passLog records the passes a Watcher runs, at the bubble's (fake) time.
type passLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (p *passLog) add() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.times = append(p.times, time.Now())
	return len(p.times)
}

func (p *passLog) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.times)
}

func (p *passLog) gaps() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var g []time.Duration
	for i := 1; i < len(p.times); i++ {
		g = append(g, p.times[i].Sub(p.times[i-1]))
	}
	return g
}

// runWatcher runs w with a fresh change channel until the test ends. It must be called
// in the bubble.
func runWatcher(t *testing.T, w *Watcher) chan Change {
	t.Helper()
	w.Log = testr.New(t)
	ch := make(chan Change, 1000)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, ch) }()
	t.Cleanup(func() {
		cancel()
		<-done // synctest fails the test as deadlocked if Run does not end
	})
	return ch
}

// advance moves the fake clock on by d, then waits until the Watcher has acted on every
// timer that fired and every change sent, and is blocked again.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// wantCount fails the test unless exactly want passes have run.
func wantCount(t *testing.T, p *passLog, want int, after string) {
	t.Helper()
	if n := p.count(); n != want {
		t.Fatalf("%s: %d passes, want %d (gaps %v)", after, n, want, p.gaps())
	}
}

func TestWatcherCoalescesAndFilters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p passLog
		ours := Change{Kind: RouteChange, LinkIndex: 7}
		w := &Watcher{
			Relevant:  func(c Change) bool { return c.LinkIndex == 7 },
			Reconcile: func() (bool, error) { p.add(); return false, nil },
			Debounce:  20 * time.Millisecond,
			Period:    time.Hour,
		}
		ch := runWatcher(t, w)
		synctest.Wait()
		wantCount(t, &p, 1, "start")
		for range 50 {
			ch <- ours
		}
		advance(19 * time.Millisecond)
		wantCount(t, &p, 1, "a burst, before the debounce ended")
		advance(time.Millisecond)
		wantCount(t, &p, 2, "a burst, when the debounce ended")
		advance(time.Minute)
		wantCount(t, &p, 2, "a burst of 50 changes, a minute later")
		for range 50 {
			ch <- Change{Kind: NeighChange, LinkIndex: 3}
		}
		advance(time.Minute)
		wantCount(t, &p, 2, "irrelevant changes")
		// A resync is always acted on, whatever Relevant says.
		ch <- Change{Kind: Resync, Err: errors.New("socket broke")}
		advance(20 * time.Millisecond)
		wantCount(t, &p, 3, "a resync with an error")
		ch <- Change{Kind: Resync}
		advance(20 * time.Millisecond)
		wantCount(t, &p, 4, "a resync")
	})
}

func TestWatcherOwnRepairEndsAfterOneMorePass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p passLog
		var ch chan Change
		ready := make(chan struct{})
		w := &Watcher{
			Reconcile: func() (bool, error) {
				<-ready
				n := p.add()
				drift := n == 2 // the pass after the first change repairs something...
				if drift {
					ch <- Change{Kind: RouteChange} // ...and hears its own write
				}
				return drift, nil
			},
			Debounce: 10 * time.Millisecond,
			Period:   time.Hour,
		}
		ch = runWatcher(t, w)
		close(ready)
		synctest.Wait()
		wantCount(t, &p, 1, "start")
		ch <- Change{Kind: RouteChange}
		advance(10 * time.Millisecond)
		wantCount(t, &p, 2, "the pass that repairs")
		advance(10 * time.Millisecond)
		wantCount(t, &p, 3, "the pass after the repair's own change")
		advance(30 * time.Minute)
		wantCount(t, &p, 3, "half an hour later (start, repair, and one pass that found nothing)")
	})
}

func TestWatcherBacksOffInAFight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p passLog
		var ch chan Change
		ready := make(chan struct{})
		var peace atomic.Bool // read by Run's goroutine
		w := &Watcher{
			Reconcile: func() (bool, error) {
				<-ready
				p.add()
				if peace.Load() {
					return false, nil
				}
				ch <- Change{Kind: RouteChange} // someone undoes every repair at once
				return true, nil
			},
			Debounce: 5 * time.Millisecond,
			MaxDelay: 80 * time.Millisecond,
			Period:   time.Hour,
		}
		ch = runWatcher(t, w)
		close(ready)
		// Two passes in a row may find drift at the debounce; then the delay doubles up
		// to MaxDelay.
		want := []time.Duration{5, 5, 10, 20, 40, 80, 80, 80}
		for i := range want {
			want[i] *= time.Millisecond
			advance(want[i])
		}
		if g := p.gaps(); !slices.Equal(g, want) {
			t.Fatalf("gaps between passes %v, want %v", g, want)
		}
		// The fight ends: the pass after the last drift finds nothing, and a new change
		// is acted on at the debounce again.
		peace.Store(true)
		advance(80 * time.Millisecond)
		wantCount(t, &p, len(want)+2, "the fight ended")
		ch <- Change{Kind: RouteChange}
		advance(5 * time.Millisecond)
		wantCount(t, &p, len(want)+3, "a change after the fight, at the debounce")
		t.Logf("gaps %v", p.gaps())
	})
}

func TestWatcherRetriesFailedPassesAndRunsPeriodically(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p passLog
		w := &Watcher{
			Reconcile: func() (bool, error) {
				if p.add() <= 3 {
					return false, errors.New("peer not reachable yet")
				}
				return false, nil
			},
			Retry:  20 * time.Millisecond,
			Period: 300 * time.Millisecond,
		}
		runWatcher(t, w)
		// Three failures: retried after 20, 40 and 80 ms; then passes every Period.
		want := []time.Duration{20, 40, 80, 300, 300}
		for i := range want {
			want[i] *= time.Millisecond
			advance(want[i])
		}
		if g := p.gaps(); !slices.Equal(g, want) {
			t.Fatalf("gaps between passes %v, want %v", g, want)
		}
	})
}

func TestWatcherWithoutChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p passLog
		w := &Watcher{Reconcile: func() (bool, error) { p.add(); return false, nil }, Period: 20 * time.Millisecond, Log: testr.New(t)}
		ctx, cancel := context.WithTimeout(t.Context(), 190*time.Millisecond)
		defer cancel()
		closed := make(chan Change)
		close(closed)
		w.Run(ctx, closed) // returns when ctx ends
		// Passes at 0, 20, ..., 180 ms.
		if n := p.count(); n != 10 {
			t.Fatalf("%d passes in 190ms with a 20ms period, want 10 (gaps %v)", n, p.gaps())
		}
	})
}
