package vxlan

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
)

// sweepLocked deletes the entries no admitted peer needs: routes, permanent neighbours and
// permanent FDB entries on the family's device (the device is weft's: everything there but the
// kernel's own routes is a peer's), and with DirectRouting host-gw-shaped routes on the
// external interface (staleDirectRoute). They are left by peers that went away while
// weftd was down or during a re-acquire gap, or by a peer that moved. The entries of
// removed peers whose delete failed are left to removePeerLocked, which retries them. It
// reports whether it found anything. Only call it once the peer set is complete (after
// the first Apply).
func (n *network) sweepLocked(f *family, b *kernel.Batch) (bool, error) {
	want := wantedOf(f.peers, f.gone)
	leaving := func(dst netip.Prefix) bool { _, ok := f.gone[dst]; return ok }
	routes, rerr := b.SweepRoutes(f.devIndex, func(r kernel.ListedRoute) bool {
		return !leaving(r.Dst) && staleTunnelRoute(r, f.peers, f.metric)
	})
	var derr error
	if f.direct {
		var direct []kernel.ListedRoute
		direct, derr = b.SweepRoutes(n.extIdx, func(r kernel.ListedRoute) bool {
			return !leaving(r.Dst) && staleDirectRoute(r, f.cidr, n.extIdx, f.peers, f.metric)
		})
		routes = append(routes, direct...)
	}
	for _, r := range routes {
		n.log.Info("Removed leftover route: no peer needs it", "subnet", r.Dst, "via", r.Gw, "linkIndex", r.LinkIndex)
	}
	neighs, nerr := b.SweepNeighs(f.devIndex, func(e kernel.ListedNeigh) bool { return e.Permanent && !want.vteps[e.Addr] })
	for _, e := range neighs {
		n.log.Info("Removed leftover neighbour: no peer needs it", "addr", e.Addr, "lladdr", net.HardwareAddr(e.LLAddr))
	}
	fdb, ferr := b.SweepFDB(f.devIndex, func(f kernel.ListedFDB) bool {
		return f.Permanent && f.Self && !want.fdb[keyOf(f.MAC, f.Dst)]
	})
	for _, f := range fdb {
		n.log.Info("Removed leftover fdb entry: no peer needs it", "mac", net.HardwareAddr(f.MAC), "dst", f.Dst)
	}
	err := errors.Join(rerr, derr, nerr, ferr)
	if err != nil {
		n.log.Error(err, "Cannot remove leftover entries; will retry")
	}
	return len(routes)+len(neighs)+len(fdb) > 0, err
}

// fdbKey is one forwarding entry: a VTEP MAC (6 bytes, as parseLeaseData and the kernel
// have them) and its remote. An array, so that building and probing the set allocates
// nothing per entry.
type fdbKey struct {
	mac [6]byte
	dst netip.Addr
}

// keyOf is the fdbKey of mac (a []byte or string of its bytes) -> dst; a MAC of another
// length gives a key no peer has.
func keyOf[B ~[]byte | ~string](mac B, dst netip.Addr) fdbKey {
	k := fdbKey{dst: dst}
	if len(mac) != len(k.mac) {
		return fdbKey{}
	}
	copy(k.mac[:], mac)
	return k
}

// wanted is what the tunnel peers need on the device besides routes: their VTEP
// addresses (neighbours) and MAC -> public IP pairs (FDB entries).
type wanted struct {
	vteps map[netip.Addr]bool
	fdb   map[fdbKey]bool
}

// wantedOf collects what the peers and the removed peers still being deleted need. It
// is pure.
func wantedOf(peers, gone map[netip.Prefix]*peer) wanted {
	size := len(peers) + len(gone)
	w := wanted{vteps: make(map[netip.Addr]bool, size), fdb: make(map[fdbKey]bool, size)}
	add := func(p *peer) {
		w.vteps[p.vtepAddr()] = true
		w.fdb[keyOf(p.mac, p.publicIP)] = true
	}
	for _, p := range peers {
		if !p.direct {
			add(p)
		}
	}
	for _, p := range gone { // their entries are removePeerLocked's to delete
		add(p)
	}
	return w
}

// staleTunnelRoute reports whether a main-table route on the family's device is one no
// peer needs: a tunnel peer needs exactly "<subnet> via <subnet network address> onlink"
// with the family's metric (0 for IPv4, 1024 for IPv6); the kernel's own routes (of an
// address, IPv6 link-local) are never stale. It is pure.
func staleTunnelRoute(r kernel.ListedRoute, peers map[netip.Prefix]*peer, metric int) bool {
	if r.Protocol == unix.RTPROT_KERNEL {
		return false
	}
	p := peers[r.Dst]
	return p == nil || p.direct || r.Gw != p.vtepAddr() || !r.Onlink || r.Priority != metric ||
		r.Type != unix.RTN_UNICAST || r.Multipath
}

// staleDirectRoute reports whether a route on the external interface is a DirectRouting
// route no peer needs. Only routes of the shape weft writes there are considered: unicast,
// the family's metric (0, or 1024 for IPv6), protocol boot, via a gateway, to a subnet
// strictly inside the family's network (never the default route, routes outside the
// network or other daemons' routes); a direct peer needs exactly the route to its subnet
// via its public IP. It is pure.
func staleDirectRoute(r kernel.ListedRoute, cidr netip.Prefix, ext int, peers map[netip.Prefix]*peer, metric int) bool {
	owned := r.LinkIndex == ext && r.Gw.IsValid() && !r.Multipath && r.Type == unix.RTN_UNICAST &&
		r.Priority == metric && r.Protocol == unix.RTPROT_BOOT && r.Dst.Bits() > cidr.Bits() && cidr.Contains(r.Dst.Addr())
	if !owned {
		return false
	}
	p := peers[r.Dst]
	return p == nil || !p.direct || r.Gw != p.publicIP || r.Onlink
}
