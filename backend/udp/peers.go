package udp

import (
	"net/netip"

	"github.com/weftnet/weft/backend/internal/fastpath/forward"
	"github.com/weftnet/weft/subnet"
)

// peerSet is the udp network's view of its peers: the admitted leases, by subnet. The
// daemon admits peers before Apply sees them (backend.Network), so the set only keeps
// books. Its methods are pure decisions over the set; the network holds it under its
// mutex.
type peerSet struct {
	port   uint16 // every node's udp port
	leases map[netip.Prefix]subnet.Lease
}

func newPeerSet(port uint16) *peerSet {
	return &peerSet{port: port, leases: map[netip.Prefix]subnet.Lease{}}
}

// changeKind says what one event did to the set.
type changeKind int

const (
	unchanged changeKind = iota
	added
	updated
	removed
)

// change is the outcome of one event, for the log.
type change struct {
	kind  changeKind
	lease subnet.Lease
	// foreign: the lease names another backend. flanneld's udp backend accepts any
	// lease, and so does weft (Type's AnyPeerType), but the other node then may not
	// speak udp.
	foreign bool
}

// apply folds one event into the set.
func (s *peerSet) apply(e subnet.Event) change {
	l := e.Lease
	sn := l.Subnet
	old, known := s.leases[sn]
	if e.Type == subnet.Removed {
		if !known {
			return change{kind: unchanged, lease: l}
		}
		delete(s.leases, sn)
		return change{kind: removed, lease: l}
	}
	c := change{kind: added, lease: l, foreign: l.Attrs.BackendType != "" && l.Attrs.BackendType != Name}
	if known {
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

// table returns the fast path's peer table for the set.
func (s *peerSet) table() (*forward.PeerTable, error) {
	peers := make([]forward.Peer, 0, len(s.leases))
	for sn, l := range s.leases {
		peers = append(peers, forward.Peer{Subnet: sn, Endpoint: netip.AddrPortFrom(l.Attrs.PublicIP, s.port)})
	}
	return forward.NewPeerTable(peers)
}
