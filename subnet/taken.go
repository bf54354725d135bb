package subnet

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/pkg/ip"
)

// takenSet is the address space held by leases and reservations, as sorted, merged
// intervals of IPv4 addresses. A free subnet is one that overlaps none of them, whatever
// their length: a /25 inside a node's /24 (left from before a SubnetLen change) is as taken
// as the /24 itself. Only prefixes smaller than the Network and inside it count: a key for
// the whole network or more (0.0.0.0-0) is no node's subnet, and must not block every node
// from taking one.
type takenSet struct {
	spans []span // sorted by first, disjoint after sort
}

// span is the inclusive range of addresses [first, last].
type span struct{ first, last uint32 }

func newTakenSet(network netip.Prefix, leases []Lease) takenSet {
	var ts takenSet
	for _, l := range leases {
		if l.Subnet.Bits() > network.Bits() && network.Contains(l.Subnet.Addr()) {
			ts.add(l.Subnet)
		}
	}
	ts.sort()
	return ts
}

func (ts *takenSet) add(p netip.Prefix) {
	if !p.IsValid() || !p.Addr().Is4() {
		return
	}
	p = p.Masked()
	first := ip.ToUint32(p.Addr())
	ts.spans = append(ts.spans, span{first, first + ip.SubnetSize(p.Bits()) - 1})
}

// sort orders and merges the spans; call it after the last add.
func (ts *takenSet) sort() {
	slices.SortFunc(ts.spans, func(a, b span) int { return cmp.Compare(a.first, b.first) })
	merged := ts.spans[:0]
	for _, s := range ts.spans {
		if n := len(merged); n > 0 && (merged[n-1].last == ^uint32(0) || s.first <= merged[n-1].last+1) {
			merged[n-1].last = max(merged[n-1].last, s.last)
			continue
		}
		merged = append(merged, s)
	}
	ts.spans = merged
}

// overlapping returns the first span that overlaps [first, last], if any.
func (ts takenSet) overlapping(first, last uint32) (span, bool) {
	// The first span whose end is at or after first.
	i, _ := slices.BinarySearchFunc(ts.spans, first, func(s span, v uint32) int { return cmp.Compare(s.last, v) })
	if i < len(ts.spans) && ts.spans[i].first <= last {
		return ts.spans[i], true
	}
	return span{}, false
}

// overlaps reports whether p overlaps any taken address.
func (ts takenSet) overlaps(p netip.Prefix) bool {
	p = p.Masked()
	first := ip.ToUint32(p.Addr())
	_, ok := ts.overlapping(first, first+ip.SubnetSize(p.Bits())-1)
	return ok
}

// free returns up to limit subnets of cfg's length in [SubnetMin, SubnetMax] that overlap
// nothing taken, in ascending order. It skips over taken spans, so its cost grows with the
// number of leases, not with the size of the network.
func (ts takenSet) free(cfg *Config, limit int) []netip.Prefix {
	size := uint64(ip.SubnetSize(cfg.SubnetLen))
	lo, hi := uint64(ip.ToUint32(cfg.SubnetMin)), uint64(ip.ToUint32(cfg.SubnetMax))
	var out []netip.Prefix
	for a := lo; a <= hi && len(out) < limit; {
		s, taken := ts.overlapping(uint32(a), uint32(a+size-1))
		if !taken {
			out = append(out, netip.PrefixFrom(ip.FromUint32(uint32(a)), cfg.SubnetLen))
			a += size
			continue
		}
		// Jump to the first aligned subnet after the taken span.
		next := (uint64(s.last)/size + 1) * size
		a = max(next, a+size)
	}
	return out
}
