package gre

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
)

// ensureDeviceLocked makes the device, its MTU, up state and address right and records its
// index. It reports what it had to correct, by repair kind ("device", "address").
func (n *kernelNetwork) ensureDeviceLocked() ([]string, error) {
	var fixed []string
	idx, changed, err := ensureKernelDevice(n.h, n.spec, true, n.log)
	if changed {
		fixed = append(fixed, "device")
	}
	if err != nil {
		return fixed, fmt.Errorf("gre backend: %w", err)
	}
	if n.devIndex != 0 && idx != n.devIndex {
		n.log.Info("GRE device was re-created; programming all peers again", "device", n.spec.name, "index", idx)
	}
	n.devIndex = idx
	n.devIdx.Store(int64(idx))
	addrs, err := n.h.Addrs(idx)
	if err != nil {
		return fixed, fmt.Errorf("gre backend: %s: %w", n.spec.name, err)
	}
	if len(addrs) == 1 {
		if have, ok := ip.FromIPNet(addrs[0].IPNet); ok && have == n.ownAddr {
			return fixed, nil
		}
	}
	fixed = append(fixed, "address")
	if err := n.h.EnsureSoleAddr(idx, n.ownAddr); err != nil {
		return fixed, fmt.Errorf("gre backend: %s: %w", n.spec.name, err)
	}
	return fixed, nil
}

// reconcile brings the kernel back to the wanted state: the device and its address, the
// entries of every peer, the removal of peers whose deletion failed and, once Apply has
// run, of the device's leftovers (sweepLocked). Each repair of state someone else changed
// is logged and counted by kind; retrying a peer that failed before is not a repair. It
// reports whether it found drift, and an error while something is not in place (the shape
// kernel.Watcher's Reconcile asks for). When nothing is wrong it only reads: a link
// lookup, an address dump and one dump each of routes and neighbours.
func (n *kernelNetwork) reconcile() (drift bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false, nil
	}
	fixed, err := n.ensureDeviceLocked()
	for _, kind := range fixed {
		drift = true
		n.log.Info("Repaired GRE device changed or deleted by someone else", "device", n.spec.name, "repair", kind)
		n.env.Repaired(kind)
	}
	if err != nil {
		n.log.Error(err, "Cannot repair the GRE device")
		return true, err
	}
	b := n.h.NewBatch()
	var errs []error
	for sn, l := range n.gone {
		drift = true
		errs = append(errs, n.removeLocked(b, sn, l))
	}
	for sn, pub := range n.peers.peers {
		_, failed := n.failed[sn]
		var missing []string
		if !failed {
			hasRoute, err := b.HasRoute(peerRoute(sn, pub, n.devIndex))
			if err != nil {
				return drift, errors.Join(append(errs, err)...) // the tables cannot be read
			}
			hasNeigh, err := b.HasNeigh(n.devIndex, pub, peerLLAddr(pub))
			if err != nil {
				return drift, errors.Join(append(errs, err)...)
			}
			if !hasNeigh {
				missing = append(missing, "neighbour")
			}
			if !hasRoute {
				missing = append(missing, "route")
			}
			if len(missing) == 0 {
				continue
			}
			drift = true
			n.log.Info("Repairing peer entries changed or deleted by someone else", "subnet", sn, "publicIP", pub, "missing", missing)
		}
		err := n.programLocked(b, sn, pub, netip.Addr{})
		errs = append(errs, err)
		if err == nil {
			for _, kind := range missing {
				n.env.Repaired(kind)
			}
		}
	}
	if n.applied {
		swept, err := n.sweepLocked(b)
		drift = drift || swept
		errs = append(errs, err)
	}
	return drift, errors.Join(errs...)
}

// sweepLocked deletes the device's leftovers: main-table routes and permanent neighbours
// on weft.gre that no admitted peer needs (left by peers that went away while weftd was
// not running, or during a re-acquire gap). It reports whether it found any. Only call it
// once the peer set is complete (after the first Apply).
func (n *kernelNetwork) sweepLocked(b *kernel.Batch) (bool, error) {
	routes, rerr := b.SweepRoutes(n.devIndex, func(r kernel.ListedRoute) bool { return staleRoute(r, n.peers.peers) })
	for _, r := range routes {
		n.log.Info("Removed leftover route on the GRE device: no peer needs it", "dst", r.Dst, "via", r.Gw)
	}
	neighs, nerr := b.SweepNeighs(n.devIndex, func(e kernel.ListedNeigh) bool { return staleNeigh(e, n.peers) })
	for _, e := range neighs {
		n.log.Info("Removed leftover neighbour on the GRE device: no peer needs it", "addr", e.Addr)
	}
	return len(routes)+len(neighs) > 0, errors.Join(rerr, nerr)
}

// staleRoute reports whether a main-table route on the GRE device is weft's and no peer
// needs it: every route there is weft's but the kernel's own (of an address), and a peer
// needs exactly "<subnet> via <its public IP> onlink", metric 0. It is pure.
func staleRoute(r kernel.ListedRoute, peers map[netip.Prefix]netip.Addr) bool {
	if r.Protocol == unix.RTPROT_KERNEL {
		return false
	}
	pub, ok := peers[r.Dst]
	return !ok || r.Gw != pub || !r.Onlink || r.Priority != 0 || r.Type != unix.RTN_UNICAST || r.Multipath
}

// staleNeigh reports whether a neighbour on the GRE device is a permanent entry (weft's
// kind) for an address no peer has. It is pure.
func staleNeigh(e kernel.ListedNeigh, peers *peerSet) bool {
	return e.Permanent && !peers.inUse(e.Addr, netip.Prefix{})
}
