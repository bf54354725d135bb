package subnet

import (
	"cmp"
	"maps"
	"net/netip"
	"path"
	"slices"
)

// peerSet is WatchPeers' view of the other nodes' leases, owned by its goroutine: the
// admitted peers and the ignored leases, both decided by adm. Its methods fold changes in
// and return the peer events they cause.
type peerSet struct {
	adm   Admission
	peers map[string]Lease // admitted, by key
	// bySubnet indexes the admitted peers' subnets of the families the network runs: the
	// key holding each.
	bySubnet map[netip.Prefix]string
	ignored  map[string]IgnoredLease // by key
	// ignoredChanged: ignored changed since the Manager last took a snapshot of it.
	ignoredChanged bool
	// logged is the reason and detail last logged per key, so that each is logged once,
	// also across resyncs.
	logged map[string]string
	logf   func(IgnoredLease) // logs a newly ignored lease
}

func newPeerSet(adm Admission, logf func(IgnoredLease)) *peerSet {
	return &peerSet{adm: adm, peers: map[string]Lease{}, bySubnet: map[netip.Prefix]string{},
		ignored: map[string]IgnoredLease{}, logged: map[string]string{}, logf: logf}
}

// takenBy reports the key of an admitted peer, other than key, whose subnet overlaps sn.
// Admitted subnets of a family all have its subnet length and are aligned, so overlapping
// means equal: the same subnet under another key (a dual-stack key with the same IPv4
// part as an IPv4 key).
func (ps *peerSet) takenBy(sn netip.Prefix, key string) (string, bool) {
	if k, ok := ps.bySubnet[sn]; ok && k != key {
		return k, true
	}
	return "", false
}

// subnets returns the subnets of l that admission looked at: those of the families the
// network runs.
func (ps *peerSet) subnets(l Lease) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range ps.adm.families(l) {
		out = append(out, f.subnet)
	}
	return out
}

// admit records l as an admitted peer.
func (ps *peerSet) admit(l Lease) {
	key := l.Key()
	ps.peers[key] = l
	for _, sn := range ps.subnets(l) {
		ps.bySubnet[sn] = key
	}
}

// add folds in a lease that was created or changed.
func (ps *peerSet) add(l Lease) []Event {
	key := l.Key()
	reason, detail, ok := ps.adm.Check(l, ps.takenBy)
	if !ok {
		ps.ignore(IgnoredLease{Key: key, Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet, Attrs: l.Attrs, Reason: reason, Detail: detail})
		return ps.dropPeer(key)
	}
	if _, was := ps.ignored[key]; was {
		delete(ps.ignored, key)
		ps.ignoredChanged = true
	}
	old, known := ps.peers[key]
	ps.admit(l)
	if known && old.Attrs.Equal(l.Attrs) {
		return nil
	}
	return []Event{{Type: Added, Lease: l}}
}

// remove folds in the deletion of the lease under key.
func (ps *peerSet) remove(key string) []Event {
	delete(ps.logged, key)
	if _, was := ps.ignored[key]; was {
		delete(ps.ignored, key)
		ps.ignoredChanged = true
	}
	events := ps.dropPeer(key)
	if len(events) > 0 {
		// Its subnets are free again: a lease that overlapped them may be a peer now.
		gone := events[0].Lease
		for _, ig := range ps.sortedIgnored() {
			if ig.Reason != IgnoredOverlap {
				continue
			}
			l := Lease{Subnet: ig.Subnet, IPv6Subnet: ig.IPv6Subnet, Attrs: ig.Attrs}
			if (l.Subnet.IsValid() && l.Subnet == gone.Subnet) || (l.IPv6Subnet.IsValid() && l.IPv6Subnet == gone.IPv6Subnet) {
				if more := ps.add(l); len(more) > 0 {
					events = append(events, more...)
					break
				}
			}
		}
	}
	return events
}

// malformed folds in a key whose key or value cannot be parsed: it is ignored, and if its
// key names an admitted peer, that peer is no longer usable.
func (ps *peerSet) malformed(bad Malformed) []Event {
	key := path.Base(bad.Key)
	ig := IgnoredLease{Key: bad.Key, Reason: IgnoredMalformed, Detail: bad.Err.Error()}
	if v4, v6, err := ParseLeaseKey(key); err == nil {
		ig.Key, ig.Subnet, ig.IPv6Subnet = key, v4, v6
		ps.ignore(ig)
		return ps.dropPeer(key)
	}
	ps.ignore(ig)
	return nil
}

// dropPeer removes the peer admitted under key, if any.
func (ps *peerSet) dropPeer(key string) []Event {
	p, ok := ps.peers[key]
	if !ok {
		return nil
	}
	delete(ps.peers, key)
	for _, sn := range ps.subnets(p) {
		if ps.bySubnet[sn] == key {
			delete(ps.bySubnet, sn)
		}
	}
	return []Event{{Type: Removed, Lease: p}}
}

func (ps *peerSet) ignore(ig IgnoredLease) {
	if text := ig.Reason + ": " + ig.Detail; ps.logged[ig.Key] != text {
		ps.logged[ig.Key] = text
		if ps.logf != nil {
			ps.logf(ig)
		}
	}
	if old, ok := ps.ignored[ig.Key]; ok && old.Reason == ig.Reason && old.Detail == ig.Detail {
		return
	}
	ps.ignored[ig.Key] = ig
	ps.ignoredChanged = true
}

// resync replaces the set with a full list and returns the differences: Added for new and
// changed peers, Removed for peers gone or no longer admitted. The result is never nil (an
// empty first batch still says "initial state known"). The list's leases are judged in a
// fixed order, peers admitted before first, so that a subnet under two keys keeps the key it
// had.
func (ps *peerSet) resync(list LeaseList) []Event {
	old := ps.peers
	ps.peers = make(map[string]Lease, len(old))
	ps.bySubnet = make(map[netip.Prefix]string, len(old))
	oldIgnored := ps.ignored
	ps.ignored = make(map[string]IgnoredLease, len(oldIgnored))
	for _, bad := range list.Malformed {
		ps.malformed(bad)
	}
	leases := slices.Clone(list.Leases)
	slices.SortFunc(leases, func(a, b Lease) int {
		_, pa := old[a.Key()]
		_, pb := old[b.Key()]
		if pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Key(), b.Key())
	})
	for _, l := range leases {
		if !ps.adm.Own.IsZero() && l.Key() == ps.adm.Own.Key() {
			continue // this node's own lease: Hold's business
		}
		ps.add(l)
	}
	// Removed first: a subnet that changed keys is removed before its new lease is added.
	events := []Event{}
	for _, key := range slices.Sorted(maps.Keys(old)) {
		if _, ok := ps.peers[key]; !ok {
			events = append(events, Event{Type: Removed, Lease: old[key]})
		}
	}
	for _, l := range leases {
		if _, ok := ps.peers[l.Key()]; ok {
			if o, was := old[l.Key()]; !was || !o.Attrs.Equal(l.Attrs) {
				events = append(events, Event{Type: Added, Lease: l})
			}
		}
	}
	for key := range ps.logged {
		if _, ok := ps.ignored[key]; !ok {
			delete(ps.logged, key)
		}
	}
	ps.ignoredChanged = ps.ignoredChanged || !sameIgnored(oldIgnored, ps.ignored)
	return events
}

func sameIgnored(a, b map[string]IgnoredLease) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		if y, ok := b[k]; !ok || x.Reason != y.Reason || x.Detail != y.Detail {
			return false
		}
	}
	return true
}

// sortedIgnored returns the ignored leases by key.
func (ps *peerSet) sortedIgnored() []IgnoredLease {
	out := make([]IgnoredLease, 0, len(ps.ignored))
	for _, ig := range ps.ignored {
		out = append(out, ig)
	}
	slices.SortFunc(out, func(a, b IgnoredLease) int { return cmp.Compare(a.Key, b.Key) })
	return out
}
