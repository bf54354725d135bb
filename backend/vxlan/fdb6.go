package vxlan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
)

// The forwarding (FDB) entries and the address of flannel-v6.<VNI>: batch6's FDB half, and
// the IPv6 counterparts of kernel.Handle's address helpers.

func (b *batch6) fdbOn(link int) (map[string][]netlink.Neigh, error) {
	if m, ok := b.fdb[link]; ok {
		return m, nil
	}
	ns, err := kernel.RetryDump(func() ([]netlink.Neigh, error) { return b.h.Netlink().NeighList(link, unix.AF_BRIDGE) })
	if err != nil {
		return nil, fmt.Errorf("list fdb on link #%d: %w", link, err)
	}
	m := map[string][]netlink.Neigh{}
	for _, n := range ns {
		m[string(n.HardwareAddr)] = append(m[string(n.HardwareAddr)], n)
	}
	b.fdb[link] = m
	return m, nil
}

func fdbMatches(n *netlink.Neigh, mac net.HardwareAddr, dst netip.Addr) bool {
	d, _ := ip.FromNetIP(n.IP)
	return d == dst && equalMAC(n.HardwareAddr, mac) && n.State&netlink.NUD_PERMANENT != 0 && n.Flags&netlink.NTF_SELF != 0
}

func fdbEntry(link int, mac net.HardwareAddr, dst netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: link, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		State: netlink.NUD_PERMANENT, IP: net.IP(dst.AsSlice()), HardwareAddr: mac}
}

// fdbDelete removes the listed forwarding entry n; a missing one is fine.
func (b *batch6) fdbDelete(n netlink.Neigh) error {
	n.Family = unix.AF_BRIDGE
	if err := b.h.Netlink().NeighDel(&n); err != nil && !gone(err) {
		return fmt.Errorf("delete fdb %s dst %s on link #%d: %w", n.HardwareAddr, n.IP, n.LinkIndex, err)
	}
	return nil
}

// HasFDB reports whether the permanent entry mac -> dst is on linkIndex.
func (b *batch6) HasFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) (bool, error) {
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return false, err
	}
	for i := range m[string(mac)] {
		if fdbMatches(&m[string(mac)][i], mac, dst) {
			return true, nil
		}
	}
	return false, nil
}

// EnsureFDB makes "mac dst <dst> self permanent" the only remote of mac on linkIndex, as
// `bridge fdb replace` does, writing nothing when it already is.
func (b *batch6) EnsureFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) error {
	if !dst.Is6() {
		return fmt.Errorf("ensure fdb: %s is not an IPv6 address", dst)
	}
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return err
	}
	found := false
	var kept []netlink.Neigh
	for _, n := range m[string(mac)] {
		if fdbMatches(&n, mac, dst) {
			found = true
			kept = append(kept, n)
			continue
		}
		if err := b.fdbDelete(n); err != nil {
			m[string(mac)] = append(kept, n)
			return err
		}
	}
	m[string(mac)] = kept
	if found {
		return nil
	}
	n := fdbEntry(linkIndex, mac, dst)
	if err := b.h.Netlink().NeighSet(n); err != nil {
		return fmt.Errorf("set fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
	}
	m[string(mac)] = []netlink.Neigh{*n}
	return nil
}

// DeleteFDB removes mac -> dst on linkIndex (every remote of mac when dst is the zero
// Addr). A missing entry is fine.
func (b *batch6) DeleteFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) error {
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return err
	}
	var kept []netlink.Neigh
	var errs []error
	for _, n := range m[string(mac)] {
		if d, _ := ip.FromNetIP(n.IP); dst.IsValid() && d != dst {
			kept = append(kept, n)
			continue
		}
		if err := b.fdbDelete(n); err != nil {
			kept = append(kept, n)
			errs = append(errs, err)
		}
	}
	m[string(mac)] = kept
	return errors.Join(errs...)
}

// SweepFDB deletes the forwarding entries on linkIndex that stale picks.
func (b *batch6) SweepFDB(linkIndex int, stale func(kernel.ListedFDB) bool) ([]kernel.ListedFDB, error) {
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return nil, err
	}
	var deleted []kernel.ListedFDB
	var errs []error
	for mac, have := range m {
		var kept []netlink.Neigh
		for _, n := range have {
			l := kernel.ListedFDB{MAC: mac, Permanent: n.State&netlink.NUD_PERMANENT != 0, Self: n.Flags&netlink.NTF_SELF != 0}
			l.Dst, _ = ip.FromNetIP(n.IP)
			if !stale(l) {
				kept = append(kept, n)
				continue
			}
			if err := b.fdbDelete(n); err != nil {
				kept = append(kept, n)
				errs = append(errs, err)
				continue
			}
			deleted = append(deleted, l)
		}
		m[mac] = kept
	}
	return deleted, errors.Join(errs...)
}

// globalAddrs6 lists the IPv6 addresses of link other than link-local ones (which the
// kernel gives every device and which are not weft's).
func globalAddrs6(h *kernel.Handle, link int) ([]netlink.Addr, error) {
	l := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: link}}
	as, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.Netlink().AddrList(l, unix.AF_INET6) })
	if err != nil {
		return nil, fmt.Errorf("list IPv6 addresses of link #%d: %w", link, err)
	}
	var out []netlink.Addr
	for _, a := range as {
		if p, ok := ip.FromIPNet(a.IPNet); ok && !p.Addr().IsLinkLocalUnicast() {
			out = append(out, a)
		}
	}
	return out, nil
}

// ensureSoleAddr6 makes p the only non-link-local IPv6 address of link, added without
// duplicate address detection (nodad: it is unique by construction, and a tentative
// address could not be a source for a second or so).
func ensureSoleAddr6(h *kernel.Handle, link int, p netip.Prefix) error {
	have, err := globalAddrs6(h, link)
	if err != nil {
		return err
	}
	l := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: link}}
	found := false
	for i := range have {
		a := &have[i]
		if got, _ := ip.FromIPNet(a.IPNet); got == p && a.Flags&unix.IFA_F_DADFAILED == 0 {
			found = true
			continue
		}
		if err := h.Netlink().AddrDel(l, a); err != nil && !gone(err) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove stale address %s from link #%d: %w", a.IPNet, link, err)
		}
	}
	if found {
		return nil
	}
	if err := h.Netlink().AddrAdd(l, &netlink.Addr{IPNet: ip.IPNet(p), Flags: unix.IFA_F_NODAD}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s to link #%d: %w", p, link, err)
	}
	return nil
}
