package gre

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
)

// tun6 keeps the IPv6 side of the userspace TUN in place: the own IPv6 subnet's network
// address as a /128 (as flanneld gives its devices their IPv6 address; a /128 makes no
// prefix route) and one route, the whole IPv6 Network through the device. The TUN
// itself, its IPv4 address and route belong to the tundev.Plane; tun6 finds the device
// by name, so a device the Plane re-created gets its IPv6 side back too.
//
// It heals like the Plane: a netlink socket subscribed to link, IPv6 address and IPv6
// route changes wakes it as soon as something changes (the kernel also drops every IPv6
// address of a device that goes down), and it checks every period anyway.
type tun6 struct {
	name     string
	addr     netip.Prefix // <own IPv6 subnet>/128
	network  netip.Prefix // the IPv6 Network, routed via the device
	period   time.Duration
	repaired func(kind string)
	log      klog.Logger

	mu         sync.Mutex        // guards h, sock, started, lastRepair
	h          *kernel.Handle    // netlink in the TUN's namespace; nil after close
	sock       *nl.NetlinkSocket // change notifications; closed by watch once run started it
	started    bool              // run started watch, which owns sock from then on
	lastRepair string            // the last repair failure logged, so a lasting one logs once

	kick      chan struct{} // a change was reported or the Plane re-created the device
	stop      chan struct{} // closed by close: run ends
	closeOnce sync.Once
}

// newTun6 opens netlink (and the change socket) in the calling thread's network
// namespace, which must be the TUN's, and configures the device's IPv6 side once.
func newTun6(name string, own6, network6 netip.Prefix, period time.Duration, repaired func(string), log klog.Logger) (*tun6, error) {
	h, err := kernel.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	sock, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_IPV6_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("%s: open a netlink socket for IPv6 changes: %w", errPrefix, err)
	}
	if err := sock.SetReceiveTimeout(&unix.Timeval{Usec: 200_000}); err != nil {
		sock.Close()
		h.Close()
		return nil, fmt.Errorf("%s: netlink receive timeout: %w", errPrefix, err)
	}
	t := &tun6{
		name:     name,
		addr:     netip.PrefixFrom(own6.Addr(), 128),
		network:  network6,
		period:   period,
		repaired: repaired,
		log:      log,
		h:        h,
		sock:     sock,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if _, err := t.ensure(); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// wake makes Run check at once.
func (t *tun6) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run checks and repairs until ctx ends or close is called. It may be called once.
func (t *tun6) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t.mu.Lock()
	sock := t.sock
	t.started = sock != nil
	t.mu.Unlock()
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		if sock != nil {
			defer sock.Close()
			t.watch(ctx, sock)
		}
	}()
	tick := time.NewTicker(t.period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.stop:
			return
		case <-tick.C:
		case <-t.kick:
		}
		t.repair()
	}
}

// watch turns kernel notifications into wake-ups until ctx ends. The socket's receive
// timeout bounds each wait, so ctx is seen within 200 ms.
func (t *tun6) watch(ctx context.Context, sock *nl.NetlinkSocket) {
	for ctx.Err() == nil {
		msgs, _, err := sock.Receive()
		switch {
		case err == nil && len(msgs) > 0:
			t.wake()
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR), err == nil:
		case errors.Is(err, unix.ENOBUFS):
			t.wake() // notifications were lost: check everything
		default:
			t.log.Error(err, "Cannot watch IPv6 changes of the TUN device; checking every period only", "device", t.name, "period", t.period)
			return
		}
	}
}

// repair checks the IPv6 side and puts back what drifted, logging and counting each
// repair, and a lasting failure once.
func (t *tun6) repair() {
	faults, err := t.ensure()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if err.Error() != t.lastRepair {
			t.log.Error(err, "Cannot repair the IPv6 side of the TUN device; retrying", "device", t.name)
		}
		t.lastRepair = err.Error()
		return
	}
	if t.lastRepair != "" {
		t.log.Info("IPv6 side of the TUN device in place again", "device", t.name)
		t.lastRepair = ""
	}
	if len(faults) == 0 {
		return
	}
	var what []string
	seen := map[string]bool{}
	for _, f := range faults {
		what = append(what, f.what)
		if !seen[f.kind] {
			seen[f.kind] = true
			t.repaired(f.kind)
		}
	}
	t.log.Info("Repaired the IPv6 side of the TUN device changed by someone else", "device", t.name, "drift", strings.Join(what, ", "))
}

// fault6 is one way the IPv6 side differed from the wanted state.
type fault6 struct{ kind, what string }

// ensure puts the address and the route in place, removes other global IPv6 addresses
// and weft's stale IPv6 routes from the device, and returns what it had to change. A
// missing or down device is no fault here: the Plane re-creates it or brings it up, and
// that wakes tun6.
func (t *tun6) ensure() ([]fault6, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h == nil {
		return nil, nil
	}
	nh := t.h.Netlink()
	link, err := nh.LinkByName(t.name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: look up %s: %w", errPrefix, t.name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		// Down, the device takes no IPv6 route (and drops its IPv6 addresses); the Plane
		// brings it up, and that change wakes tun6.
		return nil, nil
	}
	var faults []fault6
	addrs, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return nh.AddrList(link, unix.AF_INET6) })
	if err != nil {
		return nil, fmt.Errorf("%s: list IPv6 addresses of %s: %w", errPrefix, t.name, err)
	}
	found := false
	for i := range addrs {
		a := &addrs[i]
		got, ok := ip.FromIPNet(a.IPNet)
		switch {
		case ok && got == t.addr:
			found = true
		case ok && !got.Addr().IsLinkLocalUnicast():
			if err := nh.AddrDel(link, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return faults, fmt.Errorf("%s: remove stale address %s from %s: %w", errPrefix, got, t.name, err)
			}
			faults = append(faults, fault6{"address", "stale address " + got.String()})
		}
	}
	if !found {
		a := &netlink.Addr{IPNet: ip.IPNet(t.addr), Flags: unix.IFA_F_NODAD}
		if err := nh.AddrReplace(link, a); err != nil {
			return faults, fmt.Errorf("%s: add address %s to %s: %w", errPrefix, t.addr, t.name, err)
		}
		faults = append(faults, fault6{"address", "address " + t.addr.String() + " missing"})
	}
	routes, err := kernel.RetryDump(func() ([]netlink.Route, error) {
		return nh.RouteListFiltered(unix.AF_INET6, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return faults, fmt.Errorf("%s: list IPv6 routes via %s: %w", errPrefix, t.name, err)
	}
	want := t.route(link.Attrs().Index)
	found = false
	for i := range routes {
		r := &routes[i]
		dst, ok := ip.FromIPNet(r.Dst)
		switch {
		case ok && dst == t.network && r.Gw == nil && r.Priority == want.Priority:
			found = true
		case r.Protocol == unix.RTPROT_KERNEL || !ok || dst.Addr().IsLinkLocalUnicast() || dst.Addr().IsMulticast():
			// The kernel's own (fe80::/64, multicast): not weft's.
		case dst == t.network:
			// Ours with another gateway or metric: replaced below.
		default:
			if err := nh.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
				return faults, fmt.Errorf("%s: remove stale route %s via %s: %w", errPrefix, dst, t.name, err)
			}
			faults = append(faults, fault6{"route", "stale route to " + dst.String()})
		}
	}
	if !found {
		if err := nh.RouteReplace(want); err != nil {
			return faults, fmt.Errorf("%s: add route %s via %s: %w", errPrefix, t.network, t.name, err)
		}
		faults = append(faults, fault6{"route", "route to " + t.network.String() + " missing"})
	}
	return faults, nil
}

// route is the IPv6 route through the device: the whole IPv6 Network, no gateway, in
// the main table with the kernel's default metric for IPv6 (1024).
func (t *tun6) route(index int) *netlink.Route {
	return &netlink.Route{LinkIndex: index, Dst: ip.IPNet(t.network), Table: unix.RT_TABLE_MAIN, Priority: 1024, Scope: netlink.SCOPE_UNIVERSE}
}

// close ends run and releases netlink; the address and the route stay. Idempotent.
func (t *tun6) close() error {
	t.closeOnce.Do(func() { close(t.stop) })
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	if t.sock != nil && !t.started {
		t.sock.Close()
	}
	t.sock = nil
	if t.h != nil {
		err = t.h.Close()
		t.h = nil
	}
	return err
}
