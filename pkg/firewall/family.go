package firewall

import (
	"fmt"
	"net/netip"
	"slices"
)

// Family is an IP family the rules are kept for. Each family has rules of its own, in a
// place of its own (iptables and ip6tables, the nftables tables "ip weft" and "ip6 weft"):
// the rules of a family exist only while the network runs it.
type Family int

const (
	IPv4 Family = iota
	IPv6
)

// NumFamilies is the number of families; Family values are 0..NumFamilies-1.
const NumFamilies = 2

// Families lists every family in the order a pass handles them.
var Families = [NumFamilies]Family{IPv4, IPv6}

func (f Family) String() string {
	return [...]string{"IPv4", "IPv6"}[f]
}

// Bits is the length of the family's addresses in bits.
func (f Family) Bits() int {
	if f == IPv6 {
		return 128
	}
	return 32
}

// Has reports whether a is an address of family f (a 4-in-6 mapped address is IPv6).
func (f Family) Has(a netip.Addr) bool {
	return a.IsValid() && a.Is4() == (f == IPv4)
}

// Overlay is the overlay network as the rules need it: for each family the network runs,
// the network and this node's subnet in it (host bits ignored); the prefixes of a family it
// does not run are zero. Its fields mirror subnet.Config and subnet.Lease:
//
//	firewall.Overlay{Network: cfg.Network, Subnet: lease.Subnet,
//		IPv6Network: cfg.IPv6Network, IPv6Subnet: lease.IPv6Subnet}
type Overlay struct {
	Network, Subnet         netip.Prefix // IPv4; zero when the network does not run IPv4
	IPv6Network, IPv6Subnet netip.Prefix // IPv6; zero when the network does not run IPv6
}

// Known reports whether o says anything: an Overlay with no prefix at all is what the
// Inputs hold before SetNetwork.
func (o Overlay) Known() bool {
	return o.Network.IsValid() || o.Subnet.IsValid() || o.IPv6Network.IsValid() || o.IPv6Subnet.IsValid()
}

// Of returns the network and subnet of family f.
func (o Overlay) Of(f Family) (network, subnet netip.Prefix) {
	if f == IPv6 {
		return o.IPv6Network, o.IPv6Subnet
	}
	return o.Network, o.Subnet
}

// Runs reports whether the network runs family f (has a network of that family).
func (o Overlay) Runs(f Family) bool {
	n, sn := o.Of(f)
	return n.IsValid() || sn.IsValid()
}

// Multicast returns the multicast range of family f, which is never masqueraded (flanneld's
// 224.0.0.0/4 and ff00::/8).
func Multicast(f Family) netip.Prefix {
	if f == IPv6 {
		return multicast6
	}
	return multicast4
}

var (
	multicast4 = netip.MustParsePrefix("224.0.0.0/4")
	multicast6 = netip.MustParsePrefix("ff00::/8")
)

// CheckNetwork verifies that network and subnet are prefixes of family f and that network
// holds subnet.
func CheckNetwork(f Family, network, subnet netip.Prefix) error {
	switch {
	case !network.IsValid() || !f.Has(network.Addr()):
		return fmt.Errorf("%w: network %v is not an %v prefix", ErrInvalid, network, f)
	case !subnet.IsValid() || !f.Has(subnet.Addr()):
		return fmt.Errorf("%w: subnet %v is not an %v prefix", ErrInvalid, subnet, f)
	case subnet.Bits() < network.Bits() || !network.Contains(subnet.Addr()):
		return fmt.Errorf("%w: subnet %v is not inside network %v", ErrInvalid, subnet, network)
	}
	return nil
}

// PeerSet returns the IPv4 addresses among peers (4-in-6 unmapped), sorted, without
// duplicates, in a new slice.
func PeerSet(peers []netip.Addr) []netip.Addr { return PeerSetOf(IPv4, peers) }

// PeerSetOf returns the addresses of family f among peers (4-in-6 mapped ones count as
// IPv4), sorted, without duplicates, in a new slice.
func PeerSetOf(f Family, peers []netip.Addr) []netip.Addr {
	addrs := make([]netip.Addr, 0, len(peers))
	for _, a := range peers {
		if a = a.Unmap(); f.Has(a) {
			addrs = append(addrs, a.WithZone(""))
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}
