package wireguard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/pkg/wait"
)

// Drift repair of one device: run and the passes it drives. apply and programming live
// in network.go; wgnetwork.go runs one of each per device.

// run puts back what someone else changes — the device (re-created in place, with its
// key, port and peers), its link state, MTU, addresses, the routes to the networks, and
// the peers — within a few tens of milliseconds of the kernel's notification or the
// engine stopping, every peerPoll for the kernel link's peers, and every period anyway.
// It returns when ctx ends or close is called.
func (n *wgLink) run(ctx context.Context) {
	ctx, cancel := wait.UntilClosed(ctx, n.closed)
	defer cancel()
	n.mu.Lock()
	families := n.dev.Families()
	n.mu.Unlock()
	changes, err := n.h.Subscribe(ctx, families...)
	if err != nil && !errors.Is(err, kernel.ErrClosed) {
		n.log.Error(err, "Cannot watch kernel changes; checking the device every period only", "device", n.name, "period", n.period)
	}
	merged := make(chan kernel.Change)
	go n.forward(ctx, changes, merged)
	w := kernel.Watcher{Relevant: n.relevant, Reconcile: n.reconcile, Period: n.period, Log: n.log}
	w.Run(ctx, merged)
}

// forward passes the kernel's changes on, and adds a change of the device when a pass
// is due for another reason (a poke, the peer poll).
func (n *wgLink) forward(ctx context.Context, changes <-chan kernel.Change, out chan<- kernel.Change) {
	var tick <-chan time.Time
	if n.peerPoll > 0 {
		t := time.NewTicker(n.peerPoll)
		defer t.Stop()
		tick = t.C
	}
	ours := kernel.Change{Kind: kernel.LinkChange, LinkName: n.name}
	for {
		var c kernel.Change
		select {
		case <-ctx.Done():
			return
		case ch, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			c = ch
		case <-n.wake:
			c = ours
		case <-tick:
			c = ours
		}
		select {
		case out <- c:
		case <-ctx.Done():
			return
		}
	}
}

// relevant reports whether a kernel change may concern the device (tundev.Device.Concerns).
func (n *wgLink) relevant(c kernel.Change) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dev.Concerns(c)
}

// stopped reports whether the engine stopped by itself.
func stopped(e engine) bool {
	select {
	case <-e.done():
		return true
	default:
		return false
	}
}

// reconcile is one repair pass (the Watcher's Reconcile): it re-creates a deleted device
// or a stopped engine, corrects the link, address and route, and compares the peers. It
// logs and counts each repair, and a lasting failure once.
func (n *wgLink) reconcile() (drift bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.eng == nil {
		return false, nil
	}
	drift, err = n.repairLocked()
	outcome := ""
	if err != nil {
		outcome = err.Error()
		if outcome != n.lastRepair {
			n.log.Error(err, "Cannot repair the WireGuard device; retrying", "device", n.name)
		}
	} else if n.lastRepair != "" {
		n.log.Info("WireGuard device in place again", "device", n.name)
	}
	n.lastRepair = outcome
	return drift, err
}

func (n *wgLink) repairLocked() (drift bool, err error) {
	faults, err := n.dev.Drift(n.h)
	if errors.Is(err, tundev.ErrGone) || (err == nil && stopped(n.eng)) {
		n.log.Info("Re-creating the WireGuard device, deleted by someone else", "device", n.name, "implementation", n.impl)
		if err := n.openEngineLocked(true); err != nil {
			return true, err
		}
		if err := n.dev.Ensure(n.h); err != nil {
			return true, err
		}
		n.repaired("device")
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if len(faults) > 0 {
		drift = true
		var what []string
		for _, f := range faults {
			what = append(what, f.What)
		}
		n.log.Info("Repairing the WireGuard device, changed by someone else", "device", n.name, "drift", strings.Join(what, ", "))
		if err := n.dev.Ensure(n.h); err != nil {
			return true, err
		}
		seen := map[string]bool{}
		for _, f := range faults {
			if !seen[f.Kind] {
				seen[f.Kind] = true
				n.repaired(f.Kind)
			}
		}
	}
	if !n.applied {
		return drift, nil // the kernel link keeps an earlier run's peers until Apply
	}
	peerDrift, err := n.programLocked(true)
	return drift || peerDrift, err
}

// close stops the engine and releases its sockets. The device, its addresses, routes and
// (kernel) peers stay, so that a restarted weftd adopts them. Idempotent.
func (n *wgLink) close() {
	n.closeOnce.Do(func() {
		close(n.closed)
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.eng != nil {
			n.eng.close()
			n.eng = nil
		}
	})
}

// describe reports the device's handshakes ("1 of 2": peers with a handshake, of all;
// "" when the device cannot be read) and its peers' subnets with their state.
func (n *wgLink) describe(peers map[netip.Prefix]backend.PeerStatus) (handshakes string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.eng != nil {
		if have, err := n.eng.peers(); err == nil {
			up := 0
			for _, p := range have {
				if !p.LastHandshakeTime.IsZero() {
					up++
				}
			}
			handshakes = fmt.Sprintf("%d of %d", up, len(have))
		}
	}
	for _, l := range n.peers.leases {
		for _, sn := range l.subnets() {
			peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
		}
	}
	for sn, why := range n.bad {
		peers[sn] = backend.PeerStatus{State: backend.PeerError, Reason: why}
	}
	return handshakes
}
