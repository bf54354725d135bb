package hostgw

import (
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
)

// sweepLocked deletes the host-gw routes of each family the network runs that no
// admitted peer needs (staleRoute), except those of removed peers, which removeLocked
// deletes and retries. It reports whether it found any. Only call it once the peer set is
// complete (after the first Apply).
func (n *network) sweepLocked(p *pass) (bool, error) {
	ext := n.ext.Iface.Index
	var swept []kernel.ListedRoute
	var errs []error
	sweep := func(t *kernel.Batch, cidr netip.Prefix) {
		s, err := t.SweepRoutes(ext, func(r kernel.ListedRoute) bool {
			_, leaving := n.gone[r.Dst]
			return !leaving && staleRoute(r, cidr, ext, n.routes)
		})
		swept = append(swept, s...)
		errs = append(errs, err)
	}
	if n.v4 {
		sweep(p.v4, n.cidr)
	}
	if n.v6 {
		sweep(p.v6, n.cidr6)
	}
	for _, r := range swept {
		n.log.Info("Removed leftover route: no peer needs it", "subnet", r.Dst, "via", r.Gw)
	}
	err := errors.Join(errs...)
	if err != nil {
		n.log.Error(err, "Cannot remove leftover routes; will retry")
	}
	return len(swept) > 0, err
}

// ownedRoute reports whether r has the shape host-gw (and flanneld's host-gw) writes: a
// unicast main-table route to a subnet inside the Network (IPv4) or IPv6Network (not the
// network itself) via a gateway on the external interface, with the metric the kernel
// gives a route written without one (0 for IPv4, 1024 for IPv6), written by a program
// (protocol "boot", netlink's and ip's default). The default route, routes outside the
// network and routes of other daemons or with another metric are never host-gw's. It is
// pure.
func ownedRoute(r kernel.ListedRoute, cidr netip.Prefix, ext int) bool {
	metric := 0
	if r.Dst.Addr().Is6() {
		metric = metric6
	}
	return r.LinkIndex == ext && r.Gw.IsValid() && !r.Multipath && r.Type == unix.RTN_UNICAST &&
		r.Priority == metric && r.Protocol == unix.RTPROT_BOOT &&
		r.Dst.Bits() > cidr.Bits() && cidr.Contains(r.Dst.Addr())
}

// staleRoute reports whether r is a host-gw route that no peer needs: every peer needs
// exactly the route to each of its subnets via its public address of that family (also
// while that route cannot be written: a route via another address would send its pods'
// traffic to the wrong node). routes are the peer routes by destination. It is pure.
func staleRoute(r kernel.ListedRoute, cidr netip.Prefix, ext int, routes map[netip.Prefix]peerRoute) bool {
	if !ownedRoute(r, cidr, ext) {
		return false
	}
	p, ok := routes[r.Dst]
	return !ok || p.gw != r.Gw || r.Onlink
}
