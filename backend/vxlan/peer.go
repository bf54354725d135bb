package vxlan

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
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

// peerFromLease turns an admitted lease into a peer of family f (whose subnet l has).
// Admission checked its backend data with the same parse (checkPeerData), so an error
// means a lease that is not a peer.
func peerFromLease(f *family, l subnet.Lease) (*peer, error) {
	sn := f.subnetOf(l)
	field := "BackendData"
	if f.v6 {
		field = "BackendV6Data"
	}
	d, err := parseLeaseDataOf(field, f.dataOf(l.Attrs))
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", sn, err)
	}
	pub := f.publicOf(l.Attrs)
	if !pub.IsValid() || pub.Is6() != f.v6 || pub.IsUnspecified() {
		return nil, fmt.Errorf("peer %s: public address %v is not a unicast %s address", sn, pub, f)
	}
	return &peer{subnet: sn, publicIP: pub, mac: d.MAC, vni: d.VNI}, nil
}

// sameLease reports whether two peers carry the same lease information.
func (p *peer) sameLease(q *peer) bool {
	return p.subnet == q.subnet && p.publicIP == q.publicIP && bytes.Equal(p.mac, q.mac) && p.vni == q.vni
}

// vtepAddr is the peer subnet's network address, its VTEP's address in flannel's scheme.
func (p *peer) vtepAddr() netip.Addr { return p.subnet.Masked().Addr() }

// tunnelRoute is "<subnet> via <subnet>.0 dev <device> onlink metric <metric>" (metric:
// family.metric).
func tunnelRoute(p *peer, devIndex, metric int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: devIndex,
		Priority:  metric,
		Dst:       ip.IPNet(p.subnet),
		Gw:        net.IP(p.vtepAddr().AsSlice()),
		Flags:     unix.RTNH_F_ONLINK,
	}
}

// directRoute is "<subnet> via <PublicIP> dev <external interface> metric <metric>"
// (metric: family.metric).
func directRoute(p *peer, extIndex, metric int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: extIndex,
		Priority:  metric,
		Dst:       ip.IPNet(p.subnet),
		Gw:        net.IP(p.publicIP.AsSlice()),
	}
}
