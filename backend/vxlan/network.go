package vxlan

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/pkg/wait"
	"github.com/weftnet/weft/subnet"
)

// network is the active vxlan data plane for one own lease: one family per address
// family the network runs (IPv4 first), each with its own device and peer entries.
type network struct {
	env    backend.Env // for OnRepair
	log    klog.Logger
	h      *kernel.Handle
	extIdx int // external interface index
	resync time.Duration
	fams   []*family // fixed after Activate; their mutable fields are guarded by mu

	done      chan struct{} // closed by Close
	closeOnce sync.Once

	// mu serialises Apply and reconcile (Run): each holds it for its whole pass, so the
	// kernel is only ever written from one of them at a time. It guards the fields below
	// and the families' peer state.
	mu      sync.Mutex
	applied bool // Apply ran: the peer set is complete, leftovers can be swept
}

var _ backend.Network = (*network)(nil)

// MTU is the pod MTU: the smallest of the families' device MTUs (the underlay MTU minus
// the 50-byte VXLAN overhead over IPv4, 70 over IPv6).
func (n *network) MTU() int {
	mtu := 0
	for _, f := range n.fams {
		if mtu == 0 || f.spec.mtu < mtu {
			mtu = f.spec.mtu
		}
	}
	return mtu
}

// Close stops Run. Devices, routes, neighbours and FDB entries stay.
func (n *network) Close() error {
	n.closeOnce.Do(func() { close(n.done) })
	return nil
}

// Run keeps the device and every peer's entries in place until ctx ends or Close is
// called: whatever someone else deletes or changes is put back as soon as the kernel
// reports it (within a few tens of milliseconds), and every resync period everything is
// checked anyway. A check that finds everything in place writes nothing.
func (n *network) Run(ctx context.Context) error {
	ctx, cancel := wait.UntilClosed(ctx, n.done)
	defer cancel()
	changes, err := n.h.Subscribe(ctx, n.families()...)
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

// relevant reports whether a kernel change may concern a device or a peer's entries:
// anything on a device (found by name too, as it may have been re-created), a main-table
// route inside a family's network, and, for DirectRouting, routes, links and addresses of
// the external interface. Neighbour churn elsewhere (ARP and NDP on the underlay) is not.
func (n *network) relevant(c kernel.Change) bool {
	for _, f := range n.fams {
		if f.relevant(c, n.extIdx) {
			return true
		}
	}
	return false
}

func (f *family) relevant(c kernel.Change, extIdx int) bool {
	dev := int(f.devIdx.Load())
	onExt := c.LinkIndex == extIdx && f.direct
	switch c.Kind {
	case kernel.LinkChange:
		return c.LinkIndex == dev || c.LinkName == f.spec.name || onExt
	case kernel.AddrChange:
		return c.LinkIndex == dev || onExt
	case kernel.RouteChange:
		return c.Table == unix.RT_TABLE_MAIN && (c.LinkIndex == dev || onExt || ip.Contains(f.cidr, c.Prefix))
	case kernel.NeighChange, kernel.FDBChange:
		return c.LinkIndex == dev
	}
	return false
}

// Apply programs peer changes. See backend.Network. The first call (the complete initial
// peer list) also sweeps leftovers (sweepLocked), and so does a call in which a peer that
// moved cannot be programmed, so that no entry points at its old address.
func (n *network) Apply(ctx context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	// One batch per family for the whole call: the tables are dumped once, when first
	// needed, so N events cost O(N) however large the tables are.
	var errs []error
	for _, f := range n.fams {
		b := f.newTables(n.h)
		sw, err := n.applyLocked(ctx, f, b, events)
		if err != nil {
			errs = append(errs, err)
		}
		if sw || !n.applied {
			if _, err := n.sweepLocked(f, b); err != nil {
				errs = append(errs, err)
			}
		}
	}
	n.applied = true
	return errors.Join(errs...)
}

// applyLocked applies the events to family f: each lease's subnet of that family (none:
// nothing to do for f) is added, updated or removed. It reports whether a leftover sweep
// is due (a peer that moved could not be programmed).
func (n *network) applyLocked(ctx context.Context, f *family, b *kernel.Batch, events []subnet.Event) (sweep bool, _ error) {
	var errs []error
	for _, ev := range events {
		if err := ctx.Err(); err != nil {
			return sweep, errors.Join(append(errs, err)...)
		}
		sn := f.subnetOf(ev.Lease)
		if !sn.IsValid() {
			continue
		}
		if ev.Type == subnet.Removed {
			if p, ok := f.peers[sn]; ok {
				delete(f.peers, sn)
				f.gone[sn] = p
				if err := n.removePeerLocked(f, b, p); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		p, err := peerFromLease(f, ev.Lease)
		if err != nil { // admission ran the same parse (checkPeerData): not a peer
			n.log.Error(err, "Skipping a peer lease that admission should have refused", "subnet", sn, "key", ev.Lease.Key())
			errs = append(errs, err)
			continue
		}
		old := f.peers[sn]
		if g, leaving := f.gone[sn]; leaving {
			if old == nil && !g.sameLease(p) {
				old = g // its entries are replaced, or swept
			}
			delete(f.gone, sn)
		}
		if old != nil && old.sameLease(p) && old.failErr == "" {
			continue // nothing new; Run repairs drift
		}
		f.peers[sn] = p
		if p.vni != leaseVNI(f.spec.vni) && (old == nil || old.vni != p.vni) {
			n.log.Info("Warning: peer publishes a different VNI; its device will drop our packets", "subnet", sn, "peerVNI", p.vni, "vni", f.spec.vni)
		}
		if err := n.programPeerLocked(f, b, old, p); err != nil {
			errs = append(errs, err)
			sweep = sweep || (old != nil && old.publicIP != p.publicIP)
		}
	}
	return sweep, errors.Join(errs...)
}

var _ backend.Tunnel = (*network)(nil)

// TunnelPort is the UDP port VXLAN packets from peers arrive on (the same for both
// families).
func (n *network) TunnelPort() (string, int) { return "udp", n.fams[0].spec.port }

var _ backend.Describer = (*network)(nil)

// Describe reports the devices and each peer's state, by the peer's subnet of each
// family (a dual-stack peer appears under both).
func (n *network) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	first := n.fams[0]
	d := backend.Description{
		Device: first.spec.name,
		Info: map[string]string{
			"vni": strconv.Itoa(first.spec.vni), "port": strconv.Itoa(first.spec.port),
			"directRouting": strconv.FormatBool(first.direct),
		},
		Peers: map[netip.Prefix]backend.PeerStatus{},
	}
	for _, f := range n.fams {
		if f.v6 {
			d.Info["deviceV6"] = f.spec.name
			d.Info["vtepMACv6"] = f.spec.mac.String()
		} else {
			d.Info["vtepMAC"] = f.spec.mac.String()
		}
		for sn, p := range f.peers {
			switch {
			case p.failErr != "":
				d.Peers[sn] = backend.PeerStatus{State: backend.PeerError, Reason: p.failErr}
			case p.direct:
				d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed, Reason: "direct route"}
			default:
				d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
			}
		}
	}
	return d
}
