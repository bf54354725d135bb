package forward

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/pkg/ip"
)

// Peer is one remote subnet and the underlay endpoint of the node that holds it.
type Peer struct {
	// Subnet is an IPv4 or IPv6 subnet, written as its network address. A node with
	// both families is two Peers with the same Endpoint.
	Subnet netip.Prefix
	// Endpoint is where packets for Subnet go and where packets from Subnet must come
	// from: PublicIP:Port for the udp backend; port 0 for protocols without ports.
	Endpoint netip.AddrPort
}

// PeerTable is an immutable set of peers, built once by NewPeerTable and then read
// without locks by any number of goroutines. A nil *PeerTable is an empty table.
type PeerTable struct {
	peers     []Peer                      // sorted by subnet start; subnets do not overlap
	first     []uint32                    // peers[i]'s first address, for the binary search
	last      []uint32                    // peers[i]'s last address
	endpoints map[netip.AddrPort]struct{} // endpointKey of every peer, of both families
	v6        peers6                      // the IPv6 subnets
}

// NewPeerTable checks peers and builds a table. Every subnet must be an IPv4 or IPv6
// network address, every endpoint an IPv4 or IPv6 address (the underlay's family,
// whatever the inner family; not IPv4-mapped); subnets must not overlap. The error names
// the offending peers.
func NewPeerTable(peers []Peer) (*PeerTable, error) {
	var v4, v6 []Peer
	for _, p := range peers {
		if !p.Subnet.IsValid() || !ip.IsNetworkAddress(p.Subnet) || p.Subnet.Addr().Is4In6() {
			return nil, fmt.Errorf("peer subnet %s is not an IPv4 or IPv6 network address", p.Subnet)
		}
		if a := p.Endpoint.Addr(); !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			return nil, fmt.Errorf("peer %s: endpoint %s is not an IPv4 or IPv6 address", p.Subnet, p.Endpoint)
		}
		if p.Subnet.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	t := &PeerTable{
		peers:     v4,
		first:     make([]uint32, len(v4)),
		last:      make([]uint32, len(v4)),
		endpoints: make(map[netip.AddrPort]struct{}, len(peers)),
	}
	var err error
	if t.v6, err = newPeers6(v6); err != nil {
		return nil, err
	}
	for _, p := range t.v6.peers {
		t.endpoints[endpointKey(p.Endpoint)] = struct{}{}
	}
	slices.SortFunc(t.peers, func(a, b Peer) int {
		return cmp.Compare(ip.ToUint32(a.Subnet.Addr()), ip.ToUint32(b.Subnet.Addr()))
	})
	for i, p := range t.peers {
		t.first[i] = ip.ToUint32(p.Subnet.Addr())
		t.last[i] = t.first[i] + (ip.SubnetSize(p.Subnet.Bits()) - 1)
		if p.Subnet.Bits() == 0 {
			t.last[i] = ^uint32(0)
		}
		if i > 0 && t.first[i] <= t.last[i-1] {
			return nil, fmt.Errorf("peer subnets %s and %s overlap", t.peers[i-1].Subnet, p.Subnet)
		}
		t.endpoints[endpointKey(p.Endpoint)] = struct{}{}
	}
	return t, nil
}

// endpointKey is the map key of an endpoint: the address unmapped (a sender an IPv6
// socket reports as ::ffff:a.b.c.d is the IPv4 peer a.b.c.d) and the port. Comparing and
// hashing it allocates nothing.
func endpointKey(ep netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
}

// lookup returns the index of the peer whose subnet holds a.
func (t *PeerTable) lookup(a uint32) (int, bool) {
	if t == nil {
		return 0, false
	}
	// Find the last subnet that starts at or before a.
	lo, hi := 0, len(t.first)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if t.first[mid] <= a {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 || a > t.last[lo-1] {
		return 0, false
	}
	return lo - 1, true
}

// isEndpoint reports whether ep is some peer's endpoint.
func (t *PeerTable) isEndpoint(ep netip.AddrPort) bool {
	if t == nil {
		return false
	}
	_, ok := t.endpoints[endpointKey(ep)]
	return ok
}

// Lookup returns the peer whose subnet holds a, of either family.
func (t *PeerTable) Lookup(a netip.Addr) (Peer, bool) {
	if a.Is6() && !a.Is4In6() {
		if t == nil {
			return Peer{}, false
		}
		u := ip.ToU128(a)
		i, ok := t.v6.lookup(u.Hi, u.Lo)
		if !ok {
			return Peer{}, false
		}
		return t.v6.peers[i], true
	}
	if !a.Is4() {
		return Peer{}, false
	}
	i, ok := t.lookup(ip.ToUint32(a))
	if !ok {
		return Peer{}, false
	}
	return t.peers[i], true
}

// Len returns the number of peers.
func (t *PeerTable) Len() int {
	if t == nil {
		return 0
	}
	return len(t.peers) + len(t.v6.peers)
}

// Peers returns a copy of the peers, sorted by subnet: the IPv4 ones, then the IPv6 ones.
func (t *PeerTable) Peers() []Peer {
	if t == nil {
		return nil
	}
	return append(slices.Clone(t.peers), t.v6.peers...)
}
