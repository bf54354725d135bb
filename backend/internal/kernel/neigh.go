package kernel

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureNeigh makes a permanent IPv4 neighbour entry "addr lladdr mac" on linkIndex
// (ip neigh replace addr lladdr mac dev <link> nud permanent). An entry that already has
// that MAC and is permanent is left alone. Like EnsureRoute it first tries an exclusive
// create, which needs no dump when there is no entry for addr yet.
func (h *Handle) EnsureNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) error {
	if err := h.check(); err != nil {
		return err
	}
	if !addr.Is4() {
		return fmt.Errorf("ensure neighbour: %s is not an IPv4 address", addr)
	}
	check := func() (bool, error) {
		have, err := h.Neighs(linkIndex)
		if err != nil {
			return false, err
		}
		for i := range have {
			if NeighMatches(&have[i], addr, mac) {
				return true, nil
			}
		}
		return false, nil
	}
	n := permanentNeigh(linkIndex, addr, mac)
	if err := h.nl.NeighAdd(n); err == nil {
		return nil // the kernel acknowledged a new entry: there was none for addr
	} else if !isExist(err) {
		return fmt.Errorf("add neighbour %s lladdr %s on link #%d: %w", addr, mac, linkIndex, err)
	}
	if ok, err := check(); err != nil || ok {
		return err
	}
	if err := h.nl.NeighSet(n); err != nil {
		return fmt.Errorf("set neighbour %s lladdr %s on link #%d: %w", addr, mac, linkIndex, err)
	}
	if ok, err := check(); err != nil || !ok {
		if err == nil {
			err = ErrNotApplied
		}
		return fmt.Errorf("neighbour %s lladdr %s on link #%d: %w", addr, mac, linkIndex, err)
	}
	return nil
}

// NeighMatches reports whether the listed entry n is the permanent neighbour addr -> mac.
func NeighMatches(n *netlink.Neigh, addr netip.Addr, mac net.HardwareAddr) bool {
	a, ok := netip.AddrFromSlice(n.IP)
	return ok && a.Unmap() == addr && bytes.Equal(n.HardwareAddr, mac) && n.State&netlink.NUD_PERMANENT != 0
}

// DeleteNeigh removes the IPv4 neighbour entry for addr on linkIndex; a missing one is fine.
func (h *Handle) DeleteNeigh(linkIndex int, addr netip.Addr) error {
	if err := h.check(); err != nil {
		return err
	}
	n := &netlink.Neigh{LinkIndex: linkIndex, Family: unix.AF_INET, IP: net.IP(addr.AsSlice())}
	if err := h.nl.NeighDel(n); err != nil && !isGone(err) {
		return fmt.Errorf("delete neighbour %s on link #%d: %w", addr, linkIndex, err)
	}
	return nil
}

// Neighs lists the IPv4 neighbour entries on linkIndex, retrying interrupted dumps.
func (h *Handle) Neighs(linkIndex int) ([]netlink.Neigh, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	ns, err := RetryDump(func() ([]netlink.Neigh, error) { return h.nl.NeighList(linkIndex, unix.AF_INET) })
	if err != nil {
		return nil, fmt.Errorf("list neighbours on link #%d: %w", linkIndex, err)
	}
	return ns, nil
}

// EnsureFDB makes the bridge forwarding entry "mac dst <dst> self permanent" on the
// (vxlan) device linkIndex, as `bridge fdb replace` does. Other remote addresses recorded
// for the same MAC on that device are removed, so frames to mac go to dst only. Like
// EnsureRoute it first tries an exclusive create, which needs no dump when mac is new.
func (h *Handle) EnsureFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) error {
	if err := h.check(); err != nil {
		return err
	}
	if !dst.Is4() {
		return fmt.Errorf("ensure fdb: %s is not an IPv4 address", dst)
	}
	// state reads the entries for mac: whether the wanted one is there, and the others.
	state := func() (bool, []netlink.Neigh, error) {
		have, err := h.FDB(linkIndex)
		if err != nil {
			return false, nil, err
		}
		var found bool
		var others []netlink.Neigh
		for _, n := range have {
			switch {
			case !bytes.Equal(n.HardwareAddr, mac):
			case FDBMatches(&n, mac, dst):
				found = true
			default:
				others = append(others, n)
			}
		}
		return found, others, nil
	}
	if err := h.nl.NeighAdd(fdbEntry(linkIndex, mac, dst)); err == nil {
		return nil // the kernel acknowledged a new entry: mac had no remote at all
	} else if !isExist(err) {
		return fmt.Errorf("add fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
	}
	found, others, err := state()
	if err != nil {
		return err
	}
	for i := range others {
		if err := h.nl.NeighDel(&others[i]); err != nil && !isGone(err) {
			return fmt.Errorf("delete stale fdb %s dst %s on link #%d: %w", mac, others[i].IP, linkIndex, err)
		}
	}
	if found {
		return nil
	}
	if err := h.nl.NeighSet(fdbEntry(linkIndex, mac, dst)); err != nil {
		return fmt.Errorf("set fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
	}
	if found, _, err = state(); err != nil || !found {
		if err == nil {
			err = ErrNotApplied
		}
		return fmt.Errorf("fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
	}
	return nil
}

// FDBMatches reports whether the listed entry n is the permanent forwarding entry
// mac -> dst.
func FDBMatches(n *netlink.Neigh, mac net.HardwareAddr, dst netip.Addr) bool {
	a, ok := netip.AddrFromSlice(n.IP)
	return ok && a.Unmap() == dst && bytes.Equal(n.HardwareAddr, mac) &&
		n.State&netlink.NUD_PERMANENT != 0 && n.Flags&netlink.NTF_SELF != 0
}

// DeleteFDB removes the forwarding entry mac -> dst on linkIndex (every remote of mac when
// dst is the zero Addr). A missing entry is fine.
func (h *Handle) DeleteFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) error {
	if err := h.check(); err != nil {
		return err
	}
	if !dst.IsValid() {
		// netlink cannot send a delete without a destination address (it would send an
		// empty one, which the kernel refuses): delete each listed remote of mac.
		have, err := h.FDB(linkIndex)
		if err != nil {
			return err
		}
		for _, n := range have {
			a, ok := netip.AddrFromSlice(n.IP)
			if ok && bytes.Equal(n.HardwareAddr, mac) {
				if err := h.DeleteFDB(linkIndex, mac, a.Unmap()); err != nil {
					return err
				}
			}
		}
		return nil
	}
	n := &netlink.Neigh{
		LinkIndex:    linkIndex,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		HardwareAddr: mac,
		IP:           net.IP(dst.AsSlice()),
	}
	if err := h.nl.NeighDel(n); err != nil && !isGone(err) {
		return fmt.Errorf("delete fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
	}
	return nil
}

// FDB lists the bridge forwarding entries of the device linkIndex, retrying interrupted
// dumps.
func (h *Handle) FDB(linkIndex int) ([]netlink.Neigh, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	ns, err := RetryDump(func() ([]netlink.Neigh, error) { return h.nl.NeighList(linkIndex, unix.AF_BRIDGE) })
	if err != nil {
		return nil, fmt.Errorf("list fdb on link #%d: %w", linkIndex, err)
	}
	return ns, nil
}
