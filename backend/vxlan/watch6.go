package vxlan

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/wait"
)

// The kernel package's subscription reports IPv4 addresses, routes and neighbours only
// (links and FDB entries of every family come through it). subscribe6 adds the IPv6
// ones, so that a deleted IPv6 route, neighbour or address of flannel-v6.<VNI> is put
// back as fast as an IPv4 one.

// subscribe6 delivers IPv6 address, route and neighbour changes of the Handle's
// namespace until ctx ends; then the channel is closed. Like kernel.Handle.Subscribe it
// re-opens a failed socket with growing delays and reports lost notifications, failures
// and recoveries as Resync changes.
func (n *network) subscribe6(ctx context.Context) <-chan kernel.Change {
	out := make(chan kernel.Change, 64)
	send := func(c kernel.Change) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	open := func() (*nl.NetlinkSocket, error) {
		var sock *nl.NetlinkSocket
		err := n.h.InNamespace(func() (err error) {
			sock, err = nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_IPV6_ROUTE, unix.RTNLGRP_NEIGH)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("open netlink socket for IPv6 changes: %w", err)
		}
		if sock.SetReceiveBufferSize(1<<20, true) != nil {
			_ = sock.SetReceiveBufferSize(1<<20, false)
		}
		return sock, nil
	}
	sock, err := open() // before returning: changes made after subscribe6 are seen
	go func() {
		defer close(out)
		delay := 100 * time.Millisecond
		for {
			if sock != nil {
				err = read6(ctx, sock, send)
				sock = nil
				if ctx.Err() != nil {
					return
				}
			}
			if !send(kernel.Change{Kind: kernel.Resync, Err: err}) || wait.Sleep(ctx, delay) != nil {
				return
			}
			delay = min(2*delay, 5*time.Second)
			if sock, err = open(); err == nil {
				delay = 100 * time.Millisecond
				if !send(kernel.Change{Kind: kernel.Resync}) {
					sock.Close()
					return
				}
			}
		}
	}()
	return out
}

// read6 delivers sock's IPv6 notifications until ctx ends (then it returns nil) or the
// socket fails. It closes sock.
func read6(ctx context.Context, sock *nl.NetlinkSocket, send func(kernel.Change) bool) error {
	defer sock.Close()
	stop := context.AfterFunc(ctx, sock.Close) // wakes Receive
	defer stop()
	for {
		msgs, from, err := sock.Receive()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, unix.ENOBUFS):
			if !send(kernel.Change{Kind: kernel.Resync, Err: fmt.Errorf("%w: %w", kernel.ErrOverflow, err)}) {
				return nil
			}
			continue
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
			continue
		case err != nil:
			return fmt.Errorf("receive IPv6 change notifications: %w", err)
		}
		if from == nil || from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if c, ok := parseChange6(m); ok && !send(c) {
				return nil
			}
		}
	}
}

// parseChange6 turns an IPv6 address, route or neighbour notification into a Change;
// it reports false for anything else (IPv4 and bridge entries come from the kernel
// package's subscription) and for malformed messages. It is pure.
func parseChange6(m syscall.NetlinkMessage) (kernel.Change, bool) {
	var c kernel.Change
	b := m.Data
	ne := binary.NativeEndian
	switch m.Header.Type {
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		if len(b) < unix.SizeofIfAddrmsg || b[0] != unix.AF_INET6 || b[1] > 128 {
			return c, false
		}
		c.Kind, c.Deleted = kernel.AddrChange, m.Header.Type == unix.RTM_DELADDR
		c.LinkIndex = int(ne.Uint32(b[4:]))
		var addr netip.Addr
		ok := eachAttr6(b[unix.SizeofIfAddrmsg:], func(typ uint16, v []byte) {
			if typ == unix.IFA_ADDRESS || (typ == unix.IFA_LOCAL && !addr.IsValid()) {
				addr = addr6(v)
			}
		})
		if !addr.IsValid() {
			return c, false
		}
		c.Prefix = netip.PrefixFrom(addr, int(b[1]))
		return c, ok
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		if len(b) < unix.SizeofRtMsg || b[0] != unix.AF_INET6 || b[1] > 128 {
			return c, false
		}
		c.Kind, c.Deleted = kernel.RouteChange, m.Header.Type == unix.RTM_DELROUTE
		c.Table = int(b[4])
		dst := netip.IPv6Unspecified()
		ok := eachAttr6(b[unix.SizeofRtMsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.RTA_DST:
				if a := addr6(v); a.IsValid() {
					dst = a
				}
			case unix.RTA_OIF:
				if len(v) >= 4 {
					c.LinkIndex = int(ne.Uint32(v))
				}
			case unix.RTA_GATEWAY:
				c.Gateway = addr6(v)
			case unix.RTA_TABLE:
				if len(v) >= 4 {
					c.Table = int(ne.Uint32(v))
				}
			}
		})
		c.Prefix = netip.PrefixFrom(dst, int(b[1]))
		return c, ok
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		if len(b) < unix.SizeofNdMsg || b[0] != unix.AF_INET6 {
			return c, false
		}
		c.Kind, c.Deleted = kernel.NeighChange, m.Header.Type == unix.RTM_DELNEIGH
		c.LinkIndex = int(int32(ne.Uint32(b[4:])))
		ok := eachAttr6(b[unix.SizeofNdMsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.NDA_DST:
				if a := addr6(v); a.IsValid() {
					c.Prefix = netip.PrefixFrom(a, 128)
				}
			case unix.NDA_LLADDR:
				c.MAC = net.HardwareAddr(append([]byte(nil), v...))
			}
		})
		return c, ok
	}
	return c, false
}

// eachAttr6 calls fn for each rtnetlink attribute in b and reports whether b was well
// formed.
func eachAttr6(b []byte, fn func(typ uint16, v []byte)) bool {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			return false
		}
		fn(ne.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[unix.SizeofRtAttr:l])
		al := (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if al >= len(b) {
			return true
		}
		b = b[al:]
	}
	return true
}

func addr6(v []byte) netip.Addr {
	if len(v) != 16 {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(v))
}

// mergeChanges forwards a and b into one channel until ctx ends or both are closed.
func mergeChanges(ctx context.Context, a, b <-chan kernel.Change) <-chan kernel.Change {
	out := make(chan kernel.Change, 64)
	go func() {
		defer close(out)
		for a != nil || b != nil {
			var c kernel.Change
			var ok bool
			select {
			case <-ctx.Done():
				return
			case c, ok = <-a:
				if !ok {
					a = nil
					continue
				}
			case c, ok = <-b:
				if !ok {
					b = nil
					continue
				}
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
