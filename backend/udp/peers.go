package udp

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// peerSet is the udp network's view of its peers: the leases it accepted, by subnet. Its
// methods are pure decisions over the set; the network holds it under its mutex.
type peerSet struct {
	own      netip.Prefix // the own subnet
	network  netip.Prefix // the whole pod network
	publicIP netip.Addr   // the own public address
	port     uint16       // every node's udp port
	leases   map[netip.Prefix]subnet.Lease
}

func newPeerSet(own, network netip.Prefix, publicIP netip.Addr, port uint16) *peerSet {
	return &peerSet{own: own, network: network, publicIP: publicIP, port: port, leases: map[netip.Prefix]subnet.Lease{}}
}

// changeKind says what one event did to the set.
type changeKind int

const (
	unchanged changeKind = iota
	added
	updated
	removed
	rejected // the lease cannot be used; any earlier state of its subnet is gone
)

// change is the outcome of one event, for the log.
type change struct {
	kind  changeKind
	lease subnet.Lease
	// foreign: the lease names another backend. flanneld's udp backend accepts any
	// lease, and so does weft, but the other node then may not speak udp.
	foreign bool
	err     error // why a lease was rejected
}

// apply folds one event into the set.
func (s *peerSet) apply(e subnet.Event) change {
	l := e.Lease
	sn := l.Subnet
	_, known := s.leases[sn]
	if e.Type == subnet.Removed {
		if !known {
			return change{kind: unchanged, lease: l}
		}
		delete(s.leases, sn)
		return change{kind: removed, lease: l}
	}
	if err := s.check(l); err != nil {
		delete(s.leases, sn)
		return change{kind: rejected, lease: l, err: err}
	}
	c := change{kind: added, lease: l, foreign: l.Attrs.BackendType != "" && l.Attrs.BackendType != Name}
	if old, ok := s.leases[sn]; ok {
		if old.Attrs.PublicIP == l.Attrs.PublicIP && old.Attrs.BackendType == l.Attrs.BackendType {
			s.leases[sn] = l
			return change{kind: unchanged, lease: l}
		}
		c.kind = updated
		c.foreign = c.foreign && old.Attrs.BackendType != l.Attrs.BackendType
	}
	s.leases[sn] = l
	return c
}

// check reports why a peer lease cannot be used, or nil.
func (s *peerSet) check(l subnet.Lease) error {
	sn := l.Subnet
	switch {
	case !sn.Addr().Is4() || !ip.IsNetworkAddress(sn):
		return fmt.Errorf("peer subnet %s is not an IPv4 network address", sn)
	case !ip.Contains(s.network, sn):
		return fmt.Errorf("peer subnet %s lies outside the network %s", sn, s.network)
	case sn.Overlaps(s.own):
		return fmt.Errorf("peer subnet %s overlaps the own subnet %s", sn, s.own)
	case !isUnicast4(l.Attrs.PublicIP):
		return fmt.Errorf("peer %s: public IP %s is not a unicast IPv4 address", sn, l.Attrs.PublicIP)
	case l.Attrs.PublicIP == s.publicIP:
		return fmt.Errorf("peer %s: public IP %s is this node's own (a stale lease of this node?)", sn, l.Attrs.PublicIP)
	}
	for other := range s.leases {
		if other != sn && other.Overlaps(sn) {
			return fmt.Errorf("peer subnet %s overlaps peer subnet %s", sn, other)
		}
	}
	return nil
}

// table returns the fast path's peer table for the set.
func (s *peerSet) table() (*fastpath.PeerTable, error) {
	peers := make([]fastpath.Peer, 0, len(s.leases))
	for sn, l := range s.leases {
		peers = append(peers, fastpath.Peer{Subnet: sn, Endpoint: netip.AddrPortFrom(l.Attrs.PublicIP, s.port)})
	}
	return fastpath.NewPeerTable(peers)
}

// isUnicast4 reports whether a can be a peer's public address: IPv4, not unspecified,
// loopback, multicast or the limited broadcast.
func isUnicast4(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
