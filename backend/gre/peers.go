package gre

import (
	"net/netip"

	"github.com/weftnet/weft/subnet"
)

// peerSet is the network's view of its peers: the admitted gre leases (subnet -> public
// IP). Leases arrive admitted (see backend.Network); its methods are pure decisions over
// the set, and both data planes hold it under their mutex.
type peerSet struct {
	peers map[netip.Prefix]netip.Addr
}

func newPeerSet() *peerSet {
	return &peerSet{peers: map[netip.Prefix]netip.Addr{}}
}

// changeKind says what one event did to the set.
type changeKind int

const (
	unchanged changeKind = iota
	added
	updated // same subnet, new public IP
	removed
)

func (k changeKind) String() string {
	return [...]string{"unchanged", "added", "updated", "removed"}[k]
}

// change is the outcome of one event.
type change struct {
	kind     changeKind
	subnet   netip.Prefix
	publicIP netip.Addr // the peer's address now (added, updated)
	old      netip.Addr // its address before (updated, removed)
}

// apply folds one event into the set.
func (s *peerSet) apply(e subnet.Event) change {
	sn := e.Lease.Subnet
	old, known := s.peers[sn]
	if e.Type == subnet.Removed {
		if !known {
			return change{kind: unchanged, subnet: sn}
		}
		delete(s.peers, sn)
		return change{kind: removed, subnet: sn, old: old}
	}
	pub := e.Lease.Attrs.PublicIP
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
