package gre

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/pkg/wait"
	"github.com/weftnet/weft/subnet"
)

// kernelResync is how often the kernel-mode Run checks everything without being told of a
// change (kernel.Watcher's safety net).
const kernelResync = kernel.DefaultPeriod

// kernelNetwork is the kernel-mode data plane: one GRE device, and per peer a route via
// the peer's public IP and a neighbour entry naming that address as the link-layer
// (outer) destination. Apply and reconcile each program through one kernel.Batch; Run
// heals through a kernel.Watcher.
type kernelNetwork struct {
	env     backend.Env // for OnRepair
	log     klog.Logger
	h       *kernel.Handle
	spec    deviceSpec
	cidr    netip.Prefix // the Network, which holds every peer subnet
	ownAddr netip.Prefix // <own subnet>.0/32 on the device
	resync  time.Duration

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	devIdx    atomic.Int64 // devIndex, also readable without mu (by relevant)

	// mu serialises Apply, reconcile (Run) and Close: each holds it for its whole pass, so
	// the kernel is written from one of them at a time and the handle is never closed
	// under a pass. It guards the fields below.
	mu       sync.Mutex
	devIndex int                       // the device's ifindex; changes if it is re-created
	peers    *peerSet                  // admitted peers
	failed   map[netip.Prefix]string   // peers whose entries are not in place: last error
	gone     map[netip.Prefix]*leaving // removed peers whose entries are not all deleted yet
	applied  bool                      // Apply ran: the peer set is complete, leftovers can be swept
	closed   bool
}

var (
	_ backend.Network   = (*kernelNetwork)(nil)
	_ backend.Tunnel    = (*kernelNetwork)(nil)
	_ backend.Describer = (*kernelNetwork)(nil)
)

// peerRoute is "<subnet> via <public IP> dev weft.gre onlink". On a point-to-multipoint
// GRE device the next hop is the tunnel's outer destination.
func peerRoute(sn netip.Prefix, pub netip.Addr, devIndex int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: devIndex,
		Dst:       ip.IPNet(sn),
		Gw:        net.IP(pub.AsSlice()),
		Flags:     unix.RTNH_F_ONLINK,
	}
}

// peerLLAddr is the link-layer address of a peer on the GRE device: its public IPv4
// address. Linux gives neighbours on a NOARP GRE device the device's own address (the
// local address) unless told otherwise, and the GRE header code puts the neighbour's
// address into the outer destination; a permanent entry "<public IP> lladdr <public IP>"
// makes the outer destination the peer, whatever the kernel version does by default.
func peerLLAddr(pub netip.Addr) net.HardwareAddr { return net.HardwareAddr(pub.AsSlice()) }

// MTU is the device (and pod) MTU.
func (n *kernelNetwork) MTU() int { return n.spec.mtu }

// TunnelPort: GRE is IP protocol 47 and has no port.
func (n *kernelNetwork) TunnelPort() (string, int) { return "gre", 0 }

// Close stops Run and releases the netlink sockets. The device, its address, routes and
// neighbours stay. Idempotent.
func (n *kernelNetwork) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.done)
		n.mu.Lock()
		defer n.mu.Unlock()
		n.closed = true
		err = n.h.Close()
	})
	return err
}

// Run keeps the device and every peer's entries in place until ctx ends or Close is
// called: what someone else deletes or changes is put back as soon as the kernel reports
// it, and every resync period everything is checked anyway. A check that finds everything
// in place writes nothing.
func (n *kernelNetwork) Run(ctx context.Context) error {
	ctx, cancel := wait.UntilClosed(ctx, n.done)
	defer cancel()
	changes, err := n.h.Subscribe(ctx)
	if err != nil {
		if errors.Is(err, kernel.ErrClosed) {
			return nil
		}
		n.log.Error(err, "Cannot watch kernel changes; checking the data plane every period only", "period", n.resync)
	}
	w := kernel.Watcher{Relevant: n.relevant, Reconcile: n.reconcile, Period: n.resync, Log: n.log}
	w.Run(ctx, changes)
	return nil
}

// relevant reports whether a kernel change may concern the device or a peer's entries:
// anything on the device (found by name too, as it may have been re-created) and a
// main-table route inside the Network (a peer route moved to another device).
func (n *kernelNetwork) relevant(c kernel.Change) bool {
	dev := int(n.devIdx.Load())
	switch c.Kind {
	case kernel.LinkChange:
		return c.LinkIndex == dev || c.LinkName == n.spec.name
	case kernel.AddrChange, kernel.NeighChange:
		return c.LinkIndex == dev
	case kernel.RouteChange:
		return c.Table == unix.RT_TABLE_MAIN && (c.LinkIndex == dev || ip.Contains(n.cidr, c.Prefix))
	}
	return false
}

// Apply programs peer changes through one Batch. See backend.Network. The first Apply
// (the complete initial peer set) also sweeps the device's leftovers: entries of peers
// that left while weftd was not running.
func (n *kernelNetwork) Apply(ctx context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return kernel.ErrClosed
	}
	b := n.h.NewBatch()
	var errs []error
	for _, ev := range events {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		c := n.peers.apply(ev)
		switch c.kind {
		case added, updated:
			delete(n.gone, c.subnet)
			err := n.programLocked(b, c.subnet, c.publicIP, c.old)
			if err == nil {
				n.log.Info(map[changeKind]string{added: "Added peer", updated: "Updated peer"}[c.kind],
					"subnet", c.subnet, "publicIP", c.publicIP, "was", c.old)
			}
			errs = append(errs, err)
		case removed:
			l := &leaving{pub: c.old}
			n.gone[c.subnet] = l
			errs = append(errs, n.removeLocked(b, c.subnet, l))
		}
	}
	if !n.applied {
		n.applied = true
		_, err := n.sweepLocked(b)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// programLocked writes the neighbour and the route of one peer (the neighbour first, so
// the route never points at an unresolved next hop) and drops the neighbour of its old
// address when no other peer uses it. The outcome is recorded in failed and logged on
// change.
func (n *kernelNetwork) programLocked(b *kernel.Batch, sn netip.Prefix, pub, old netip.Addr) error {
	err := b.EnsureNeigh(n.devIndex, pub, peerLLAddr(pub))
	if err == nil {
		err = b.EnsureRoute(peerRoute(sn, pub, n.devIndex))
	}
	if err == nil && old.IsValid() && old != pub && !n.peers.inUse(old, netip.Prefix{}) {
		err = b.DeleteNeigh(n.devIndex, old)
	}
	if err != nil {
		err = fmt.Errorf("peer %s: %w", sn, err)
		if n.failed[sn] != err.Error() {
			n.log.Error(err, "Cannot program peer; will retry", "subnet", sn, "publicIP", pub)
		}
		n.failed[sn] = err.Error()
		return err
	}
	if _, was := n.failed[sn]; was {
		delete(n.failed, sn)
		n.log.Info("Programmed peer after earlier failure", "subnet", sn, "publicIP", pub)
	}
	return nil
}

// leaving is a removed peer whose entries are not all deleted yet.
type leaving struct {
	pub netip.Addr
	err string // the last delete error, "" before the first try
}

// removeLocked deletes the route of a removed peer (recorded in gone) and its neighbour
// when no other peer uses the address. Only when that worked does the peer leave gone;
// otherwise Run retries.
func (n *kernelNetwork) removeLocked(b *kernel.Batch, sn netip.Prefix, l *leaving) error {
	delete(n.failed, sn)
	err := b.DeleteRoute(sn, n.devIndex)
	if err == nil && !n.peers.inUse(l.pub, netip.Prefix{}) {
		err = b.DeleteNeigh(n.devIndex, l.pub)
	}
	if err != nil {
		err = fmt.Errorf("remove peer %s: %w", sn, err)
		if l.err != err.Error() {
			n.log.Error(err, "Cannot remove peer entries; will retry", "subnet", sn)
		}
		l.err = err.Error()
		return err
	}
	delete(n.gone, sn)
	n.log.Info("Removed peer", "subnet", sn, "publicIP", l.pub)
	return nil
}

// Describe reports the device, the mode and each peer's state.
func (n *kernelNetwork) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := backend.Description{
		Device: n.spec.name,
		Info:   map[string]string{"mode": string(ModeKernel), "local": n.spec.local.String()},
		Peers:  map[netip.Prefix]backend.PeerStatus{},
	}
	for sn := range n.peers.peers {
		if msg, failed := n.failed[sn]; failed {
			d.Peers[sn] = backend.PeerStatus{State: backend.PeerError, Reason: msg}
		} else {
			d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
		}
	}
	return d
}
