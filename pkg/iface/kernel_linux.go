package iface

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
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
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	byIndex := make(map[int][]netip.Addr)
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().Is4() {
			byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], ip.Unmap())
		}
	}
	links := make([]link, len(ifs))
	for i, nif := range ifs {
		links[i] = link{iface: nif, addrs: byIndex[nif.Index]}
	}
	return links, nil
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

func (netlinkKernel) routes() ([]route, error) {
	rs, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
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
