package kernel

import (
	"context"
	"errors"
	"time"

	"k8s.io/klog/v2"
)

// Defaults of a Watcher.
const (
	DefaultDebounce = 30 * time.Millisecond
	DefaultPeriod   = 30 * time.Second
	DefaultRetry    = time.Second
	DefaultMaxDelay = 500 * time.Millisecond
)

const (
	// freeStreak is how many passes in a row may find drift before the delay grows: a
	// repair and its own echo, and a second, unrelated change soon after, are normal.
	freeStreak = 2
	// maxStreak bounds the shifts in Watcher's back-offs.
	maxStreak = 16
)

// Watcher turns kernel change notifications into reconcile passes, so that state a
// backend owns and someone else deletes or changes is put back within a fraction of a
// second, while a quiet kernel costs nothing:
//
//   - A relevant change starts a short timer (Debounce); every change until it fires is
//     coalesced into the one pass it triggers.
//   - A pass whose own repairs cause notifications triggers one more pass, which finds
//     nothing and writes nothing, and so the loop ends. If passes keep finding drift (a
//     fight with another program over the same route), the delay doubles with each one
//     after the first two, up to MaxDelay, and drops back once a pass finds nothing.
//   - A Resync (lost notifications, a broken or re-opened subscription) triggers a pass
//     like a change, and is logged once per breakage, not once per retry.
//   - A full pass runs once at the start and then every Period, as a safety net; after a
//     pass that failed, the next one comes after Retry, doubling up to Period.
//
// Configure the fields, then call Run once. Reconcile and Relevant are only called from
// Run's goroutine.
type Watcher struct {
	// Relevant reports whether a change can concern the state the caller owns: its
	// device, routes to its peers, its neighbour and FDB entries. It is called for every
	// notification (never for Resync) and must be cheap and must not block; nil means every
	// change is relevant.
	Relevant func(Change) bool
	// Reconcile compares the kernel with the wanted state and repairs the differences.
	// It reports whether it found drift (something to repair, whether or not the repair
	// worked), and an error when something is still not in place, which makes Run try
	// again later. A pass that finds nothing wrong must write nothing.
	Reconcile func() (drift bool, err error)
	Debounce  time.Duration // from the first relevant change to the pass; DefaultDebounce if 0
	Period    time.Duration // between full passes; DefaultPeriod if 0
	Retry     time.Duration // first delay after a failed pass; DefaultRetry if 0
	MaxDelay  time.Duration // cap of the back-off while passes keep finding drift; DefaultMaxDelay if 0
	Log       klog.Logger
}

// Run does a first pass, then reacts to changes (from Handle.Subscribe) and runs the
// periodic passes until ctx ends. A nil or closed changes channel leaves only the
// periodic passes.
func (w *Watcher) Run(ctx context.Context, changes <-chan Change) {
	debounce := orDefault(w.Debounce, DefaultDebounce)
	period := orDefault(w.Period, DefaultPeriod)
	retry := orDefault(w.Retry, DefaultRetry)
	maxDelay := max(orDefault(w.MaxDelay, DefaultMaxDelay), debounce)

	full := time.NewTimer(period) // the next full pass: periodic or retry
	defer full.Stop()
	soon := time.NewTimer(time.Hour) // the debounced pass; armed while soonC != nil
	soon.Stop()
	defer soon.Stop()
	var soonC <-chan time.Time

	var streak, failures int // passes in a row that found drift; that failed
	pass := func() {
		drift, err := w.Reconcile()
		if drift {
			streak = min(streak+1, maxStreak)
		} else {
			streak = 0
		}
		next := period
		if err != nil {
			next = min(retry<<min(failures, maxStreak), period)
			failures++
		} else {
			failures = 0
		}
		full.Reset(next)
	}
	arm := func() {
		if soonC == nil {
			soon.Reset(min(debounce<<max(streak-freeStreak, 0), maxDelay))
			soonC = soon.C
		}
	}

	var broken, overflowed bool // logged: the subscription is broken; it overflowed once
	pass()
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			switch {
			case !ok:
				changes = nil
			case c.Kind == Resync:
				broken = w.logResync(c.Err, broken, &overflowed)
				arm()
			case w.Relevant == nil || w.Relevant(c):
				w.Log.V(4).Info("Kernel change", "change", c)
				arm()
			}
		case <-soonC:
			soonC = nil
			pass()
		case <-full.C:
			pass()
		}
	}
}

// logResync logs a Resync once per state change and returns whether the subscription is
// now broken.
func (w *Watcher) logResync(err error, broken bool, overflowed *bool) bool {
	switch {
	case err == nil:
		if broken {
			w.Log.Info("Kernel change notifications are back; checking all state")
		}
		return false
	case errors.Is(err, ErrOverflow):
		if !*overflowed {
			w.Log.Info("Kernel change notifications were lost; checking all state", "err", err)
			*overflowed = true
		} else {
			w.Log.V(2).Info("Kernel change notifications were lost again", "err", err)
		}
		return broken
	default:
		if !broken {
			w.Log.Error(err, "Kernel change notifications broke; checking all state and re-subscribing")
		} else {
			w.Log.V(2).Info("Kernel change notifications still broken", "err", err)
		}
		return true
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
