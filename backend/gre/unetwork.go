package gre

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/subnet"
)

// userNetwork is the userspace-mode data plane: the TUN (with its IPv6 address and route
// when the network carries IPv6) and a raw GRE socket, kept by a tundev.Plane, with the
// peer table built from the leases.
type userNetwork struct {
	log    klog.Logger
	plane  *tundev.Plane
	addr6  netip.Prefix // the TUN's IPv6 address, for Describe; invalid when the node carries no IPv6
	local  netip.Addr   // the raw socket's address
	reason string       // why userspace mode was chosen, for Describe

	mu    sync.Mutex  // guards peers
	peers *leasePeers // admitted peers by lease key; the Forwarder holds the table
}

var (
	_ backend.Network        = (*userNetwork)(nil)
	_ backend.Tunnel         = (*userNetwork)(nil)
	_ backend.Describer      = (*userNetwork)(nil)
	_ backend.PacketCounter  = (*userNetwork)(nil)
	_ fastpath.StatsReporter = (*userNetwork)(nil)
)

// MTU is the TUN (and pod) MTU.
func (n *userNetwork) MTU() int { return n.plane.MTU() }

// TunnelPort: GRE is IP protocol 47 and has no port.
func (n *userNetwork) TunnelPort() (string, int) { return "gre", 0 }

// Stats returns the forwarding counters.
func (n *userNetwork) Stats() fastpath.Stats { return n.plane.Forwarder().Stats() }

// PacketStats returns the counters in the daemon's backend-neutral form.
func (n *userNetwork) PacketStats() backend.PacketStats { return n.plane.Forwarder().Stats().Export() }

// Apply folds peer events into the peer set and swaps the Forwarder's table once per
// call.
func (n *userNetwork) Apply(_ context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	dirty := false
	for _, e := range events {
		c := n.peers.apply(e)
		if c.unreachable6.IsValid() {
			n.log.Info("Peer's IPv6 subnet not carried: its lease has no IPv4 public IP, and gre carries IPv6 over the IPv4 underlay",
				"lease", c.key, "ipv6Subnet", c.unreachable6)
		}
		switch c.kind {
		case added:
			n.log.Info("Added peer", "lease", c.key, "subnet", c.now.subnet, "ipv6Subnet", c.now.subnet6, "publicIP", c.now.pub)
		case updated:
			n.log.Info("Updated peer", "lease", c.key, "subnet", c.now.subnet, "ipv6Subnet", c.now.subnet6, "publicIP", c.now.pub, "was", c.old.pub)
		case removed:
			n.log.Info("Removed peer", "lease", c.key, "publicIP", c.old.pub)
		}
		dirty = dirty || c.kind != unchanged
	}
	if !dirty {
		return nil
	}
	t, err := n.peers.table()
	if err != nil {
		// Admission rejects overlaps, so this is a bug; keep the old table.
		return fmt.Errorf("gre backend: build peer table: %w", err)
	}
	n.plane.Forwarder().SetPeers(t)
	return nil
}

// Run forwards packets and keeps the TUN's link state, addresses and routes of both
// families in place until ctx ends or Close is called (tundev.Plane.Run). It returns an
// error only when forwarding fails for good.
func (n *userNetwork) Run(ctx context.Context) error { return n.plane.Run(ctx) }

// Close stops forwarding and releases the TUN queue, the socket and the netlink handle.
// The TUN, its addresses and its routes stay, so a restarted weftd adopts them.
// Idempotent.
func (n *userNetwork) Close() error { return n.plane.Close() }

// Describe reports the TUN, the mode and the peers in the forwarding table.
func (n *userNetwork) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := backend.Description{
		Device: TUNName,
		Info:   map[string]string{"mode": string(ModeUserspace), "local": n.local.String(), "offloads": n.plane.Forwarder().Offloads()},
		Peers:  map[netip.Prefix]backend.PeerStatus{},
	}
	if n.reason != "" {
		d.Info["userspaceReason"] = n.reason
	}
	if n.addr6.IsValid() {
		d.Info["ipv6Address"] = n.addr6.String()
	}
	for _, p := range n.peers.peers {
		for _, sn := range []netip.Prefix{p.subnet, p.subnet6} {
			if sn.IsValid() {
				d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
			}
		}
	}
	return d
}
