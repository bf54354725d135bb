package vxlan

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// network is the active vxlan data plane for one own lease.
type network struct {
	env     backend.Env // for OnRepair
	log     klog.Logger
	h       *kernel.Handle
	spec    deviceSpec
	extIdx  int          // external interface index
	direct  bool         // DirectRouting
	cidr    netip.Prefix // the Network, which holds every peer subnet
	ownAddr netip.Prefix // <own subnet>.0/32 on the device
	resync  time.Duration

	done      chan struct{} // closed by Close
	closeOnce sync.Once

	// mu serialises Apply and reconcile (Run): each holds it for its whole pass, so the
	// kernel is only ever written from one of them at a time. It guards the fields below.
	mu       sync.Mutex
	devIndex int                    // current ifindex of flannel.<VNI>; changes if re-created
	devIdx   atomic.Int64           // devIndex, also readable without mu (by relevant)
	peers    map[netip.Prefix]*peer // admitted peers by subnet
	gone     map[netip.Prefix]*peer // removed peers whose entries could not all be deleted yet
	applied  bool                   // Apply ran: the peer set is complete, leftovers can be swept
}

var _ backend.Network = (*network)(nil)

// MTU is the pod MTU: the underlay MTU minus the 50-byte VXLAN overhead.
func (n *network) MTU() int { return n.spec.mtu }

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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
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
// anything on the device (found by name too, as it may have been re-created), a
// main-table route inside the Network, and, for DirectRouting, routes, links and
// addresses of the external interface. Neighbour churn elsewhere (ARP on the underlay)
// is not.
func (n *network) relevant(c kernel.Change) bool {
	dev := int(n.devIdx.Load())
	onExt := c.LinkIndex == n.extIdx && n.direct
	switch c.Kind {
	case kernel.LinkChange:
		return c.LinkIndex == dev || c.LinkName == n.spec.name || onExt
	case kernel.AddrChange:
		return c.LinkIndex == dev || onExt
	case kernel.RouteChange:
		return c.Table == unix.RT_TABLE_MAIN && (c.LinkIndex == dev || onExt || ip.Contains(n.cidr, c.Prefix))
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
	// One Batch for the whole call: the tables are dumped once, when first needed, so N
	// events cost O(N) however large the tables are.
	b := n.h.NewBatch()
	var errs []error
	sweep := !n.applied
	for _, ev := range events {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		sn := ev.Lease.Subnet.Masked()
		if ev.Type == subnet.Removed {
			if p, ok := n.peers[sn]; ok {
				delete(n.peers, sn)
				n.gone[sn] = p
				if err := n.removePeerLocked(b, p); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		p, err := peerFromLease(ev.Lease)
		if err != nil { // admission ran the same parse (checkPeerData): not a peer
			n.log.Error(err, "Skipping a peer lease that admission should have refused", "subnet", sn)
			errs = append(errs, err)
			continue
		}
		old := n.peers[sn]
		if g, leaving := n.gone[sn]; leaving {
			if old == nil && !g.sameLease(p) {
				old = g // its entries are replaced, or swept
			}
			delete(n.gone, sn)
		}
		if old != nil && old.sameLease(p) && old.failErr == "" {
			continue // nothing new; Run repairs drift
		}
		n.peers[sn] = p
		if p.vni != leaseVNI(n.spec.vni) && (old == nil || old.vni != p.vni) {
			n.log.Info("Warning: peer publishes a different VNI; its device will drop our packets", "subnet", sn, "peerVNI", p.vni, "vni", n.spec.vni)
		}
		if err := n.programPeerLocked(b, old, p); err != nil {
			errs = append(errs, err)
			sweep = sweep || (old != nil && old.publicIP != p.publicIP)
		}
	}
	n.applied = true
	if sweep {
		if _, err := n.sweepLocked(b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var _ backend.Tunnel = (*network)(nil)

// TunnelPort is the UDP port VXLAN packets from peers arrive on.
func (n *network) TunnelPort() (string, int) { return "udp", n.spec.port }

var _ backend.Describer = (*network)(nil)

// Describe reports the device and each peer's state.
func (n *network) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := backend.Description{
		Device: n.spec.name,
		Info: map[string]string{
			"vtepMAC": n.spec.mac.String(), "vni": strconv.Itoa(n.spec.vni), "port": strconv.Itoa(n.spec.port),
			"directRouting": strconv.FormatBool(n.direct),
		},
		Peers: map[netip.Prefix]backend.PeerStatus{},
	}
	for sn, p := range n.peers {
		switch {
		case p.failErr != "":
			d.Peers[sn] = backend.PeerStatus{State: backend.PeerError, Reason: p.failErr}
		case p.direct:
			d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed, Reason: "direct route"}
		default:
			d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
		}
	}
	return d
}
