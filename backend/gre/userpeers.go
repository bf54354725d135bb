package gre

import (
	"net/netip"

	"github.com/weftnet/weft/backend/internal/fastpath/forward"
	"github.com/weftnet/weft/subnet"
)

// leasePeer is what the userspace plane carries for one admitted lease: the subnets of
// the families this node runs that the lease has, and the public address both families'
// packets are sent to: the lease's PublicIP (the underlay is IPv4), or in an IPv6-only
// network its PublicIPv6 (the underlay is IPv6).
type leasePeer struct {
	subnet  netip.Prefix // the IPv4 subnet; zero when not carried
	subnet6 netip.Prefix // the IPv6 subnet; zero when not carried
	pub     netip.Addr
}

// leasePeers is the userspace plane's view of its peers, keyed by Lease.Key() (an
// IPv6-only lease has no IPv4 subnet to key by). Its methods are pure decisions; the
// userNetwork holds it under its mutex.
type leasePeers struct {
	run4, run6 bool // the families this node runs
	peers      map[string]leasePeer
}

func newLeasePeers(run4, run6 bool) *leasePeers {
	return &leasePeers{run4: run4, run6: run6, peers: map[string]leasePeer{}}
}

// leaseChange is the outcome of one event.
type leaseChange struct {
	kind     changeKind
	key      string
	now, old leasePeer
	// unreachable6 is the IPv6 subnet of a lease that has one but no IPv4 public IP to
	// send it to; it is not carried.
	unreachable6 netip.Prefix
}

// carried returns what the node carries of lease l, and an IPv6 subnet it cannot carry
// for want of an IPv4 public IP (IPv4 underlay only).
func (s *leasePeers) carried(l subnet.Lease) (leasePeer, netip.Prefix) {
	if !s.run4 {
		// IPv6-only: GRE over the IPv6 underlay, to the lease's PublicIPv6.
		if !l.Attrs.PublicIPv6.Is6() || l.Attrs.PublicIPv6.Is4In6() || !l.IPv6Subnet.IsValid() {
			return leasePeer{}, netip.Prefix{}
		}
		return leasePeer{subnet6: l.IPv6Subnet, pub: l.Attrs.PublicIPv6}, netip.Prefix{}
	}
	p := leasePeer{pub: l.Attrs.PublicIP}
	if !p.pub.Is4() {
		return leasePeer{}, l.IPv6Subnet
	}
	if s.run4 && l.Subnet.IsValid() {
		p.subnet = l.Subnet
	}
	if s.run6 && l.IPv6Subnet.IsValid() {
		p.subnet6 = l.IPv6Subnet
	}
	return p, netip.Prefix{}
}

// apply folds one event into the set. A lease of which nothing is carried is not kept.
func (s *leasePeers) apply(e subnet.Event) leaseChange {
	key := e.Lease.Key()
	old, known := s.peers[key]
	if e.Type == subnet.Removed {
		if !known {
			return leaseChange{kind: unchanged, key: key}
		}
		delete(s.peers, key)
		return leaseChange{kind: removed, key: key, old: old}
	}
	now, unreachable := s.carried(e.Lease)
	c := leaseChange{key: key, now: now, old: old}
	if s.run6 {
		c.unreachable6 = unreachable
	}
	switch {
	case !now.subnet.IsValid() && !now.subnet6.IsValid():
		if known {
			delete(s.peers, key)
			c.kind = removed
			return c
		}
		c.kind = unchanged
	case known && old == now:
		c.kind = unchanged
	case known:
		s.peers[key] = now
		c.kind = updated
	default:
		s.peers[key] = now
		c.kind = added
	}
	return c
}

// table builds the fast path's peer table: each carried subnet with its peer's public IP
// and port 0, as a raw socket reports senders.
func (s *leasePeers) table() (*forward.PeerTable, error) {
	peers := make([]forward.Peer, 0, 2*len(s.peers))
	for _, p := range s.peers {
		ep := netip.AddrPortFrom(p.pub, 0)
		if p.subnet.IsValid() {
			peers = append(peers, forward.Peer{Subnet: p.subnet, Endpoint: ep})
		}
		if p.subnet6.IsValid() {
			peers = append(peers, forward.Peer{Subnet: p.subnet6, Endpoint: ep})
		}
	}
	return forward.NewPeerTable(peers)
}
