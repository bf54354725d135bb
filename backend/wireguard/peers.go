package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/subnet"
)

// lease is what a peer lease says WireGuard needs: the peer's public key and where to
// send (its PublicIP and the network's ListenPort: every node uses the same port, as
// flanneld assumes).
type lease struct {
	key      wgtypes.Key
	endpoint netip.AddrPort
}

// peerSet is the Network's view of its peer leases, by subnet. Its methods are pure
// decisions; the Network holds it under its mutex.
type peerSet struct {
	port   uint16      // every node's ListenPort
	ownKey wgtypes.Key // this node's public key
	leases map[netip.Prefix]lease
}

func newPeerSet(port uint16, ownKey wgtypes.Key) *peerSet {
	return &peerSet{port: port, ownKey: ownKey, leases: map[netip.Prefix]lease{}}
}

// changeKind says what one event did to the set.
type changeKind int

const (
	unchanged changeKind = iota
	added
	updated  // a new key or endpoint
	removed  // the lease is gone
	rejected // its BackendData cannot be used; any earlier state of the subnet is gone
)

// change is the outcome of one event, for the log.
type change struct {
	kind     changeKind
	subnet   netip.Prefix
	now, was lease // was: for updated and removed
	err      error // for rejected
}

// apply folds one event into the set. Admission has checked the lease already
// (CheckPeerData among others); a lease that still cannot be parsed is dropped.
func (s *peerSet) apply(e subnet.Event) change {
	sn := e.Lease.Subnet
	old, known := s.leases[sn]
	if e.Type == subnet.Removed {
		if !known {
			return change{kind: unchanged, subnet: sn}
		}
		delete(s.leases, sn)
		return change{kind: removed, subnet: sn, was: old}
	}
	key, err := peerKey(e.Lease.Attrs)
	if err != nil {
		delete(s.leases, sn)
		return change{kind: rejected, subnet: sn, was: old, err: err}
	}
	l := lease{key: key, endpoint: netip.AddrPortFrom(e.Lease.Attrs.PublicIP, s.port)}
	s.leases[sn] = l
	switch {
	case !known:
		return change{kind: added, subnet: sn, now: l}
	case old != l:
		return change{kind: updated, subnet: sn, now: l, was: old}
	}
	return change{kind: unchanged, subnet: sn, now: l}
}

// wantPeer is one WireGuard peer the device must have.
type wantPeer struct {
	endpoint netip.AddrPort
	allowed  []netip.Prefix // sorted
}

// desired returns the device's peers, by public key, and the subnets that cannot be
// programmed with the reason. WireGuard routes by key, so leases are grouped by key:
// several leases of one key at one endpoint (a node's stale lease next to its new one)
// make one peer with all their subnets; a key used from two endpoints (a key file copied
// to another node) can only be one peer, so the lease with the lowest subnet keeps it and
// the others are refused, as is a lease with this node's own key.
func (s *peerSet) desired() (map[wgtypes.Key]wantPeer, map[netip.Prefix]string) {
	subnets := make([]netip.Prefix, 0, len(s.leases))
	for sn := range s.leases {
		subnets = append(subnets, sn)
	}
	slices.SortFunc(subnets, comparePrefix)
	want := map[wgtypes.Key]wantPeer{}
	owner := map[wgtypes.Key]netip.Prefix{}
	bad := map[netip.Prefix]string{}
	for _, sn := range subnets {
		l := s.leases[sn]
		if l.key == s.ownKey {
			bad[sn] = "its public key is this node's own (a copied key file?)"
			continue
		}
		p, ok := want[l.key]
		if ok && p.endpoint != l.endpoint {
			bad[sn] = fmt.Sprintf("its public key is also the key of %s at %s (a copied key file?)", owner[l.key], p.endpoint)
			continue
		}
		if !ok {
			owner[l.key] = sn
		}
		p.endpoint = l.endpoint
		p.allowed = append(p.allowed, sn)
		want[l.key] = p
	}
	return want, bad
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// peerParams are the settings every peer shares.
type peerParams struct {
	psk       wgtypes.Key   // zero: none
	keepalive time.Duration // 0: off
}

// diffPeers returns the changes that turn the device's peers (have) into want: a removal
// for each peer that should not be there, and a full setting (endpoint, allowed IPs
// replaced, pre-shared key, keepalive) for each one missing or different. Without
// endpoints, a peer whose endpoint differs but is set counts as the same: WireGuard
// moves a peer's endpoint to where its authenticated packets come from (roaming), which
// is not drift. Nothing when they agree. It is pure; the result is ordered by key.
func diffPeers(want map[wgtypes.Key]wantPeer, have []wgtypes.Peer, pp peerParams, endpoints bool) []wgtypes.PeerConfig {
	var out []wgtypes.PeerConfig
	seen := map[wgtypes.Key]bool{}
	for _, h := range have {
		seen[h.PublicKey] = true
		w, ok := want[h.PublicKey]
		if !ok {
			out = append(out, wgtypes.PeerConfig{PublicKey: h.PublicKey, Remove: true})
			continue
		}
		if !samePeer(w, h, pp, endpoints) {
			out = append(out, peerConfig(h.PublicKey, w, pp))
		}
	}
	for k, w := range want {
		if !seen[k] {
			out = append(out, peerConfig(k, w, pp))
		}
	}
	slices.SortFunc(out, func(a, b wgtypes.PeerConfig) int { return slices.Compare(a.PublicKey[:], b.PublicKey[:]) })
	return out
}

func samePeer(w wantPeer, h wgtypes.Peer, pp peerParams, endpoints bool) bool {
	if h.Endpoint == nil || h.PresharedKey != pp.psk || h.PersistentKeepaliveInterval != pp.keepalive {
		return false
	}
	if ap := h.Endpoint.AddrPort(); endpoints && netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) != w.endpoint {
		return false
	}
	allowed := make([]netip.Prefix, 0, len(h.AllowedIPs))
	for _, n := range h.AllowedIPs {
		a, ok := netip.AddrFromSlice(n.IP)
		ones, _ := n.Mask.Size()
		if !ok {
			return false
		}
		allowed = append(allowed, netip.PrefixFrom(a.Unmap(), ones))
	}
	slices.SortFunc(allowed, comparePrefix)
	return slices.Equal(allowed, w.allowed)
}

func peerConfig(k wgtypes.Key, w wantPeer, pp peerParams) wgtypes.PeerConfig {
	psk, keepalive := pp.psk, pp.keepalive
	allowed := make([]net.IPNet, len(w.allowed))
	for i, p := range w.allowed {
		allowed[i] = net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	return wgtypes.PeerConfig{
		PublicKey:                   k,
		PresharedKey:                &psk,
		Endpoint:                    net.UDPAddrFromAddrPort(w.endpoint),
		PersistentKeepaliveInterval: &keepalive,
		ReplaceAllowedIPs:           true,
		AllowedIPs:                  allowed,
	}
}

// asPeers renders wanted peers as the device would show them, to diff against what was
// last programmed.
func asPeers(want map[wgtypes.Key]wantPeer, pp peerParams) []wgtypes.Peer {
	out := make([]wgtypes.Peer, 0, len(want))
	for k, w := range want {
		c := peerConfig(k, w, pp)
		out = append(out, wgtypes.Peer{PublicKey: k, PresharedKey: pp.psk, Endpoint: c.Endpoint,
			PersistentKeepaliveInterval: pp.keepalive, AllowedIPs: c.AllowedIPs})
	}
	return out
}
