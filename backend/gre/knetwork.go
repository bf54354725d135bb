package gre

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// kernelNetwork is the kernel-mode data plane: one GRE device, and per peer a route via
// the peer's public IP and a neighbour entry naming that address as the link-layer
// (outer) destination.
type kernelNetwork struct {
	env     backend.Env // for OnRepair
	log     klog.Logger
	h       *kernel.Handle
	spec    deviceSpec
	ownAddr netip.Prefix // <own subnet>.0/32 on the device
	resync  time.Duration

	done      chan struct{} // closed by Close
	closeOnce sync.Once

	// mu serialises Apply and reconcile (Run): each holds it for its whole pass, so the
	// kernel is written from one of them at a time. It guards the fields below.
	mu       sync.Mutex
	devIndex int                         // the device's ifindex; changes if it is re-created
	peers    *peerSet                    // admitted peers
	failed   map[netip.Prefix]string     // peers whose entries are not in place: last error
	gone     map[netip.Prefix]netip.Addr // removed peers whose entries could not all be deleted yet
	applied  bool                        // Apply ran: entries of no known peer are stale
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

// Close stops Run. The device, its address, routes and neighbours stay.
func (n *kernelNetwork) Close() error {
	n.closeOnce.Do(func() { close(n.done) })
	return nil
}

// Run repairs drift every few seconds until ctx ends or Close is called.
func (n *kernelNetwork) Run(ctx context.Context) error {
	t := time.NewTicker(n.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.done:
			return nil
		case <-t.C:
			if _, err := n.reconcile(); err != nil {
				n.log.V(1).Info("Repair pass incomplete", "err", err)
			}
		}
	}
}

// Apply programs peer changes. See backend.Network.
func (n *kernelNetwork) Apply(ctx context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.applied = true
	var errs []error
	for _, ev := range events {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		c := n.peers.apply(ev)
		switch c.kind {
		case added, updated:
			delete(n.gone, c.subnet)
			err := n.programLocked(c.subnet, c.publicIP, c.old)
			if err == nil {
				n.log.Info(map[changeKind]string{added: "Added peer", updated: "Updated peer"}[c.kind],
					"subnet", c.subnet, "publicIP", c.publicIP, "was", c.old)
			}
			errs = append(errs, err)
		case removed:
			errs = append(errs, n.removeLocked(c.subnet, c.old))
		}
	}
	return errors.Join(errs...)
}

// programLocked writes the neighbour and the route of one peer (the neighbour first, so
// the route never points at an unresolved next hop) and drops the neighbour of its old
// address when no other peer uses it. The outcome is recorded in failed and logged on
// change.
func (n *kernelNetwork) programLocked(sn netip.Prefix, pub, old netip.Addr) error {
	err := n.h.EnsureNeigh(n.devIndex, pub, peerLLAddr(pub))
	if err == nil {
		err = n.h.EnsureRoute(peerRoute(sn, pub, n.devIndex))
	}
	if err == nil && old.IsValid() && old != pub && !n.peers.inUse(old, netip.Prefix{}) {
		err = n.h.DeleteNeigh(n.devIndex, old)
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

// removeLocked deletes the route of a removed peer and its neighbour when no other peer
// uses the address; what cannot be deleted is kept in gone and retried by Run.
func (n *kernelNetwork) removeLocked(sn netip.Prefix, pub netip.Addr) error {
	delete(n.failed, sn)
	err := n.h.DeleteRoute(sn, n.devIndex)
	if err == nil && !n.peers.inUse(pub, netip.Prefix{}) {
		err = n.h.DeleteNeigh(n.devIndex, pub)
	}
	if err != nil {
		err = fmt.Errorf("remove peer %s: %w", sn, err)
		if _, retry := n.gone[sn]; !retry {
			n.log.Error(err, "Cannot remove peer entries; will retry", "subnet", sn)
		}
		n.gone[sn] = pub
		return err
	}
	delete(n.gone, sn)
	n.log.Info("Removed peer", "subnet", sn, "publicIP", pub)
	return nil
}

// ensureDeviceLocked makes the device, its MTU, up state and address right and records its
// index.
func (n *kernelNetwork) ensureDeviceLocked() error {
	idx, err := ensureKernelDevice(n.h, n.spec, true, n.log)
	if err != nil {
		return fmt.Errorf("gre backend: %w", err)
	}
	if n.devIndex != 0 && idx != n.devIndex {
		n.log.Info("GRE device was re-created; programming all peers again", "device", n.spec.name, "index", idx)
		n.env.Repaired("device")
	}
	n.devIndex = idx
	if err := n.h.EnsureSoleAddr(idx, n.ownAddr); err != nil {
		return fmt.Errorf("gre backend: %s: %w", n.spec.name, err)
	}
	return nil
}

// reconcile brings the kernel back to the wanted state: the device and its address, the
// entries of every peer, the removal of peers whose deletion failed and, once Apply has
// run, of routes and neighbours on the device that belong to no peer. It reports whether
// it found anything to repair (the shape kernel.Watcher's Reconcile asks for). When nothing
// is wrong it only reads (a link lookup, an address dump and one dump each of routes and
// neighbours).
func (n *kernelNetwork) reconcile() (drift bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	index := n.devIndex
	if err := n.ensureDeviceLocked(); err != nil {
		n.log.Error(err, "Cannot repair the GRE device")
		return true, err
	}
	drift = index != n.devIndex
	var errs []error
	for sn, pub := range n.gone {
		drift = true
		errs = append(errs, n.removeLocked(sn, pub))
	}
	routes, err := n.h.Routes(n.devIndex)
	if err != nil {
		return drift, errors.Join(append(errs, err)...)
	}
	neighs, err := n.h.Neighs(n.devIndex)
	if err != nil {
		return drift, errors.Join(append(errs, err)...)
	}
	for sn, pub := range n.peers.peers {
		_, failed := n.failed[sn]
		if !failed && hasRoute(routes, peerRoute(sn, pub, n.devIndex)) && hasNeigh(neighs, pub) {
			continue
		}
		drift = true
		if !failed {
			n.log.Info("Repairing peer entries", "subnet", sn, "publicIP", pub)
			n.env.Repaired("peer")
		}
		errs = append(errs, n.programLocked(sn, pub, netip.Addr{}))
	}
	if n.applied {
		stale, err := n.removeStaleLocked(routes, neighs)
		drift = drift || stale
		errs = append(errs, err)
	}
	return drift, errors.Join(errs...)
}

// removeStaleLocked deletes main-table routes and permanent neighbours on the device that
// no current peer needs: left by a peer that went away while weftd was not running. It
// reports whether it found any.
func (n *kernelNetwork) removeStaleLocked(routes []netlink.Route, neighs []netlink.Neigh) (bool, error) {
	found := false
	var errs []error
	for i := range routes {
		dst, ok := ip.FromIPNet(routes[i].Dst)
		if !ok {
			continue
		}
		if _, peer := n.peers.peers[dst]; peer {
			continue
		}
		if _, pending := n.gone[dst]; pending {
			continue
		}
		found = true
		n.log.Info("Removing stale route on the GRE device", "dst", dst, "via", routes[i].Gw)
		errs = append(errs, n.h.DeleteRoute(dst, n.devIndex))
	}
	for i := range neighs {
		a, ok := netip.AddrFromSlice(neighs[i].IP)
		if !ok || neighs[i].State&netlink.NUD_PERMANENT == 0 || n.peers.inUse(a.Unmap(), netip.Prefix{}) {
			continue
		}
		found = true
		n.log.Info("Removing stale neighbour on the GRE device", "addr", a)
		errs = append(errs, n.h.DeleteNeigh(n.devIndex, a.Unmap()))
	}
	return found, errors.Join(errs...)
}

func hasRoute(have []netlink.Route, want *netlink.Route) bool {
	for i := range have {
		if kernel.RouteMatches(want, &have[i]) {
			return true
		}
	}
	return false
}

func hasNeigh(have []netlink.Neigh, pub netip.Addr) bool {
	for i := range have {
		if kernel.NeighMatches(&have[i], pub, peerLLAddr(pub)) {
			return true
		}
	}
	return false
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
