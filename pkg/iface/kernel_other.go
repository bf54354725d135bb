//go:build !linux

package iface

import (
	"errors"
	"net/netip"
)

// netlinkKernel is the Linux kernel view; elsewhere every lookup fails.
type netlinkKernel struct{}

var _ kernel = netlinkKernel{}

var errUnsupported = errors.New("interface selection needs Linux netlink")

func (netlinkKernel) links() ([]link, error) { return nil, errUnsupported }

func (netlinkKernel) routeTo(netip.Addr) (int, netip.Addr, error) {
	return 0, netip.Addr{}, errUnsupported
}

func (netlinkKernel) routes(family) ([]route, error) { return nil, errUnsupported }
