package kernel

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/wait"
)

// ErrOverflow is wrapped by the Err of a Resync change when the kernel dropped
// notifications because the subscription's socket buffer was full (ENOBUFS). The
// subscription itself goes on.
var ErrOverflow = errors.New("netlink notifications lost: socket buffer overflow")

// Tuning of a subscription.
const (
	changeBuffer   = 64      // Changes queued in the channel before the socket fills
	receiveBuffer  = 1 << 20 // socket receive buffer asked for (SO_RCVBUFFORCE, else SO_RCVBUF)
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 5 * time.Second
)

// Subscribe starts receiving the change notifications of h's network namespace — links,
// the addresses, routes and neighbours of the families fs (IPv4 when none is given), and
// bridge forwarding entries — as Changes, in the order the kernel sends them. A backend
// running both families subscribes once, with IPv4 and IPv6. Changes made after Subscribe returns are
// delivered (unless a Resync says otherwise). The subscription has its own socket in
// the Handle's namespace and does not depend on the Handle afterwards: it goes on after
// Close, until ctx ends; then the channel is closed.
//
// The receiver should read promptly. Notifications it has not read yet queue in the
// socket; when its buffer overflows the kernel drops them, and the receiver gets a Resync
// whose Err wraps ErrOverflow. If the socket fails or cannot be opened, the receiver gets
// a Resync with the error, and the socket is re-opened with growing delays (from 100 ms
// to 5 s), each failed attempt reported the same way; once it is open again, a Resync
// with a nil Err says so, since changes in the gap are unknown.
//
// Subscribe fails only if h is closed, its namespace cannot be referenced or fs holds
// another family.
func (h *Handle) Subscribe(ctx context.Context, fs ...Family) (<-chan Change, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	s, err := h.newSubscription(receiveBuffer, fs...)
	if err != nil {
		return nil, err
	}
	s.start(ctx)
	return s.out, nil
}

// newSubscription prepares a subscription to the families fs (IPv4 when none) in h's
// namespace; start runs it.
func (h *Handle) newSubscription(rcvbuf int, fs ...Family) (*subscription, error) {
	set, err := familySet(fs)
	if err != nil {
		return nil, fmt.Errorf("subscribe to kernel changes: %w", err)
	}
	ns, err := dupNS(h.ns)
	if err != nil {
		return nil, fmt.Errorf("subscribe to kernel changes: %w", err)
	}
	s := &subscription{ns: ns, set: set, out: make(chan Change, changeBuffer), rcvbuf: rcvbuf,
		minDelay: resubscribeMin, maxDelay: resubscribeMax}
	s.open = s.openSocket
	return s, nil
}

// subscription is the state of one Subscribe call; its goroutine owns ns and the socket.
type subscription struct {
	ns                 netns.NsHandle // a reference of its own to the namespace
	set                families       // whose addresses, routes and neighbours are reported
	out                chan Change
	rcvbuf             int
	minDelay, maxDelay time.Duration
	open               func() (*nl.NetlinkSocket, error) // openSocket; replaced in tests
}

// start opens the first socket on the calling goroutine and runs the rest in another.
func (s *subscription) start(ctx context.Context) {
	sock, err := s.open()
	go s.run(ctx, sock, err)
}

// run reads from sock (nil if opening it failed with err) and re-opens it after failures,
// until ctx ends.
func (s *subscription) run(ctx context.Context, sock *nl.NetlinkSocket, err error) {
	defer close(s.out)
	defer s.ns.Close()
	delay := s.minDelay
	for {
		if sock != nil {
			err = s.read(ctx, sock)
			sock = nil
			if ctx.Err() != nil {
				return
			}
		}
		if !s.send(ctx, Change{Kind: Resync, Err: err}) || wait.Sleep(ctx, delay) != nil {
			return
		}
		delay = min(2*delay, s.maxDelay)
		if sock, err = s.open(); err == nil {
			delay = s.minDelay
			if !s.send(ctx, Change{Kind: Resync}) {
				sock.Close()
				return
			}
		}
	}
}

// read delivers sock's notifications until ctx ends (then it returns nil) or the socket
// fails. It closes sock.
func (s *subscription) read(ctx context.Context, sock *nl.NetlinkSocket) error {
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
			// The socket is still good; only the dropped notifications are lost.
			if !s.send(ctx, Change{Kind: Resync, Err: fmt.Errorf("%w: %w", ErrOverflow, err)}) {
				return nil
			}
			continue
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
			continue
		case err != nil:
			return fmt.Errorf("receive kernel change notifications: %w", err)
		}
		if from == nil || from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if c, ok := parseChange(m, s.set); ok && !s.send(ctx, c) {
				return nil
			}
		}
	}
}

func (s *subscription) send(ctx context.Context, c Change) bool {
	select {
	case s.out <- c:
		return true
	case <-ctx.Done():
		return false
	}
}

// openSocket opens a notification socket in the subscription's namespace.
func (s *subscription) openSocket() (*nl.NetlinkSocket, error) {
	groups := []uint{unix.RTNLGRP_LINK, unix.RTNLGRP_NEIGH} // neighbours of every family, FDB
	if s.set.has(unix.AF_INET) {
		groups = append(groups, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE)
	}
	if s.set.has(unix.AF_INET6) {
		groups = append(groups, unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_IPV6_ROUTE)
	}
	var sock *nl.NetlinkSocket
	err := inNamespace(s.ns, func() (err error) {
		sock, err = nl.Subscribe(unix.NETLINK_ROUTE, groups...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open netlink socket for link, %s address, route and neighbour changes: %w", s.set, err)
	}
	if s.rcvbuf > 0 && sock.SetReceiveBufferSize(s.rcvbuf, true) != nil {
		_ = sock.SetReceiveBufferSize(s.rcvbuf, false) // capped by net.core.rmem_max; fine
	}
	return sock, nil
}

// dupNS returns a new reference (file descriptor) to the namespace ns.
func dupNS(ns netns.NsHandle) (netns.NsHandle, error) {
	fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return netns.None(), fmt.Errorf("duplicate namespace reference: %w", err)
	}
	return netns.NsHandle(fd), nil
}

// inNamespace runs fn on a locked thread in the namespace ns. When the thread is already
// there (weftd's own namespace), nothing is switched, so no CAP_SYS_ADMIN is needed. If
// switching back fails, the thread stays locked and the runtime discards it.
func inNamespace(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	if orig.Equal(ns) {
		defer runtime.UnlockOSThread()
		return fn()
	}
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return from network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}
