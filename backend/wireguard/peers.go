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

// lease is what a peer lease says WireGuard needs: the peer's public key, where to send
// (its public address, chosen by Mode, and the device's port: every node uses the
// same port, as flanneld assumes) and its subnets of the families the device carries.
type lease struct {
	key      wgtypes.Key
	endpoint netip.AddrPort
	sn4, sn6 netip.Prefix // zero when the lease has none of that family, or it is not run
}

// subnets returns the lease's subnets, IPv4 first.
func (l lease) subnets() []netip.Prefix {
	var out []netip.Prefix
	for _, sn := range []netip.Prefix{l.sn4, l.sn6} {
		if sn.IsValid() {
			out = append(out, sn)
		}
	}
	return out
}

// first is the subnet that names the lease in logs and orders leases: its IPv4 subnet,
// else its IPv6 one.
func (l lease) first() netip.Prefix {
	if l.sn4.IsValid() {
		return l.sn4
	}
	return l.sn6
}

// peerSet is one device's view of its peer leases, by Lease.Key(). Its methods are pure
// decisions; the device holds it under its mutex.
type peerSet struct {
	port   uint16      // every node's port of this device
	ownKey wgtypes.Key // this node's public key
	// v4, v6: the families whose subnets the device carries (its peers' allowed IPs);
	// via: which public address of a peer it sends to, chosen with own4 and own6 for
	// viaAuto. mode is the Mode, for messages.
	v4, v6 bool
	via    via
	mode   Mode
	own4   netip.Addr // this node's PublicIP
	own6   netip.Addr // this node's PublicIPv6
	leases map[string]lease
}

// newPeerSet returns the peers of an IPv4 device sending to PublicIP on port.
func newPeerSet(port uint16, ownKey wgtypes.Key) *peerSet {
	return &peerSet{port: port, ownKey: ownKey, v4: true, via: via4, mode: ModeIPv4, leases: map[string]lease{}}
}

// newLinkPeerSet returns the peers of the device spec for this node's key and public
// addresses.
func newLinkPeerSet(spec linkSpec, mode Mode, ownKey wgtypes.Key, own4, own6 netip.Addr) *peerSet {
	return &peerSet{port: uint16(spec.port), ownKey: ownKey, v4: spec.v4, v6: spec.v6, via: spec.via, mode: mode,
		own4: own4, own6: own6, leases: map[string]lease{}}
}

// changeKind says what one event did to the set.
type changeKind int

const (
	unchanged changeKind = iota
	added
	updated  // a new key or endpoint
	removed  // the lease is gone
	rejected // its BackendData cannot be used; any earlier state of the lease is gone
)

// change is the outcome of one event, for the log.
type change struct {
	kind     changeKind
	subnet   netip.Prefix // the lease's first subnet
	subnets  []netip.Prefix
	now, was lease // was: for updated and removed
	err      error // for rejected
}

// apply folds one event into the set. Admission has checked the lease already
// (CheckPeerData among others); a lease that still cannot be parsed, or has no endpoint
// of the family Mode asks for, is dropped.
func (s *peerSet) apply(e subnet.Event) change {
	id := e.Lease.Key()
	var l lease
	if s.v4 {
		l.sn4 = e.Lease.Subnet
	}
	if s.v6 {
		l.sn6 = e.Lease.IPv6Subnet
	}
	old, known := s.leases[id]
	c := change{subnet: l.first(), subnets: l.subnets()}
	if e.Type == subnet.Removed || len(c.subnets) == 0 {
		// A lease without a subnet of this device's families (an IPv6-only lease seen by
		// Mode separate's IPv4 device) is no peer of it.
		if !known {
			return c
		}
		delete(s.leases, id)
		c.kind, c.was = removed, old
		if len(c.subnets) == 0 {
			c.subnet, c.subnets = old.first(), old.subnets()
		}
		return c
	}
	key, err := peerKey(e.Lease.Attrs)
	if err == nil {
		l.key = key
		l.endpoint, err = s.endpoint(e.Lease.Attrs)
	}
	if err != nil {
		delete(s.leases, id)
		c.kind, c.was, c.err = rejected, old, err
		return c
	}
	s.leases[id] = l
	c.now = l
	switch {
	case !known:
		c.kind = added
	case old != l:
		c.kind, c.was = updated, old
	}
	return c
}

// endpoint returns where to send to a peer: its PublicIP (via4), its PublicIPv6 (via6),
// or flanneld's choice between them (viaAuto, selectEndpoint), at the device's port.
func (s *peerSet) endpoint(a subnet.LeaseAttrs) (netip.AddrPort, error) {
	var ip netip.Addr
	switch s.via {
	case via4:
		if ip = a.PublicIP; !ip.Is4() {
			ip = netip.Addr{}
		}
	case via6:
		if ip = a.PublicIPv6; !ip.Is6() || ip.Is4In6() {
			ip = netip.Addr{}
		}
	case viaAuto:
		ip = selectEndpoint(a.PublicIP, a.PublicIPv6, s.own4, s.own6)
	}
	if !ip.IsValid() || ip.IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("no public address to send to (Mode %q sends to %s)", s.mode, s.via)
	}
	return netip.AddrPortFrom(ip, s.port), nil
}

// selectEndpoint is flanneld's choice of a peer's endpoint in Mode auto: the peer's only
// address if it has one family; else its IPv4 address when that is not private
// (RFC 1918) and this node has one; else its IPv6 address when that and this node's are
// not private (fc00::/7); else its IPv4 address. (A lease without IPv4 carries
// "0.0.0.0", which flanneld would pick; weft takes the IPv6 address then.) It is pure.
func selectEndpoint(peer4, peer6, own4, own6 netip.Addr) netip.Addr {
	has4 := peer4.IsValid() && !peer4.IsUnspecified()
	has6 := peer6.IsValid() && !peer6.IsUnspecified()
	switch {
	case has4 && !has6:
		return peer4
	case has6 && !has4:
		return peer6
	case !has4:
		return netip.Addr{}
	case !peer4.IsPrivate() && own4.IsValid():
		return peer4
	case !peer6.IsPrivate() && own6.IsValid() && !own6.IsPrivate():
		return peer6
	}
	return peer4
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
	ids := make([]string, 0, len(s.leases))
	for id := range s.leases {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { return comparePrefix(s.leases[a].first(), s.leases[b].first()) })
	want := map[wgtypes.Key]wantPeer{}
	owner := map[wgtypes.Key]netip.Prefix{}
	bad := map[netip.Prefix]string{}
	refuse := func(l lease, why string) {
		for _, sn := range l.subnets() {
			bad[sn] = why
		}
	}
	for _, id := range ids {
		l := s.leases[id]
		if l.key == s.ownKey {
			refuse(l, "its public key is this node's own (a copied key file?)")
			continue
		}
		p, ok := want[l.key]
		if ok && p.endpoint != l.endpoint {
			refuse(l, fmt.Sprintf("its public key is also the key of %s at %s (a copied key file?)", owner[l.key], p.endpoint))
			continue
		}
		if !ok {
			owner[l.key] = l.first()
		}
		p.endpoint = l.endpoint
		p.allowed = append(p.allowed, l.subnets()...)
		slices.SortFunc(p.allowed, comparePrefix)
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
