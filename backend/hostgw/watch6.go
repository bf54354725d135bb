package hostgw

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/wait"
)

// Re-subscription delays of the IPv6 route subscription, as kernel.Subscribe's.
const (
	resubscribe6Min = 100 * time.Millisecond
	resubscribe6Max = 5 * time.Second
)

// withRoutes6 returns base's changes (kernel.Subscribe: links, IPv4 addresses and routes)
// together with the IPv6 route changes of h's namespace, which kernel.Subscribe does not
// report, from a subscription of this package's own. A broken or overflowing IPv6
// subscription is reported as a Resync and re-opened with growing delays. The channel is
// closed once ctx has ended and base is closed.
func withRoutes6(ctx context.Context, h *kernel.Handle, base <-chan kernel.Change) <-chan kernel.Change {
	out := make(chan kernel.Change, cap(base))
	six := make(chan kernel.Change, 64)
	go subscribeRoutes6(ctx, h, six)
	go func() {
		defer close(out)
		for base != nil || six != nil {
			var c kernel.Change
			var ok bool
			select {
			case c, ok = <-base:
				if !ok {
					base = nil
					continue
				}
			case c, ok = <-six:
				if !ok {
					six = nil
					continue
				}
			}
			select {
			case out <- c:
			case <-ctx.Done(): // keep draining the inputs until they close
			}
		}
	}()
	return out
}

// subscribeRoutes6 sends the IPv6 route changes of h's namespace to out until ctx ends,
// then closes out.
func subscribeRoutes6(ctx context.Context, h *kernel.Handle, out chan<- kernel.Change) {
	defer close(out)
	send := func(c kernel.Change) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	delay := resubscribe6Min
	for first := true; ; first = false {
		var sock *nl.NetlinkSocket
		err := h.InNamespace(func() (err error) {
			sock, err = nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_IPV6_ROUTE)
			return err
		})
		if err == nil {
			if sock.SetReceiveBufferSize(1<<20, true) != nil {
				_ = sock.SetReceiveBufferSize(1<<20, false) // capped by rmem_max; fine
			}
			if !first && !send(kernel.Change{Kind: kernel.Resync}) {
				sock.Close()
				return
			}
			delay = resubscribe6Min
			err = readRoutes6(ctx, sock, send)
		}
		if ctx.Err() != nil {
			return
		}
		err = fmt.Errorf("IPv6 route notifications: %w", err)
		if !send(kernel.Change{Kind: kernel.Resync, Err: err}) || wait.Sleep(ctx, delay) != nil {
			return
		}
		delay = min(2*delay, resubscribe6Max)
	}
}

// readRoutes6 delivers sock's IPv6 route notifications until ctx ends (nil) or the socket
// fails. It closes sock.
func readRoutes6(ctx context.Context, sock *nl.NetlinkSocket, send func(kernel.Change) bool) error {
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
			return err
		}
		if from == nil || from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if c, ok := parseRoute6(m); ok && !send(c) {
				return nil
			}
		}
	}
}

// parseRoute6 turns an IPv6 route notification into a RouteChange (destination, output
// link, gateway, table); it reports false for anything else and for malformed messages.
// It is pure and never panics.
func parseRoute6(m syscall.NetlinkMessage) (kernel.Change, bool) {
	const sizeRtMsg = 12
	b := m.Data
	if (m.Header.Type != unix.RTM_NEWROUTE && m.Header.Type != unix.RTM_DELROUTE) ||
		len(b) < sizeRtMsg || b[0] != unix.AF_INET6 || b[1] > 128 {
		return kernel.Change{}, false
	}
	ne := binary.NativeEndian
	c := kernel.Change{Kind: kernel.RouteChange, Deleted: m.Header.Type == unix.RTM_DELROUTE, Table: int(b[4])}
	dst := netip.IPv6Unspecified()
	for a := b[sizeRtMsg:]; len(a) >= unix.SizeofRtAttr; {
		l := int(ne.Uint16(a))
		if l < unix.SizeofRtAttr || l > len(a) {
			return kernel.Change{}, false
		}
		v := a[unix.SizeofRtAttr:l]
		switch ne.Uint16(a[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
		case unix.RTA_DST:
			if len(v) == 16 {
				dst = netip.AddrFrom16([16]byte(v))
			}
		case unix.RTA_GATEWAY:
			if len(v) == 16 {
				c.Gateway = netip.AddrFrom16([16]byte(v))
			}
		case unix.RTA_OIF:
			if len(v) >= 4 {
				c.LinkIndex = int(int32(ne.Uint32(v)))
			}
		case unix.RTA_TABLE:
			if len(v) >= 4 {
				c.Table = int(ne.Uint32(v))
			}
		}
		a = a[min(len(a), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	c.Prefix = netip.PrefixFrom(dst, int(b[1]))
	return c, true
}
