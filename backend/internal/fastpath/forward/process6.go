package forward

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packet"
	"github.com/weftnet/weft/pkg/ip"
)

// subnet6 is the own IPv6 subnet as integer halves, for the per-packet check.
type subnet6 struct {
	has            bool
	addrHi, addrLo uint64
	maskHi, maskLo uint64
}

// newSubnet6 checks Config.Subnet6: the zero Prefix (no IPv6) or an IPv6 network address.
func newSubnet6(p netip.Prefix) (subnet6, error) {
	if !p.IsValid() {
		return subnet6{}, nil
	}
	if !p.Addr().Is6() || p.Addr().Is4In6() || !ip.IsNetworkAddress(p) {
		return subnet6{}, fmt.Errorf("fastpath: IPv6 subnet %s is not an IPv6 network address", p)
	}
	a, host := ip.ToU128(p.Addr()), ip.HostMask(p.Bits(), 128)
	return subnet6{has: true, addrHi: a.Hi, addrLo: a.Lo, maskHi: ^host.Hi, maskLo: ^host.Lo}, nil
}

// contains reports whether the address hi:lo lies in the subnet.
func (s *subnet6) contains(hi, lo uint64) bool {
	return s.has && hi&s.maskHi == s.addrHi && lo&s.maskLo == s.addrLo
}

// fromDevice6 is fromDevice for an IPv6 packet (the Forwarder has an own IPv6 subnet):
// DropNone when it goes to the peer whose IPv6 subnet holds its destination, with its hop
// limit decremented, p.Len trimmed to its length and p.Addr that peer's endpoint.
func (f *Forwarder) fromDevice6(t *PeerTable, p *fastpath.Packet) fastpath.DropReason {
	b := p.Bytes()
	h, r := packet.ParseIPv6(b)
	if r != fastpath.DropNone {
		return r
	}
	p.Len = h.Total
	var i int
	ok := false
	if t != nil {
		i, ok = t.v6.lookup(h.DstHi, h.DstLo)
	}
	if !ok {
		if f.subnet6.contains(h.DstHi, h.DstLo) {
			return fastpath.DropOwnSubnet
		}
		return fastpath.DropNoRoute
	}
	if h.HopLimit <= 1 {
		return fastpath.DropTTLExceeded
	}
	packet.DecrementHopLimit(b)
	p.Addr = t.v6.peers[i].Endpoint
	return fastpath.DropNone
}

// fromConn6 is fromConn for an IPv6 inner packet: DropNone when the sender is the peer
// whose IPv6 subnet holds the inner source and the destination lies in the own IPv6
// subnet; the hop limit is then decremented and p.Len trimmed to the packet's length.
func (f *Forwarder) fromConn6(t *PeerTable, p *fastpath.Packet) fastpath.DropReason {
	b := p.Bytes()
	h, r := packet.ParseIPv6(b)
	if r != fastpath.DropNone {
		return r
	}
	p.Len = h.Total
	i, ok := t.v6.lookup(h.SrcHi, h.SrcLo)
	if !ok || endpointKey(t.v6.peers[i].Endpoint) != endpointKey(p.Addr) {
		return fastpath.DropSpoofedSource
	}
	if !f.subnet6.contains(h.DstHi, h.DstLo) {
		return fastpath.DropWrongDestination
	}
	if h.HopLimit <= 1 {
		return fastpath.DropTTLExceeded
	}
	packet.DecrementHopLimit(b)
	return fastpath.DropNone
}
