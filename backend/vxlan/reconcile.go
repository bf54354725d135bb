package vxlan

import (
	"errors"
	"fmt"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
	"golang.org/x/sys/unix"
)

// ensureDeviceLocked makes f's device, its MAC, MTU, up state, checksum setting and
// address right, and records its index. It reports what it had to correct, by repair
// kind ("device", "address").
func (n *network) ensureDeviceLocked(f *family) ([]string, error) {
	var fixed []string
	idx, changed, err := ensureDevice(n.h, f.spec, true, n.log)
	if changed {
		fixed = append(fixed, "device")
	}
	if err != nil {
		return fixed, fmt.Errorf("vxlan: %w", err)
	}
	f.setDevIndex(idx)
	ok, err := n.addrInPlace(f)
	if err != nil || ok {
		return fixed, err
	}
	fixed = append(fixed, "address")
	if err := n.h.EnsureSoleAddr(idx, f.ownAddr); err != nil {
		return fixed, fmt.Errorf("vxlan: %s: %w", f.spec.name, err)
	}
	return fixed, nil
}

// addrInPlace reports whether f's device has its address as its only one of the family
// (IPv6 link-local addresses, which the kernel adds, do not count).
func (n *network) addrInPlace(f *family) (bool, error) {
	addrs, err := n.h.AddrsOf(f.devIndex, f.kernelFamily())
	if err != nil {
		return false, fmt.Errorf("vxlan: %s: %w", f.spec.name, err)
	}
	if len(addrs) != 1 || addrs[0].Flags&unix.IFA_F_DADFAILED != 0 {
		return false, nil
	}
	have, ok := ip.FromIPNet(addrs[0].IPNet)
	return ok && have == f.ownAddr, nil
}

// reconcile brings the kernel back to the wanted state: the device and its address, the
// entries of every known peer, the removal of peers whose deletion failed and, once Apply
// has run, of leftovers no peer needs (sweepLocked; found leftovers count as drift). Each
// repair of state someone else changed is logged and counted by kind; retrying a peer
// that failed before is not a repair. It reports whether it found such drift, and an
// error while something is not in place. When nothing is wrong it only reads (one link
// lookup, one dump each of addresses, routes, neighbours and FDB entries, and a route
// lookup per peer with DirectRouting), so a pass costs O(peers). Run calls it on kernel
// changes and periodically.
func (n *network) reconcile() (drift bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, f := range n.fams {
		d, err := n.reconcileLocked(f)
		drift = drift || d
		errs = append(errs, err)
	}
	return drift, errors.Join(errs...)
}

// reconcileLocked is reconcile for one family.
func (n *network) reconcileLocked(f *family) (drift bool, err error) {
	fixed, err := n.ensureDeviceLocked(f)
	for _, kind := range fixed {
		drift = true
		n.log.Info("Repaired VXLAN device changed or deleted by someone else", "device", f.spec.name, "repair", kind)
		n.env.Repaired(kind)
	}
	if err != nil {
		n.log.Error(err, "Cannot repair the VXLAN device", "device", f.spec.name)
		return drift, err
	}
	b := f.newTables(n.h)
	var errs []error
	for _, p := range f.gone {
		if err := n.removePeerLocked(f, b, p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range f.peers {
		wasDirect := p.direct
		if err := n.decideDirectLocked(f, p); err != nil {
			errs = append(errs, err)
			continue
		}
		missing, err := n.missingLocked(f, b, p)
		if err != nil {
			return drift, errors.Join(append(errs, err)...) // the tables cannot be read
		}
		if p.failErr == "" && p.direct == wasDirect && len(missing) == 0 {
			continue
		}
		repair := p.failErr == "" && p.direct == wasDirect
		if repair {
			drift = true
			n.log.Info("Repairing peer entries changed or deleted by someone else", "subnet", p.subnet,
				"publicIP", p.publicIP, "direct", p.direct, "missing", missing)
		}
		var old *peer
		if wasDirect != p.direct {
			old = &peer{subnet: p.subnet, publicIP: p.publicIP, mac: p.mac, vni: p.vni, direct: wasDirect}
		}
		if err := n.ensurePeerLocked(f, b, old, p); err != nil {
			errs = append(errs, err)
			n.noteResultLocked(p, err, "")
			continue
		}
		if wasDirect && !p.direct {
			if err := b.DeleteRoute(p.subnet, n.extIdx); err != nil {
				errs = append(errs, err)
			}
		}
		if repair {
			for _, kind := range missing {
				n.env.Repaired(kind)
			}
		}
		n.noteResultLocked(p, nil, "")
	}
	if n.applied {
		swept, err := n.sweepLocked(f, b)
		drift = drift || swept
		errs = append(errs, err)
	}
	return drift, errors.Join(errs...)
}

// missingLocked lists the kinds of entries ("route", "neighbour", "fdb") that p needs and
// b's tables lack; none when p is in place. It does not look for leftovers (a stale FDB
// remote for the same MAC): sweepLocked removes those.
func (n *network) missingLocked(f *family, b *kernel.Batch, p *peer) ([]string, error) {
	var m []string
	want := tunnelRoute(p, f.devIndex, f.metric)
	if p.direct {
		want = directRoute(p, n.extIdx, f.metric)
	}
	if ok, err := b.HasRoute(want); err != nil {
		return nil, err
	} else if !ok {
		m = append(m, "route")
	}
	if p.direct {
		return m, nil
	}
	if ok, err := b.HasNeigh(f.devIndex, p.vtepAddr(), p.mac); err != nil {
		return nil, err
	} else if !ok {
		m = append(m, "neighbour")
	}
	if ok, err := b.HasFDB(f.devIndex, p.mac, p.publicIP); err != nil {
		return nil, err
	} else if !ok {
		m = append(m, "fdb")
	}
	return m, nil
}
