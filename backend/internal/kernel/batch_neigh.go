package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// matchesNeigh reports whether the listed entry e is the permanent neighbour addr -> mac.
func (e *neighEntry) matchesNeigh(addr netip.Addr, mac net.HardwareAddr) bool {
	return e.ip == addr && e.mac == string(mac) && e.state&netlink.NUD_PERMANENT != 0
}

// matchesFDB reports whether the listed entry e is the permanent forwarding entry
// mac -> dst of the device's own table.
func (e *neighEntry) matchesFDB(mac net.HardwareAddr, dst netip.Addr) bool {
	return e.ip == dst && e.mac == string(mac) && e.state&netlink.NUD_PERMANENT != 0 && e.flags&netlink.NTF_SELF != 0
}

// fdbNeigh is a netlink.Neigh that names the FDB entry e on link for a delete.
func (e *neighEntry) fdbNeigh(link int) *netlink.Neigh {
	n := &netlink.Neigh{LinkIndex: link, Family: unix.AF_BRIDGE, Flags: int(e.flags), State: int(e.state),
		HardwareAddr: net.HardwareAddr(e.mac), Vlan: int(e.vlan), VNI: int(e.vni)}
	if e.ip.IsValid() {
		n.IP = net.IP(e.ip.AsSlice())
	}
	return n
}

// HasNeigh reports whether the permanent neighbour addr -> mac is on linkIndex.
func (b *Batch) HasNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) (bool, error) {
	m, err := b.neighsOn(linkIndex)
	if err != nil {
		return false, err
	}
	n, ok := m[addr]
	return ok && n.matchesNeigh(addr, mac), nil
}

// EnsureNeigh makes a permanent neighbour entry "addr lladdr mac" on linkIndex (ip neigh
// replace addr lladdr mac dev <link> nud permanent), checking it against the dump. addr
// must be of b's family. An entry that already has that MAC and is permanent is left
// alone.
func (b *Batch) EnsureNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) error {
	if err := b.check(); err != nil {
		return err
	}
	if err := b.ofFamily("ensure neighbour", addr); err != nil {
		return err
	}
	n := permanentNeigh(linkIndex, addr, mac)
	if _, read := b.neighs[linkIndex]; !read {
		if err := b.h.nl.NeighAdd(n); err == nil {
			return nil
		} else if !isExist(err) {
			return fmt.Errorf("add neighbour %s lladdr %s on link #%d: %w", addr, mac, linkIndex, err)
		}
	}
	m, err := b.neighsOn(linkIndex)
	if err != nil {
		return err
	}
	have, present := m[addr]
	if present && have.matchesNeigh(addr, mac) {
		return nil
	}
	err = errExist
	if !present {
		err = b.h.nl.NeighAdd(n)
	}
	if isExist(err) {
		err = b.h.nl.NeighSet(n)
	}
	if err != nil {
		return fmt.Errorf("set neighbour %s lladdr %s on link #%d: %w", addr, mac, linkIndex, err)
	}
	m[addr] = neighEntry{ip: addr, mac: string(mac), state: netlink.NUD_PERMANENT}
	return nil
}

func permanentNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    linkIndex,
		Family:       int(FamilyOf(addr)),
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           net.IP(addr.AsSlice()),
		HardwareAddr: mac,
	}
}

// DeleteNeigh removes the neighbour entry for addr (of b's family) on linkIndex; a
// missing one is fine.
func (b *Batch) DeleteNeigh(linkIndex int, addr netip.Addr) error {
	if err := b.check(); err != nil {
		return err
	}
	if err := b.ofFamily("delete neighbour", addr); err != nil {
		return err
	}
	if err := b.h.deleteNeigh(linkIndex, addr); err != nil {
		return err
	}
	if m, ok := b.neighs[linkIndex]; ok {
		delete(m, addr)
	}
	return nil
}

// HasFDB reports whether the permanent forwarding entry mac -> dst is on linkIndex (other
// remotes for mac may be there too).
func (b *Batch) HasFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) (bool, error) {
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return false, err
	}
	for _, n := range m[string(mac)] {
		if n.matchesFDB(mac, dst) {
			return true, nil
		}
	}
	return false, nil
}

// EnsureFDB makes the bridge forwarding entry "mac dst <dst> self permanent" on the
// (vxlan) device linkIndex the only remote of mac, as `bridge fdb replace` does, checking
// it against the dump: other remote addresses recorded for mac on that device are
// removed, so frames to mac go to dst only. dst must be of b's family.
func (b *Batch) EnsureFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) error {
	if err := b.check(); err != nil {
		return err
	}
	if err := b.ofFamily("ensure fdb", dst); err != nil {
		return err
	}
	n := fdbEntry(linkIndex, mac, dst)
	if _, read := b.fdb[linkIndex]; !read {
		if err := b.h.nl.NeighAdd(n); err == nil {
			return nil
		} else if !isExist(err) {
			return fmt.Errorf("add fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
		}
	}
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return err
	}
	have := m[string(mac)]
	var found bool
	var kept []neighEntry
	for _, e := range have {
		if e.matchesFDB(mac, dst) {
			found = true
			kept = append(kept, e)
			continue
		}
		if err := b.h.nl.NeighDel(e.fdbNeigh(linkIndex)); err != nil && !isGone(err) {
			m[string(mac)] = append(kept, e)
			return fmt.Errorf("delete stale fdb %s dst %s on link #%d: %w", mac, e.ip, linkIndex, err)
		}
	}
	m[string(mac)] = kept
	if found {
		return nil
	}
	err = errExist
	if len(kept) == 0 {
		err = b.h.nl.NeighAdd(n)
	}
	if isExist(err) {
		err = b.h.nl.NeighSet(n)
	}
	if err != nil {
		return fmt.Errorf("set fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
	}
	m[string(mac)] = []neighEntry{{ip: dst, mac: string(mac), state: netlink.NUD_PERMANENT, flags: netlink.NTF_SELF}}
	return nil
}

func fdbEntry(linkIndex int, mac net.HardwareAddr, dst netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    linkIndex,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(dst.AsSlice()),
		HardwareAddr: mac,
	}
}

// DeleteFDB removes the forwarding entry mac -> dst on linkIndex (every remote of mac when
// dst is the zero Addr, which needs the dump). A missing entry is fine.
func (b *Batch) DeleteFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) error {
	if err := b.check(); err != nil {
		return err
	}
	if dst.IsValid() {
		if err := b.h.deleteFDB(&netlink.Neigh{LinkIndex: linkIndex, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			HardwareAddr: mac, IP: net.IP(dst.AsSlice())}); err != nil {
			return err
		}
		if _, read := b.fdb[linkIndex]; !read {
			return nil
		}
	}
	// netlink cannot send a delete without a destination address (it would send an empty
	// one, which the kernel refuses): without dst, each listed remote of mac goes.
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return err
	}
	var kept []neighEntry
	var errs []error
	for _, e := range m[string(mac)] {
		switch {
		case dst.IsValid() && e.ip != dst:
			kept = append(kept, e)
		case dst.IsValid(): // deleted above
		default:
			if err := b.h.deleteFDB(e.fdbNeigh(linkIndex)); err != nil {
				kept = append(kept, e)
				errs = append(errs, err)
			}
		}
	}
	if len(kept) == 0 {
		delete(m, string(mac))
	} else {
		m[string(mac)] = kept
	}
	return errors.Join(errs...)
}

// deleteNeigh removes the neighbour entry for addr (IPv4 or IPv6) on linkIndex; a missing
// one is fine. It needs no dump.
func (h *Handle) deleteNeigh(linkIndex int, addr netip.Addr) error {
	if err := h.check(); err != nil {
		return err
	}
	n := &netlink.Neigh{LinkIndex: linkIndex, Family: int(FamilyOf(addr)), IP: net.IP(addr.AsSlice())}
	if err := h.nl.NeighDel(n); err != nil && !isGone(err) {
		return fmt.Errorf("delete neighbour %s on link #%d: %w", addr, linkIndex, err)
	}
	return nil
}

// deleteFDB removes the forwarding entry n (which names its remote); a missing one is
// fine.
func (h *Handle) deleteFDB(n *netlink.Neigh) error {
	if err := h.nl.NeighDel(n); err != nil && !isGone(err) {
		return fmt.Errorf("delete fdb %s dst %s on link #%d: %w", n.HardwareAddr, n.IP, n.LinkIndex, err)
	}
	return nil
}
