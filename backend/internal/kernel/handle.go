package kernel

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNotApplied: a write was accepted by the kernel, but reading back does not show the
// wanted state (something else changed it at once, or the request cannot express it).
var ErrNotApplied = errors.New("kernel state differs from the requested state after writing it")

// socketTimeout bounds every netlink exchange, so a lost reply cannot hang a caller.
const socketTimeout = 10 * time.Second

// Handle is a set of sockets (two rtnetlink, one AF_INET datagram socket for ioctls) bound to
// one network namespace, and a reference to that namespace for Subscribe. Create it with
// Open. Its methods are safe for concurrent use, except Close, which must not overlap any
// other call; after Close every method fails.
type Handle struct {
	nl      *netlink.Handle
	dumps   *dumpSocket    // rtnetlink socket for a Batch's dumps, parsed in place
	ioctlFD int            // AF_INET/SOCK_DGRAM socket for SIOCETHTOOL
	ns      netns.NsHandle // the namespace the sockets were opened in, for Subscribe
	closed  atomic.Bool    // set by Close
}

// ErrClosed is returned by every method of a closed Handle. (A closed netlink.Handle would
// silently fall back to the calling thread's namespace; this package never lets it.)
var ErrClosed = errors.New("kernel handle is closed")

func (h *Handle) check() error {
	if h.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Open returns a Handle bound to the network namespace of the calling thread. In tests call
// it inside nsutil.Do; weftd calls it in its own namespace.
func Open() (*Handle, error) {
	// The sockets and the namespace reference must come from one thread's namespace.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open current network namespace: %w", err)
	}
	h, err := openSockets()
	if err != nil {
		ns.Close()
		return nil, err
	}
	h.ns = ns
	return h, nil
}

func openSockets() (*Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	if err := h.SetSocketTimeout(socketTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("set rtnetlink socket timeout: %w", err)
	}
	dumps, err := openDumpSocket()
	if err != nil {
		h.Close()
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		dumps.close()
		h.Close()
		return nil, fmt.Errorf("open ioctl socket: %w", err)
	}
	return &Handle{nl: h, dumps: dumps, ioctlFD: fd}, nil
}

// Netlink returns the underlying netlink handle (same namespace) for operations this
// package does not wrap, such as LinkByName or LinkAdd. Do not Close it, and do not use it
// after the Handle is closed: a closed netlink.Handle acts in the calling thread's
// namespace.
func (h *Handle) Netlink() *netlink.Handle { return h.nl }

// Close releases the sockets. Kernel state is left as it is.
func (h *Handle) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	h.nl.Close()
	h.ns.Close()
	h.dumps.close()
	return unix.Close(h.ioctlFD)
}

// dumpAttempts bounds RetryDump.
const dumpAttempts = 8

// RetryDump runs a netlink dump until it completes without the kernel marking it
// interrupted (NLM_F_DUMP_INTR, netlink.ErrDumpInterrupted), at most a few times. The
// error after the last attempt still wraps netlink.ErrDumpInterrupted.
func RetryDump[T any](dump func() (T, error)) (T, error) {
	var (
		res T
		err error
	)
	for i := 0; i < dumpAttempts; i++ {
		res, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return res, err
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond)
	}
	var zero T
	return zero, fmt.Errorf("netlink dump still interrupted after %d attempts: %w", dumpAttempts, err)
}

// isGone reports whether a delete failed only because the object was already absent.
func isGone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EADDRNOTAVAIL)
}

// isExist reports whether a create failed because the object is already there.
func isExist(err error) bool { return errors.Is(err, unix.EEXIST) }
