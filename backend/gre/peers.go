package gre

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// peerSet is the network's view of its peers: the gre leases it accepted (subnet ->
// public IP) and the leases it ignores, with the reason last logged. Its methods are pure
// decisions over the set; both data planes hold it under their mutex.
type peerSet struct {
	own      netip.Prefix // the own subnet
	network  netip.Prefix // the whole pod network
	publicIP netip.Addr   // the own public address
	peers    map[netip.Prefix]netip.Addr
	ignored  map[netip.Prefix]string
}

func newPeerSet(own, network netip.Prefix, publicIP netip.Addr) *peerSet {
	return &peerSet{
		own: own, network: network, publicIP: publicIP,
		peers:   map[netip.Prefix]netip.Addr{},
		ignored: map[netip.Prefix]string{},
	}
}

// changeKind says what one event did to the set.
type changeKind int

const (
	unchanged changeKind = iota
	added
	updated // same subnet, new public IP
	removed
	// ignored: the lease is not usable (another backend, bad data). Logged once per
	// reason; if the subnet was a peer until now, its state must be removed (old is set).
	ignored
)

func (k changeKind) String() string {
	return [...]string{"unchanged", "added", "updated", "removed", "ignored"}[k]
}

// change is the outcome of one event.
type change struct {
	kind     changeKind
	subnet   netip.Prefix
	publicIP netip.Addr // the peer's address now (added, updated)
	old      netip.Addr // its address before (updated, removed; ignored when it was a peer)
	reason   string     // why a lease is ignored
}

// apply folds one event into the set.
func (s *peerSet) apply(e subnet.Event) change {
	l := e.Lease
	sn := l.Subnet
	old, known := s.peers[sn]
	if e.Type == subnet.Removed {
		delete(s.ignored, sn)
		if !known {
			return change{kind: unchanged, subnet: sn}
		}
		delete(s.peers, sn)
		return change{kind: removed, subnet: sn, old: old}
	}
	if reason := s.check(l); reason != "" {
		delete(s.peers, sn)
		if !known && s.ignored[sn] == reason {
			return change{kind: unchanged, subnet: sn}
		}
		s.ignored[sn] = reason
		c := change{kind: ignored, subnet: sn, reason: reason}
		if known {
			c.old = old
		}
		return c
	}
	delete(s.ignored, sn)
	pub := l.Attrs.PublicIP
	switch {
	case known && old == pub:
		return change{kind: unchanged, subnet: sn, publicIP: pub}
	case known:
		s.peers[sn] = pub
		return change{kind: updated, subnet: sn, publicIP: pub, old: old}
	}
	s.peers[sn] = pub
	return change{kind: added, subnet: sn, publicIP: pub}
}

// check says why a peer lease cannot be used ("" when it can).
func (s *peerSet) check(l subnet.Lease) string {
	sn, pub := l.Subnet, l.Attrs.PublicIP
	switch {
	case l.Attrs.BackendType == "":
		return fmt.Sprintf("it has no BackendType (a udp node?), not %q", Name)
	case l.Attrs.BackendType != Name:
		return fmt.Sprintf("its BackendType is %q, not %q", l.Attrs.BackendType, Name)
	case !sn.Addr().Is4() || !ip.IsNetworkAddress(sn):
		return fmt.Sprintf("subnet %s is not an IPv4 network address", sn)
	case !ip.Contains(s.network, sn):
		return fmt.Sprintf("subnet %s lies outside the network %s", sn, s.network)
	case sn.Overlaps(s.own):
		return fmt.Sprintf("subnet %s overlaps the own subnet %s", sn, s.own)
	case !isUnicast4(pub):
		return fmt.Sprintf("public IP %v is not a unicast IPv4 address", pub)
	case pub == s.publicIP:
		return fmt.Sprintf("public IP %s is this node's own (a stale lease of this node?)", pub)
	}
	for other := range s.peers {
		if other != sn && other.Overlaps(sn) {
			return fmt.Sprintf("subnet %s overlaps the peer subnet %s", sn, other)
		}
	}
	return ""
}

// inUse reports whether a peer other than except has the public IP a (a node may hold
// more than one subnet only through stale leases, but then it must keep its neighbour).
func (s *peerSet) inUse(a netip.Addr, except netip.Prefix) bool {
	for sn, pub := range s.peers {
		if sn != except && pub == a {
			return true
		}
	}
	return false
}

// isUnicast4 reports whether a can be a peer's public address: IPv4, not unspecified,
// loopback, multicast or the limited broadcast.
func isUnicast4(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
