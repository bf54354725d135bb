package udp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/subnet"
)

// resyncPeriod is how often flannel0 is checked without being told of a change (flanneld
// never does).
const resyncPeriod = 30 * time.Second

// udpNetwork is the active udp data plane: flannel0 and the UDP socket, kept by a
// tundev.Plane, and the peer table built from the leases.
type udpNetwork struct {
	log    klog.Logger
	plane  *tundev.Plane
	listen netip.AddrPort

	mu    sync.Mutex // guards peers
	peers *peerSet   // the admitted peer leases; the Forwarder holds their table
}

var (
	_ backend.Network        = (*udpNetwork)(nil)
	_ fastpath.StatsReporter = (*udpNetwork)(nil)
	_ backend.PacketCounter  = (*udpNetwork)(nil)
	_ backend.Describer      = (*udpNetwork)(nil)
)

// MTU is flannel0's MTU: the external interface's minus 28.
func (n *udpNetwork) MTU() int { return n.plane.MTU() }

// Stats returns the forwarding counters.
func (n *udpNetwork) Stats() fastpath.Stats { return n.plane.Forwarder().Stats() }

// PacketStats returns the counters in the daemon's backend-neutral form.
func (n *udpNetwork) PacketStats() backend.PacketStats { return n.plane.Forwarder().Stats().Export() }

// Apply folds peer events (admitted peers, see backend.Network) into the peer set and
// swaps the Forwarder's table once per call.
func (n *udpNetwork) Apply(_ context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	dirty := false
	for _, e := range events {
		c := n.peers.apply(e)
		sn, pub := c.lease.Subnet, c.lease.Attrs.PublicIP
		switch c.kind {
		case added:
			n.log.Info("Peer added", "subnet", sn, "publicIP", pub)
		case updated:
			n.log.Info("Peer changed", "subnet", sn, "publicIP", pub)
		case removed:
			n.log.Info("Peer removed", "subnet", sn, "publicIP", pub)
		}
		if c.foreign {
			n.log.Info("Peer lease names another backend; accepted as flanneld's udp backend does, but that node may not speak udp",
				"subnet", sn, "publicIP", pub, "peerBackend", c.lease.Attrs.BackendType)
		}
		dirty = dirty || c.kind != unchanged
	}
	if dirty {
		t, err := n.peers.table()
		if err != nil {
			// Admitted peers do not overlap, so this is a bug; keep the old table.
			return fmt.Errorf("udp backend: build peer table: %w", err)
		}
		n.plane.Forwarder().SetPeers(t)
	}
	return nil
}

// Run forwards packets and keeps flannel0's link state, address and route in place until
// ctx ends or Close is called (tundev.Plane.Run). It returns an error only when
// forwarding fails for good.
func (n *udpNetwork) Run(ctx context.Context) error { return n.plane.Run(ctx) }

// Close stops forwarding and releases the TUN queue, the socket and the netlink handle.
// flannel0 goes away with its queue, and its address and route with it (see the package
// comment): unlike the other backends' kernel state, it does not outlive the process, as
// flanneld's does not. Idempotent.
func (n *udpNetwork) Close() error { return n.plane.Close() }

// Describe reports the TUN device and the peers in the forwarding table.
func (n *udpNetwork) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := backend.Description{
		Device: DeviceName,
		Info:   map[string]string{"listen": n.listen.String(), "offloads": n.plane.Forwarder().Offloads()},
		Peers:  map[netip.Prefix]backend.PeerStatus{},
	}
	for sn := range n.peers.leases {
		d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
	}
	return d
}
