package subnet

import (
	"fmt"
	"net/netip"
	"slices"
)

// PeerRule is the backend's part of peer admission: which BackendType a peer lease must
// name, and a check of its BackendData. backend.Type.Admission builds it.
type PeerRule struct {
	BackendType    string // the backend this node runs
	AnyBackendType bool   // admit leases of every BackendType (flanneld's udp does)
	// CheckData, if set, says what is wrong with a lease's BackendData, or nil. It must be
	// pure and cheap.
	CheckData func(LeaseAttrs) error
}

// Why a lease is not a peer: the stable names used in logs, the metric's reason label and
// /status.
const (
	IgnoredMalformed   = "malformed"       // the key or value could not be parsed
	IgnoredOutside     = "outside-network" // not a subnet of SubnetLen inside Network
	IgnoredFamily      = "address-family"  // no subnet of a family this network runs
	IgnoredOverlap     = "overlap"         // overlaps this node's subnet or another peer's
	IgnoredPublicIP    = "public-ip"       // not a unicast address of its family
	IgnoredOwnIP       = "own-public-ip"   // names this node's public IP (a stale lease of this node)
	IgnoredBackendType = "backend-type"    // another backend type than the one this node runs
	IgnoredBackendData = "backend-data"    // BackendData the backend cannot use
)

// IgnoredLease is a lease in the store that is not a peer, and why.
type IgnoredLease struct {
	Key        string       // the lease key below <prefix>/subnets/ (or the full key when malformed)
	Subnet     netip.Prefix // zero when the key is malformed or has no IPv4 part
	IPv6Subnet netip.Prefix // zero when the key is malformed or has no IPv6 part
	Attrs      LeaseAttrs   // zero when malformed
	Reason     string       // one of the Ignored* names
	Detail     string       // for people: what exactly is wrong
}

// Admission decides which leases are peers of this node. It is the one place that judges
// leases: backends, the firewall and /status consume only what it admits. A peer lease has
// a subnet of at least one family this network runs, and for each such family it has:
//   - a network address of exactly the family's subnet length inside its network
//     (Config.Contains, Config.ContainsIPv6),
//   - not overlapping this node's subnet of that family nor another admitted peer's,
//   - a unicast public address of that family (PublicIP, PublicIPv6) that is not this node's;
//
// and it names the BackendType this node runs (any, for udp) with data it can use. The
// subnets of a family the network does not run are not looked at (a dual-stack flanneld
// lease in an IPv4 network is an IPv4 peer). A lease that fails any check is no peer at all.
//
// It is a pure decision over its fields and the lease; WatchPeers keeps the sets.
type Admission struct {
	Network *Config
	Own     Lease // this node's lease: its subnets and public addresses
	Rule    PeerRule
}

// family is one address family of a lease, as admission checks it.
type family struct {
	name     string // "IPv4", "IPv6"
	subnet   netip.Prefix
	own      netip.Prefix // this node's subnet of the family
	pub, me  netip.Addr   // the lease's public address of the family, and this node's
	contains func(netip.Prefix) bool
	network  netip.Prefix
	bits     int
	unicast  func(netip.Addr) bool
}

// families returns the families of l that the network runs and l has.
func (a Admission) families(l Lease) []family {
	var out []family
	if a.Network.EnableIPv4 && l.Subnet.IsValid() {
		out = append(out, family{"IPv4", l.Subnet, a.Own.Subnet, l.Attrs.PublicIP, a.Own.Attrs.PublicIP,
			a.Network.Contains, a.Network.Network, a.Network.SubnetLen, isUnicast4})
	}
	if a.Network.EnableIPv6 && l.IPv6Subnet.IsValid() {
		out = append(out, family{"IPv6", l.IPv6Subnet, a.Own.IPv6Subnet, l.Attrs.PublicIPv6, a.Own.Attrs.PublicIPv6,
			a.Network.ContainsIPv6, a.Network.IPv6Network, a.Network.IPv6SubnetLen, isUnicast6})
	}
	return out
}

// Check says why l cannot be a peer, or returns ok. taken reports whether another key
// already holds an admitted subnet overlapping sn (nil: none does).
func (a Admission) Check(l Lease, taken func(sn netip.Prefix, key string) (string, bool)) (reason, detail string, ok bool) {
	fams := a.families(l)
	if len(fams) == 0 {
		if l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() && a.Network.EnableIPv4 {
			// An IPv4 key that is no subnet (0.0.0.0-0): say what is wrong with it.
			return IgnoredOutside, fmt.Sprintf("subnet %s is not a /%d inside the network %s", l.Subnet, a.Network.SubnetLen, a.Network.Network), false
		}
		return IgnoredFamily, fmt.Sprintf("lease %s has no subnet of the family this network runs (%s)", l.Key(), a.Network.Families()), false
	}
	for _, f := range fams {
		switch {
		case !f.contains(f.subnet):
			return IgnoredOutside, fmt.Sprintf("subnet %s is not a /%d inside the network %s", f.subnet, f.bits, f.network), false
		case f.own.IsValid() && f.subnet.Overlaps(f.own):
			return IgnoredOverlap, fmt.Sprintf("subnet %s overlaps this node's subnet %s", f.subnet, f.own), false
		case !f.unicast(f.pub):
			return IgnoredPublicIP, fmt.Sprintf("public IP %s is not a unicast %s address", f.pub, f.name), false
		case f.me.IsValid() && f.pub == f.me:
			return IgnoredOwnIP, fmt.Sprintf("public IP %s is this node's own (a stale lease of this node?)", f.pub), false
		}
	}
	if !a.Rule.AnyBackendType && l.Attrs.BackendType != a.Rule.BackendType {
		return IgnoredBackendType, fmt.Sprintf("backend type %q is not this node's %q", l.Attrs.BackendType, a.Rule.BackendType), false
	}
	if a.Rule.CheckData != nil {
		if err := a.Rule.CheckData(relevantAttrs(l.Attrs, fams)); err != nil {
			return IgnoredBackendData, fmt.Sprintf("backend data: %v", err), false
		}
	}
	if taken != nil {
		for _, f := range fams {
			if other, dup := taken(f.subnet, l.Key()); dup {
				return IgnoredOverlap, fmt.Sprintf("subnet %s is already a peer under the key %s", f.subnet, other), false
			}
		}
	}
	return "", "", true
}

// relevantAttrs is attrs with only the families in fams: the backend checks the data of
// what this node will program, so that a flanneld dual-stack lease with unusable IPv6 data
// is still an IPv4 peer of an IPv4 network.
func relevantAttrs(attrs LeaseAttrs, fams []family) LeaseAttrs {
	v4, v6 := false, false
	for _, f := range fams {
		v4, v6 = v4 || f.name == "IPv4", v6 || f.name == "IPv6"
	}
	if !v4 {
		attrs.PublicIP, attrs.BackendData = netip.Addr{}, nil
	}
	if !v6 {
		attrs.PublicIPv6, attrs.BackendV6Data = netip.Addr{}, nil
	}
	return attrs
}

// isUnicast4 reports whether a can be a peer's public address: IPv4, not unspecified,
// loopback, multicast or the limited broadcast.
func isUnicast4(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// isUnicast6 reports whether a can be a peer's public IPv6 address: IPv6 (not IPv4-mapped),
// not unspecified, loopback, multicast or link-local (which would need a zone).
func isUnicast6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.Zone() == "" && !a.IsUnspecified() && !a.IsLoopback() &&
		!a.IsMulticast() && !a.IsLinkLocalUnicast()
}

// admission is the rule WatchPeers applies, for the lease this node holds now.
func (m *Manager) admission() Admission {
	return Admission{Network: m.cfg, Own: m.Own(), Rule: m.peers}
}

// Ignored returns the leases in the store that WatchPeers does not admit as peers, by key,
// with their reasons. Safe from any goroutine.
func (m *Manager) Ignored() []IgnoredLease {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ignored)
}

func (m *Manager) logIgnored(ig IgnoredLease) {
	if ig.Reason == IgnoredMalformed {
		m.log.Error(nil, "Skipping malformed lease", "key", ig.Key, "err", ig.Detail)
		return
	}
	m.log.Info("Ignoring a lease that cannot be a peer", "key", ig.Key, "publicIP", ig.Attrs.PublicIP, "publicIPv6", ig.Attrs.PublicIPv6,
		"reason", ig.Reason, "detail", ig.Detail)
}

// reportIgnored publishes ps's ignored leases to Ignored and the Observer.
func (m *Manager) reportIgnored(ps *peerSet) {
	list := ps.sortedIgnored()
	counts := map[string]int{}
	for _, ig := range list {
		counts[ig.Reason]++
	}
	m.mu.Lock()
	m.ignored = list
	m.mu.Unlock()
	m.obs.LeasesIgnored(counts)
	ps.ignoredChanged = false
}
