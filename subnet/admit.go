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
	IgnoredOverlap     = "overlap"         // overlaps this node's subnet or another peer's
	IgnoredPublicIP    = "public-ip"       // not a unicast IPv4 address
	IgnoredOwnIP       = "own-public-ip"   // names this node's public IP (a stale lease of this node)
	IgnoredBackendType = "backend-type"    // another backend type than the one this node runs
	IgnoredBackendData = "backend-data"    // BackendData the backend cannot use
)

// IgnoredLease is a lease in the store that is not a peer, and why.
type IgnoredLease struct {
	Key    string       // the lease key below <prefix>/subnets/ (or the full key when malformed)
	Subnet netip.Prefix // zero when the key is malformed
	Attrs  LeaseAttrs   // zero when malformed
	Reason string       // one of the Ignored* names
	Detail string       // for people: what exactly is wrong
}

// Admission decides which leases are peers of this node. It is the one place that judges
// leases: backends, the firewall and /status consume only what it admits. A peer lease is
//   - a network address of exactly SubnetLen inside Network (what Config.Contains says),
//   - not this node's subnet, and overlapping no other admitted peer,
//   - with a unicast IPv4 PublicIP that is not this node's,
//   - naming the BackendType this node runs (any, for udp) with BackendData it can use.
//
// It is a pure decision over its fields and the lease; WatchPeers keeps the sets.
type Admission struct {
	Network *Config
	Own     Lease // this node's lease: its subnet and PublicIP
	Rule    PeerRule
}

// Check says why l cannot be a peer, or returns ok. taken reports whether another key
// already holds an admitted subnet overlapping sn (nil: none does).
func (a Admission) Check(l Lease, taken func(sn netip.Prefix, key string) (string, bool)) (reason, detail string, ok bool) {
	sn := l.Subnet
	switch {
	case !a.Network.Contains(sn):
		return IgnoredOutside, fmt.Sprintf("subnet %s is not a /%d inside the network %s", sn, a.Network.SubnetLen, a.Network.Network), false
	case a.Own.Subnet.IsValid() && sn.Overlaps(a.Own.Subnet):
		return IgnoredOverlap, fmt.Sprintf("subnet %s overlaps this node's subnet %s", sn, a.Own.Subnet), false
	case !isUnicast4(l.Attrs.PublicIP):
		return IgnoredPublicIP, fmt.Sprintf("public IP %s is not a unicast IPv4 address", l.Attrs.PublicIP), false
	case a.Own.Attrs.PublicIP.IsValid() && l.Attrs.PublicIP == a.Own.Attrs.PublicIP:
		return IgnoredOwnIP, fmt.Sprintf("public IP %s is this node's own (a stale lease of this node?)", l.Attrs.PublicIP), false
	case !a.Rule.AnyBackendType && l.Attrs.BackendType != a.Rule.BackendType:
		return IgnoredBackendType, fmt.Sprintf("backend type %q is not this node's %q", l.Attrs.BackendType, a.Rule.BackendType), false
	}
	if a.Rule.CheckData != nil {
		if err := a.Rule.CheckData(l.Attrs); err != nil {
			return IgnoredBackendData, fmt.Sprintf("backend data: %v", err), false
		}
	}
	if taken != nil {
		if other, dup := taken(sn, l.Key()); dup {
			return IgnoredOverlap, fmt.Sprintf("subnet %s is already a peer under the key %s", sn, other), false
		}
	}
	return "", "", true
}

// isUnicast4 reports whether a can be a peer's public address: IPv4, not unspecified,
// loopback, multicast or the limited broadcast.
func isUnicast4(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
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
	m.log.Info("Ignoring a lease that cannot be a peer", "key", ig.Key, "publicIP", ig.Attrs.PublicIP,
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
