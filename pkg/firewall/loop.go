package firewall

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Tracker holds the Inputs the setters fill and which parts they changed since the last
// pass, and wakes the pass loop. Both implementations embed one; its methods may be
// called from any goroutine.
type Tracker struct {
	kick chan struct{} // capacity 1: a pending request for a prompt pass

	mu    sync.Mutex     // guards in and dirty
	in    Inputs         // the setters replace in.Peers, never modify it in place
	dirty [NumParts]bool // parts whose inputs changed since the last pass over them
}

// NewTracker returns a Tracker with nothing set.
func NewTracker() *Tracker {
	return &Tracker{kick: make(chan struct{}, 1)}
}

// SetNetwork implements Firewall.SetNetwork. The families it runs decide where the
// tunnel rules go too, so every part is due after a change.
func (t *Tracker) SetNetwork(o Overlay) {
	t.update(Parts[:], func(s *Inputs) bool {
		if s.Overlay == o {
			return false
		}
		s.Overlay = o
		return true
	})
}

// SetTunnelPort implements Firewall.SetTunnelPort.
func (t *Tracker) SetTunnelPort(proto string, port int) {
	if proto != TunnelUDP {
		port = 0
	}
	t.update([]Part{Tunnel}, func(s *Inputs) bool {
		if s.TunnelSet && s.TunnelProto == proto && s.TunnelPort == port {
			return false
		}
		s.TunnelSet, s.TunnelProto, s.TunnelPort = true, proto, port
		return true
	})
}

// SetTunnelPortV6 implements Firewall.SetTunnelPortV6.
func (t *Tracker) SetTunnelPortV6(port int) {
	t.update([]Part{Tunnel}, func(s *Inputs) bool {
		if s.TunnelPort6 == port {
			return false
		}
		s.TunnelPort6 = port
		return true
	})
}

// SetPeers implements Firewall.SetPeers.
func (t *Tracker) SetPeers(publicIPs []netip.Addr) {
	peers, peers6 := PeerSetOf(IPv4, publicIPs), PeerSetOf(IPv6, publicIPs)
	t.update([]Part{Tunnel}, func(s *Inputs) bool {
		if slices.Equal(s.Peers, peers) && slices.Equal(s.IPv6Peers, peers6) {
			return false
		}
		s.Peers, s.IPv6Peers = peers, peers6
		return true
	})
}

// update applies change to the inputs and, if it changed them, marks parts as due and
// wakes the loop.
func (t *Tracker) update(parts []Part, change func(*Inputs) bool) {
	t.mu.Lock()
	changed := change(&t.in)
	if changed {
		for _, p := range parts {
			t.dirty[p] = true
		}
	}
	t.mu.Unlock()
	if changed {
		t.Wake()
	}
}

// Wake asks the loop for a prompt pass.
func (t *Tracker) Wake() {
	select {
	case t.kick <- struct{}{}:
	default: // a pass is already pending
	}
}

// Inputs returns the current inputs.
func (t *Tracker) Inputs() Inputs {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.in
}

// Take returns the current inputs and the parts due, and clears the marks.
func (t *Tracker) Take() (Inputs, [NumParts]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	due := t.dirty
	t.dirty = [NumParts]bool{}
	return t.in, due
}

// Redo marks parts as due again (their pass failed), without waking the loop: the next
// pass of any kind retries them.
func (t *Tracker) Redo(parts []Part) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range parts {
		t.dirty[p] = true
	}
}

// Loop is the pass loop both implementations run.
type Loop struct {
	Tracker *Tracker
	Resync  time.Duration
	// Pass makes a full pass (all) or one over the parts due.
	Pass func(all bool) error
	// Replaces is the other mode's firewall to clean away after a pass; nil when done.
	Replaces Cleaner
	Log      klog.Logger
	What     string // "iptables" or "nftables", for the log
}

// Run makes one full pass at once, then one every Resync and a pass over what changed soon
// after each setter call, until ctx ends; it then returns nil. A failed pass is logged once
// per distinct failure and retried at the next period. After each pass, until it succeeds
// once, the other mode's rules are cleaned away. Everything runs on the calling goroutine.
func (l *Loop) Run(ctx context.Context) error {
	t := time.NewTicker(l.Resync)
	defer t.Stop()
	var failing, cleanFailing string // the last failures logged; only to not repeat a line
	full := true
	for ctx.Err() == nil {
		err := l.Pass(full)
		switch {
		case err != nil && err.Error() != failing:
			l.Log.Error(err, l.What+" sync failed; retrying", "resync", l.Resync)
			failing = err.Error()
		case err == nil && failing != "":
			l.Log.Info(l.What + " sync succeeded again")
			failing = ""
		}
		if l.Replaces != nil {
			if cerr := l.Replaces.Cleanup(); cerr != nil {
				if cerr.Error() != cleanFailing {
					l.Log.Error(cerr, "Removing the rules of the other firewall mode failed; retrying", "mode", l.What)
					cleanFailing = cerr.Error()
				}
			} else {
				l.Log.V(1).Info("No rules of the other firewall mode are left", "mode", l.What)
				l.Replaces = nil
			}
		}
		select {
		case <-ctx.Done():
		case <-t.C:
			full = true
		case <-l.Tracker.kick:
			// A failed pass is retried in full at the next period; until then only
			// what changes is handled.
			full = false
		}
	}
	return nil
}
