package subnet

import (
	"net/netip"
	"slices"

	"github.com/weftnet/weft/pkg/ip"
)

// takenSet is the address space of one family held by leases and reservations, as sorted,
// merged intervals of addresses. A free subnet is one that overlaps none of them, whatever
// their length: a /25 inside a node's /24 (left from before a SubnetLen change) is as taken
// as the /24 itself. Only prefixes smaller than the Network and inside it count: a key for
// the whole network or more (0.0.0.0-0) is no node's subnet, and must not block every node
// from taking one.
type takenSet struct {
	bitLen int    // 32 or 128
	spans  []span // sorted by first, disjoint after sort
}

// span is the inclusive range of addresses [first, last].
type span struct{ first, last ip.U128 }

// newTakenSet collects the subnets of network's family that the leases hold: their IPv4
// subnets for an IPv4 network, their IPv6 subnets for an IPv6 one.
func newTakenSet(network netip.Prefix, leases []Lease) takenSet {
	ts := takenSet{bitLen: network.Addr().BitLen()}
	for _, l := range leases {
		sn := l.Subnet
		if network.Addr().Is6() {
			sn = l.IPv6Subnet
		}
		if sn.IsValid() && sn.Addr().BitLen() == ts.bitLen && sn.Bits() > network.Bits() && network.Contains(sn.Addr()) {
			ts.add(sn)
		}
	}
	ts.sort()
	return ts
}

func (ts *takenSet) add(p netip.Prefix) {
	p = p.Masked()
	ts.spans = append(ts.spans, span{ip.ToU128(p.Addr()), ip.ToU128(ip.LastAddr(p))})
}

// sort orders and merges the spans; call it after the last add.
func (ts *takenSet) sort() {
	slices.SortFunc(ts.spans, func(a, b span) int { return a.first.Cmp(b.first) })
	merged := ts.spans[:0]
	for _, s := range ts.spans {
		if n := len(merged); n > 0 {
			next, over := merged[n-1].last.Add(ip.U128{Lo: 1})
			if over || s.first.Cmp(next) <= 0 {
				if s.last.Cmp(merged[n-1].last) > 0 {
					merged[n-1].last = s.last
				}
				continue
			}
		}
		merged = append(merged, s)
	}
	ts.spans = merged
}

// overlapping returns the first span that overlaps [first, last], if any.
func (ts takenSet) overlapping(first, last ip.U128) (span, bool) {
	// The first span whose end is at or after first.
	i, _ := slices.BinarySearchFunc(ts.spans, first, func(s span, v ip.U128) int { return s.last.Cmp(v) })
	if i < len(ts.spans) && ts.spans[i].first.Cmp(last) <= 0 {
		return ts.spans[i], true
	}
	return span{}, false
}

// overlaps reports whether p overlaps any taken address.
func (ts takenSet) overlaps(p netip.Prefix) bool {
	p = p.Masked()
	_, ok := ts.overlapping(ip.ToU128(p.Addr()), ip.ToU128(ip.LastAddr(p)))
	return ok
}

// free returns up to limit subnets of length bits in [lo, hi] (network addresses of that
// length) that overlap nothing taken, in ascending order. It skips over taken spans, so its
// cost grows with the number of leases, not with the size of the network.
func (ts takenSet) free(lo, hi netip.Addr, bits, limit int) []netip.Prefix {
	if !lo.IsValid() || !hi.IsValid() {
		return nil
	}
	hostMask := ip.HostMask(bits, ts.bitLen)
	one := ip.U128{Lo: 1}
	var out []netip.Prefix
	a, end := ip.ToU128(lo), ip.ToU128(hi)
	for a.Cmp(end) <= 0 && len(out) < limit {
		last := a.Or(hostMask)
		s, taken := ts.overlapping(a, last)
		if !taken {
			out = append(out, netip.PrefixFrom(ip.FromU128(a, ts.bitLen), bits))
		} else if s.last.Cmp(last) > 0 {
			last = s.last.Or(hostMask) // jump to the first aligned subnet after the taken span
		}
		next, over := last.Add(one)
		if over || (ts.bitLen == 32 && next.Hi|next.Lo>>32 != 0) {
			break
		}
		a = next
	}
	return out
}
