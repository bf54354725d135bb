package hostgw

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
)

// sweepLocked deletes the host-gw routes that no admitted peer needs (staleRoute), except
// those of removed peers, which removeLocked deletes and retries. It reports whether it
// found any. Only call it once the peer set is complete (after the first Apply).
func (n *network) sweepLocked(b *kernel.Batch) (bool, error) {
	ext := n.ext.Iface.Index
	swept, err := b.SweepRoutes(ext, func(r kernel.ListedRoute) bool {
		_, leaving := n.gone[r.Dst]
		return !leaving && staleRoute(r, n.cidr, ext, n.peers)
	})
	for _, r := range swept {
		n.log.Info("Removed leftover route: no peer needs it", "subnet", r.Dst, "via", r.Gw)
	}
	if err != nil {
		n.log.Error(err, "Cannot remove leftover routes; will retry")
	}
	return len(swept) > 0, err
}

// ownedRoute reports whether r has the shape host-gw (and flanneld's host-gw) writes: a
// unicast main-table route to a subnet inside the Network (not the Network itself) via a
// gateway on the external interface, metric 0, written by a program (protocol "boot",
// netlink's and ip's default). The default route, routes outside the Network and routes
// of other daemons or with a metric are never host-gw's. It is pure.
func ownedRoute(r kernel.ListedRoute, cidr netip.Prefix, ext int) bool {
	return r.LinkIndex == ext && r.Gw.IsValid() && !r.Multipath && r.Type == unix.RTN_UNICAST &&
		r.Priority == 0 && r.Protocol == unix.RTPROT_BOOT &&
		r.Dst.Bits() > cidr.Bits() && cidr.Contains(r.Dst.Addr())
}

// staleRoute reports whether r is a host-gw route that no peer needs: every peer needs
// exactly the route to its subnet via its public IP (also while that route cannot be
// written: a route via another address would send its pods' traffic to the wrong node).
// It is pure.
func staleRoute(r kernel.ListedRoute, cidr netip.Prefix, ext int, peers map[netip.Prefix]peer) bool {
	if !ownedRoute(r, cidr, ext) {
		return false
	}
	p, ok := peers[r.Dst]
	return !ok || p.lease.Attrs.PublicIP != r.Gw || r.Onlink
}
