package iface

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of a netlink dump the kernel reports as interrupted
// (the table changed while it was read).
const dumpAttempts = 5

// netlinkKernel reads the network namespace of the calling thread.
type netlinkKernel struct{}

var _ kernel = netlinkKernel{}

func (netlinkKernel) links() ([]link, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	v4, err := addrsByLink(netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	v6, err := addrsByLink(netlink.FAMILY_V6)
	if err != nil {
		return nil, err
	}
	links := make([]link, len(ifs))
	for i, nif := range ifs {
		links[i] = link{iface: nif, addrs: v4[nif.Index], addrs6: v6[nif.Index]}
	}
	return links, nil
}

// addrsByLink lists the addresses of one family by interface index, in kernel order. IPv6
// addresses that cannot serve as a lasting tunnel endpoint are left out (see keepIPv6).
func addrsByLink(fam int) (map[int][]netip.Addr, error) {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, fam) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	out := make(map[int][]netip.Addr)
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		switch {
		case !ok:
		case fam == netlink.FAMILY_V4 && ip.Unmap().Is4():
			out[a.LinkIndex] = append(out[a.LinkIndex], ip.Unmap())
		case fam == netlink.FAMILY_V6 && ip.Is6() && keepIPv6(a.Flags):
			out[a.LinkIndex] = append(out[a.LinkIndex], ip)
		}
	}
	return out, nil
}

// keepIPv6 reports whether an IPv6 address with these IFA_F_ flags may be selected: not a
// temporary (privacy) address, which the kernel replaces within hours and would change the
// published address, and not one that failed duplicate address detection, which the kernel
// never sends from.
func keepIPv6(flags int) bool {
	return flags&(unix.IFA_F_TEMPORARY|unix.IFA_F_DADFAILED) == 0
}

func (netlinkKernel) routeTo(dst netip.Addr) (int, netip.Addr, error) {
	rs, err := netlink.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return 0, netip.Addr{}, err
	}
	if len(rs) == 0 || rs[0].LinkIndex <= 0 {
		return 0, netip.Addr{}, errors.New("the kernel returned no output interface")
	}
	src, _ := netip.AddrFromSlice(rs[0].Src) // invalid when the kernel gives none
	return rs[0].LinkIndex, src.Unmap(), nil
}

func (netlinkKernel) routes(fam family) ([]route, error) {
	nlfam := netlink.FAMILY_V4
	if fam == ipv6 {
		nlfam = netlink.FAMILY_V6
	}
	rs, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, nlfam) })
	if err != nil {
		return nil, err
	}
	out := make([]route, 0, len(rs))
	for _, r := range rs {
		var rt route
		if r.Dst != nil {
			a, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			rt.dst = netip.PrefixFrom(a.Unmap(), ones)
		}
		rt.index = r.LinkIndex
		for _, nh := range r.MultiPath {
			rt.nexthops = append(rt.nexthops, nh.LinkIndex)
		}
		out = append(out, rt)
	}
	return out, nil
}

// retryDump runs a netlink dump again while the kernel reports it interrupted.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpAttempts {
		var v []T
		if v, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return nil, fmt.Errorf("still interrupted after %d attempts: %w", dumpAttempts, err)
}
