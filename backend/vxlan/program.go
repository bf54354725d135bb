package vxlan

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/backend/internal/kernel"
	"golang.org/x/sys/unix"
)

// programPeerLocked makes the kernel entries for p, replacing those of old (the same subnet
// as last programmed, or nil), and records the outcome in p.
func (n *network) programPeerLocked(f *family, b *kernel.Batch, old, p *peer) error {
	err := n.ensurePeerLocked(f, b, old, p)
	switch {
	case old == nil:
		n.noteResultLocked(p, err, "Added peer")
	case !old.sameLease(p):
		n.noteResultLocked(p, err, "Updated peer")
	default:
		n.noteResultLocked(p, err, "")
	}
	return err
}

// noteResultLocked records the outcome of programming p and logs state changes: a new
// error, a recovery, or the given success message (none when empty).
func (n *network) noteResultLocked(p *peer, err error, success string) {
	switch {
	case err != nil:
		msg := err.Error()
		if msg != p.failErr {
			n.log.Error(err, "Cannot program peer; will retry", "subnet", p.subnet, "publicIP", p.publicIP)
		}
		p.failErr = msg
	case p.failErr != "":
		p.failErr = ""
		n.log.Info("Programmed peer after earlier failure", "subnet", p.subnet, "publicIP", p.publicIP, "vtepMAC", p.mac, "direct", p.direct)
	case success != "":
		n.log.Info(success, "subnet", p.subnet, "publicIP", p.publicIP, "vtepMAC", p.mac, "direct", p.direct)
	}
}

// ensurePeerLocked writes what p's entries lack, checked against b. With DirectRouting it
// first decides whether p is on the external interface's segment.
func (n *network) ensurePeerLocked(f *family, b *kernel.Batch, old, p *peer) error {
	if err := n.decideDirectLocked(f, p); err != nil {
		return err
	}
	if p.direct {
		if err := b.EnsureRoute(directRoute(p, n.extIdx, f.metric)); err != nil {
			return fmt.Errorf("peer %s: %w", p.subnet, err)
		}
		// Tunnel entries of an earlier, non-direct programming are no longer used.
		return n.deleteTunnelEntriesLocked(f, b, p, old)
	}
	// Neighbour and FDB first, so the route never points at an unresolvable next hop.
	if err := b.EnsureNeigh(f.devIndex, p.vtepAddr(), p.mac); err != nil {
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	}
	if err := b.EnsureFDB(f.devIndex, p.mac, p.publicIP); err != nil {
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	}
	if err := b.EnsureRoute(tunnelRoute(p, f.devIndex, f.metric)); err != nil {
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	}
	if old != nil && !equalMAC(old.mac, p.mac) && !f.macInUseLocked(old.mac) {
		if err := b.DeleteFDB(f.devIndex, old.mac, old.publicIP); err != nil {
			return fmt.Errorf("peer %s: old fdb entry: %w", p.subnet, err)
		}
	}
	return nil
}

// decideDirectLocked sets p.direct: with DirectRouting, whether the external interface
// reaches p's public IP without a gateway. A public IP with no route at all goes through
// the tunnel, as in flanneld; on another lookup error p keeps its previous decision.
func (n *network) decideDirectLocked(f *family, p *peer) error {
	if !f.direct {
		p.direct = false
		return nil
	}
	d, err := n.h.DirectlyConnected(p.publicIP, n.extIdx)
	switch {
	case errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH):
		p.direct = false
	case err != nil:
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	default:
		p.direct = d
	}
	return nil
}

// deleteTunnelEntriesLocked removes p's (and old's) neighbour and FDB entries.
func (n *network) deleteTunnelEntriesLocked(f *family, b *kernel.Batch, p, old *peer) error {
	var errs []error
	errs = append(errs, b.DeleteNeigh(f.devIndex, p.vtepAddr()))
	for _, q := range []*peer{p, old} {
		if q != nil && !f.macInUseByOtherLocked(q.mac, p.subnet) {
			errs = append(errs, b.DeleteFDB(f.devIndex, q.mac, q.publicIP))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	}
	return nil
}

// removePeerLocked deletes p's route, neighbour and FDB entries; on success p leaves gone.
func (n *network) removePeerLocked(f *family, b *kernel.Batch, p *peer) error {
	var errs []error
	errs = append(errs, b.DeleteRoute(p.subnet, f.devIndex))
	if p.direct {
		errs = append(errs, b.DeleteRoute(p.subnet, n.extIdx))
	}
	if err := n.deleteTunnelEntriesLocked(f, b, p, nil); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		err = fmt.Errorf("remove peer %s: %w", p.subnet, err)
		if err.Error() != p.failErr {
			n.log.Error(err, "Cannot remove peer entries; will retry", "subnet", p.subnet)
		}
		p.failErr = err.Error()
		return err
	}
	delete(f.gone, p.subnet)
	n.log.Info("Removed peer", "subnet", p.subnet, "publicIP", p.publicIP, "vtepMAC", p.mac)
	return nil
}

// macInUseLocked reports whether a known peer uses mac.
func (f *family) macInUseLocked(mac []byte) bool {
	return f.macInUseByOtherLocked(mac, netip.Prefix{})
}

func (f *family) macInUseByOtherLocked(mac []byte, except netip.Prefix) bool {
	for sn, q := range f.peers {
		if sn != except && !q.direct && equalMAC(q.mac, mac) {
			return true
		}
	}
	return false
}

func equalMAC(a, b []byte) bool { return string(a) == string(b) }
