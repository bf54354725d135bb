package vxlan

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"

	"github.com/weftnet/weft/pkg/ip"
)

// peer is one remote vxlan node as last seen in its lease, plus how it is programmed.
type peer struct {
	subnet   netip.Prefix
	publicIP netip.Addr
	mac      net.HardwareAddr
	vni      int // as published; informational (flanneld ignores it too)

	direct  bool   // programmed with a direct route over the external interface
	failErr string // last programming error, "" when the entries are in place
}

// sameLease reports whether two peers carry the same lease information.
func (p *peer) sameLease(q *peer) bool {
	return p.subnet == q.subnet && p.publicIP == q.publicIP && bytes.Equal(p.mac, q.mac) && p.vni == q.vni
}

// vtepAddr is the peer subnet's network address, its VTEP's address in flannel's scheme.
func (p *peer) vtepAddr() netip.Addr { return p.subnet.Masked().Addr() }

// tunnelRoute is "<subnet> via <subnet>.0 dev <device> onlink".
func tunnelRoute(p *peer, devIndex int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: devIndex,
		Dst:       ip.IPNet(p.subnet),
		Gw:        net.IP(p.vtepAddr().AsSlice()),
		Flags:     unix.RTNH_F_ONLINK,
	}
}

// directRoute is "<subnet> via <PublicIP> dev <external interface>".
func directRoute(p *peer, extIndex int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: extIndex,
		Dst:       ip.IPNet(p.subnet),
		Gw:        net.IP(p.publicIP.AsSlice()),
	}
}

// snapshot is the kernel state reconcile compares peers against, read with one dump each.
type snapshot struct {
	routes []netlink.Route // main-table routes on the device (and the external link with DirectRouting)
	neighs []netlink.Neigh // IPv4 neighbours on the device
	fdb    []netlink.Neigh // forwarding entries of the device
}

// missing lists the kinds of entries ("route", "neighbour", "fdb") that p needs and the
// snapshot lacks; none when p is in place. It does not look for leftovers (a stale FDB
// remote for the same MAC); the Ensure calls clean those when anything else needs
// fixing. It is pure.
func (s *snapshot) missing(p *peer, devIndex, extIndex int) []string {
	var m []string
	want := tunnelRoute(p, devIndex)
	if p.direct {
		want = directRoute(p, extIndex)
	}
	if !s.hasRoute(want) {
		m = append(m, "route")
	}
	if p.direct {
		return m
	}
	var neigh, fdb bool
	for i := range s.neighs {
		neigh = neigh || kernel.NeighMatches(&s.neighs[i], p.vtepAddr(), p.mac)
	}
	for i := range s.fdb {
		fdb = fdb || kernel.FDBMatches(&s.fdb[i], p.mac, p.publicIP)
	}
	if !neigh {
		m = append(m, "neighbour")
	}
	if !fdb {
		m = append(m, "fdb")
	}
	return m
}

func (s *snapshot) hasRoute(want *netlink.Route) bool {
	for i := range s.routes {
		if kernel.RouteMatches(want, &s.routes[i]) {
			return true
		}
	}
	return false
}
