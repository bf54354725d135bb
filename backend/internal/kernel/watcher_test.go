package kernel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// passLog records the passes a Watcher runs.
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

// runWatcher runs w with a fresh change channel until the test ends.
func runWatcher(t *testing.T, w *Watcher) chan Change {
	t.Helper()
	w.Log = testr.New(t)
	ch := make(chan Change, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, ch) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Watcher.Run did not end after cancel")
		}
	})
	return ch
}

func waitCount(t *testing.T, p *passLog, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for p.count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d passes within %s, want %d", p.count(), within, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWatcherCoalescesAndFilters(t *testing.T) {
	var p passLog
	ours := Change{Kind: RouteChange, LinkIndex: 7}
	w := &Watcher{
		Relevant:  func(c Change) bool { return c.LinkIndex == 7 },
		Reconcile: func() (bool, error) { p.add(); return false, nil },
		Debounce:  20 * time.Millisecond,
		Period:    time.Hour,
	}
	ch := runWatcher(t, w)
	waitCount(t, &p, 1, time.Second) // the first pass
	start := time.Now()
	for i := 0; i < 50; i++ {
		ch <- ours
	}
	waitCount(t, &p, 2, time.Second)
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Errorf("pass after %s, before the debounce", d)
	}
	time.Sleep(100 * time.Millisecond)
	if n := p.count(); n != 2 {
		t.Fatalf("50 changes in a burst gave %d passes, want 1", n-1)
	}
	for i := 0; i < 50; i++ {
		ch <- Change{Kind: NeighChange, LinkIndex: 3}
	}
	time.Sleep(100 * time.Millisecond)
	if n := p.count(); n != 2 {
		t.Fatalf("irrelevant changes gave %d passes", n-2)
	}
	// A resync is always acted on, whatever Relevant says.
	ch <- Change{Kind: Resync, Err: errors.New("socket broke")}
	waitCount(t, &p, 3, time.Second)
	ch <- Change{Kind: Resync}
	waitCount(t, &p, 4, time.Second)
}

func TestWatcherOwnRepairEndsAfterOneMorePass(t *testing.T) {
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
	waitCount(t, &p, 1, time.Second)
	ch <- Change{Kind: RouteChange}
	waitCount(t, &p, 3, time.Second)
	time.Sleep(200 * time.Millisecond)
	if n := p.count(); n != 3 {
		t.Fatalf("%d passes, want 3: start, repair, and one pass that found nothing", n)
	}
}

func TestWatcherBacksOffInAFight(t *testing.T) {
	var p passLog
	var ch chan Change
	ready := make(chan struct{})
	w := &Watcher{
		Reconcile: func() (bool, error) {
			<-ready
			p.add()
			ch <- Change{Kind: RouteChange} // someone undoes every repair at once
			return true, nil
		},
		Debounce: 5 * time.Millisecond,
		MaxDelay: 80 * time.Millisecond,
		Period:   time.Hour,
	}
	ch = runWatcher(t, w)
	close(ready)
	waitCount(t, &p, 10, 3*time.Second)
	g := p.gaps()
	for i, want := range []time.Duration{5, 5, 10, 20, 40, 80, 80, 80} {
		want *= time.Millisecond
		if got := g[i]; got < want*8/10 {
			t.Errorf("gap %d = %s, want about %s (gaps %v)", i, got, want, g)
		}
	}
}

func TestWatcherRetriesFailedPassesAndRunsPeriodically(t *testing.T) {
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
	waitCount(t, &p, 4, time.Second)
	g := p.gaps()
	for i, want := range []time.Duration{20, 40, 80} {
		want *= time.Millisecond
		if g[i] < want*8/10 || g[i] > want*3 {
			t.Errorf("retry %d after %s, want about %s", i+1, g[i], want)
		}
	}
	waitCount(t, &p, 5, time.Second)
	if g := p.gaps(); g[3] < 250*time.Millisecond {
		t.Errorf("periodic pass after %s, want the period (300ms)", g[3])
	}
}

func TestWatcherWithoutChanges(t *testing.T) {
	var p passLog
	w := &Watcher{Reconcile: func() (bool, error) { p.add(); return false, nil }, Period: 20 * time.Millisecond, Log: testr.New(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	closed := make(chan Change)
	close(closed)
	w.Run(ctx, closed) // returns when ctx ends
	if n := p.count(); n < 3 {
		t.Fatalf("%d passes in 200ms with a 20ms period", n)
	}
}
