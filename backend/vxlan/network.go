package vxlan

import (
	"context"
	"errors"
	"fmt"
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

// Apply programs peer changes. See backend.Network.
func (n *network) Apply(ctx context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	// One Batch for the whole call: the tables are dumped once, when first needed, so N
	// events cost O(N) however large the tables are.
	b := n.h.NewBatch()
	var errs []error
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
		delete(n.gone, sn)
		old := n.peers[sn]
		if old != nil && old.sameLease(p) && old.failErr == "" {
			continue // nothing new; Run repairs drift
		}
		n.peers[sn] = p
		if p.vni != leaseVNI(n.spec.vni) && (old == nil || old.vni != p.vni) {
			n.log.Info("Warning: peer publishes a different VNI; its device will drop our packets", "subnet", sn, "peerVNI", p.vni, "vni", n.spec.vni)
		}
		if err := n.programPeerLocked(b, old, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// programPeerLocked makes the kernel entries for p, replacing those of old (the same subnet
// as last programmed, or nil), and records the outcome in p.
func (n *network) programPeerLocked(b *kernel.Batch, old, p *peer) error {
	err := n.ensurePeerLocked(b, old, p)
	switch {
	case old == nil:
		n.noteResultLocked(p, err, "Added peer")
	case !old.sameLease(p):
		n.noteResultLocked(p, err, "Updated peer")
	default:
		n.noteResultLocked(p, err, "")
	}
	return err
}

// noteResultLocked records the outcome of programming p and logs state changes: a new
// error, a recovery, or the given success message (none when empty).
func (n *network) noteResultLocked(p *peer, err error, success string) {
	switch {
	case err != nil:
		msg := err.Error()
		if msg != p.failErr {
			n.log.Error(err, "Cannot program peer; will retry", "subnet", p.subnet, "publicIP", p.publicIP)
		}
		p.failErr = msg
	case p.failErr != "":
		p.failErr = ""
		n.log.Info("Programmed peer after earlier failure", "subnet", p.subnet, "publicIP", p.publicIP, "vtepMAC", p.mac, "direct", p.direct)
	case success != "":
		n.log.Info(success, "subnet", p.subnet, "publicIP", p.publicIP, "vtepMAC", p.mac, "direct", p.direct)
	}
}

// ensurePeerLocked writes what p's entries lack, checked against b. With DirectRouting it
// first decides whether p is on the external interface's segment.
func (n *network) ensurePeerLocked(b *kernel.Batch, old, p *peer) error {
	if err := n.decideDirectLocked(p); err != nil {
		return err
	}
	if p.direct {
		if err := b.EnsureRoute(directRoute(p, n.extIdx)); err != nil {
			return fmt.Errorf("peer %s: %w", p.subnet, err)
		}
		// Tunnel entries of an earlier, non-direct programming are no longer used.
		return n.deleteTunnelEntriesLocked(b, p, old)
	}
	// Neighbour and FDB first, so the route never points at an unresolvable next hop.
	if err := b.EnsureNeigh(n.devIndex, p.vtepAddr(), p.mac); err != nil {
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	}
	if err := b.EnsureFDB(n.devIndex, p.mac, p.publicIP); err != nil {
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	}
	if err := b.EnsureRoute(tunnelRoute(p, n.devIndex)); err != nil {
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	}
	if old != nil && !equalMAC(old.mac, p.mac) && !n.macInUseLocked(old.mac) {
		if err := b.DeleteFDB(n.devIndex, old.mac, old.publicIP); err != nil {
			return fmt.Errorf("peer %s: old fdb entry: %w", p.subnet, err)
		}
	}
	return nil
}

// decideDirectLocked sets p.direct: with DirectRouting, whether the external interface
// reaches p's public IP without a gateway. A public IP with no route at all goes through
// the tunnel, as in flanneld; on another lookup error p keeps its previous decision.
func (n *network) decideDirectLocked(p *peer) error {
	if !n.direct {
		p.direct = false
		return nil
	}
	d, err := n.h.DirectlyConnected(p.publicIP, n.extIdx)
	switch {
	case errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH):
		p.direct = false
	case err != nil:
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	default:
		p.direct = d
	}
	return nil
}

// deleteTunnelEntriesLocked removes p's (and old's) neighbour and FDB entries.
func (n *network) deleteTunnelEntriesLocked(b *kernel.Batch, p, old *peer) error {
	var errs []error
	errs = append(errs, b.DeleteNeigh(n.devIndex, p.vtepAddr()))
	for _, q := range []*peer{p, old} {
		if q != nil && !n.macInUseByOtherLocked(q.mac, p.subnet) {
			errs = append(errs, b.DeleteFDB(n.devIndex, q.mac, q.publicIP))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("peer %s: %w", p.subnet, err)
	}
	return nil
}

// removePeerLocked deletes p's route, neighbour and FDB entries; on success p leaves gone.
func (n *network) removePeerLocked(b *kernel.Batch, p *peer) error {
	var errs []error
	errs = append(errs, b.DeleteRoute(p.subnet, n.devIndex))
	if p.direct {
		errs = append(errs, b.DeleteRoute(p.subnet, n.extIdx))
	}
	if err := n.deleteTunnelEntriesLocked(b, p, nil); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		err = fmt.Errorf("remove peer %s: %w", p.subnet, err)
		if err.Error() != p.failErr {
			n.log.Error(err, "Cannot remove peer entries; will retry", "subnet", p.subnet)
		}
		p.failErr = err.Error()
		return err
	}
	delete(n.gone, p.subnet)
	n.log.Info("Removed peer", "subnet", p.subnet, "publicIP", p.publicIP, "vtepMAC", p.mac)
	return nil
}

// macInUseLocked reports whether a known peer uses mac.
func (n *network) macInUseLocked(mac []byte) bool {
	return n.macInUseByOtherLocked(mac, netip.Prefix{})
}

func (n *network) macInUseByOtherLocked(mac []byte, except netip.Prefix) bool {
	for sn, q := range n.peers {
		if sn != except && !q.direct && equalMAC(q.mac, mac) {
			return true
		}
	}
	return false
}

// ensureDeviceLocked makes the device, its MAC, MTU, up state, checksum setting and
// address right, and records its index. It reports what it had to correct, by repair
// kind ("device", "address").
func (n *network) ensureDeviceLocked() ([]string, error) {
	var fixed []string
	idx, changed, err := ensureDevice(n.h, n.spec, true, n.log)
	if changed {
		fixed = append(fixed, "device")
	}
	if err != nil {
		return fixed, fmt.Errorf("vxlan: %w", err)
	}
	n.devIndex = idx
	n.devIdx.Store(int64(idx))
	addrs, err := n.h.Addrs(idx)
	if err != nil {
		return fixed, fmt.Errorf("vxlan: %s: %w", n.spec.name, err)
	}
	if len(addrs) == 1 {
		if have, ok := ip.FromIPNet(addrs[0].IPNet); ok && have == n.ownAddr {
			return fixed, nil
		}
	}
	fixed = append(fixed, "address")
	if err := n.h.EnsureSoleAddr(idx, n.ownAddr); err != nil {
		return fixed, fmt.Errorf("vxlan: %s: %w", n.spec.name, err)
	}
	return fixed, nil
}

// reconcile brings the kernel back to the wanted state: the device and its address, the
// entries of every known peer, and the removal of peers whose deletion failed. Each
// repair of state someone else changed is logged and counted by kind; retrying a peer
// that failed before is not a repair. It reports whether it found such drift, and an
// error while something is not in place. When nothing is wrong it only reads (one link
// lookup, one dump each of addresses, routes, neighbours and FDB entries, and a route
// lookup per peer with DirectRouting), so a pass costs O(peers). Run calls it on kernel
// changes and periodically.
func (n *network) reconcile() (drift bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fixed, err := n.ensureDeviceLocked()
	for _, kind := range fixed {
		drift = true
		n.log.Info("Repaired VXLAN device changed or deleted by someone else", "device", n.spec.name, "repair", kind)
		n.env.Repaired(kind)
	}
	if err != nil {
		n.log.Error(err, "Cannot repair the VXLAN device")
		return drift, err
	}
	b := n.h.NewBatch()
	var errs []error
	for _, p := range n.gone {
		if err := n.removePeerLocked(b, p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range n.peers {
		wasDirect := p.direct
		if err := n.decideDirectLocked(p); err != nil {
			errs = append(errs, err)
			continue
		}
		missing, err := n.missingLocked(b, p)
		if err != nil {
			return drift, errors.Join(append(errs, err)...) // the tables cannot be read
		}
		if p.failErr == "" && p.direct == wasDirect && len(missing) == 0 {
			continue
		}
		repair := p.failErr == "" && p.direct == wasDirect
		if repair {
			drift = true
			n.log.Info("Repairing peer entries changed or deleted by someone else", "subnet", p.subnet,
				"publicIP", p.publicIP, "direct", p.direct, "missing", missing)
		}
		var old *peer
		if wasDirect != p.direct {
			old = &peer{subnet: p.subnet, publicIP: p.publicIP, mac: p.mac, vni: p.vni, direct: wasDirect}
		}
		if err := n.ensurePeerLocked(b, old, p); err != nil {
			errs = append(errs, err)
			n.noteResultLocked(p, err, "")
			continue
		}
		if wasDirect && !p.direct {
			if err := b.DeleteRoute(p.subnet, n.extIdx); err != nil {
				errs = append(errs, err)
			}
		}
		if repair {
			for _, kind := range missing {
				n.env.Repaired(kind)
			}
		}
		n.noteResultLocked(p, nil, "")
	}
	return drift, errors.Join(errs...)
}

// missingLocked lists the kinds of entries ("route", "neighbour", "fdb") that p needs and
// b's tables lack; none when p is in place. It does not look for leftovers (a stale FDB
// remote for the same MAC); EnsureFDB cleans those when anything else needs fixing.
func (n *network) missingLocked(b *kernel.Batch, p *peer) ([]string, error) {
	var m []string
	want := tunnelRoute(p, n.devIndex)
	if p.direct {
		want = directRoute(p, n.extIdx)
	}
	if ok, err := b.HasRoute(want); err != nil {
		return nil, err
	} else if !ok {
		m = append(m, "route")
	}
	if p.direct {
		return m, nil
	}
	if ok, err := b.HasNeigh(n.devIndex, p.vtepAddr(), p.mac); err != nil {
		return nil, err
	} else if !ok {
		m = append(m, "neighbour")
	}
	if ok, err := b.HasFDB(n.devIndex, p.mac, p.publicIP); err != nil {
		return nil, err
	} else if !ok {
		m = append(m, "fdb")
	}
	return m, nil
}

func equalMAC(a, b []byte) bool { return string(a) == string(b) }

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
