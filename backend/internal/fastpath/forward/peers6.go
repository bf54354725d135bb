package forward

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/weftnet/weft/pkg/ip"
)

// peers6 is the IPv6 half of a PeerTable, laid out like the IPv4 half: the subnets sorted
// by their first address, with each subnet's first and last address as 128-bit integers
// in parallel arrays, so a lookup is one binary search over integers, without
// allocation.
type peers6 struct {
	peers []Peer    // sorted by subnet start; subnets do not overlap
	first []ip.U128 // peers[i]'s first address
	last  []ip.U128 // peers[i]'s last address
}

// newPeers6 sorts IPv6 peers and checks that their subnets do not overlap.
func newPeers6(peers []Peer) (peers6, error) {
	t := peers6{
		peers: slices.Clone(peers),
		first: make([]ip.U128, len(peers)),
		last:  make([]ip.U128, len(peers)),
	}
	slices.SortFunc(t.peers, func(a, b Peer) int {
		return cmp.Compare(a.Subnet.Addr().Compare(b.Subnet.Addr()), 0)
	})
	for i, p := range t.peers {
		t.first[i] = ip.ToU128(p.Subnet.Addr())
		t.last[i] = t.first[i].Or(ip.HostMask(p.Subnet.Bits(), 128))
		if i > 0 && t.first[i].Cmp(t.last[i-1]) <= 0 {
			return peers6{}, fmt.Errorf("peer subnets %s and %s overlap", t.peers[i-1].Subnet, p.Subnet)
		}
	}
	return t, nil
}

// lookup returns the index of the peer whose subnet holds the address hi:lo.
func (t *peers6) lookup(hi, lo uint64) (int, bool) {
	// Find the last subnet that starts at or before the address.
	i, j := 0, len(t.first)
	for i < j {
		mid := int(uint(i+j) >> 1)
		if f := t.first[mid]; f.Hi < hi || (f.Hi == hi && f.Lo <= lo) {
			i = mid + 1
		} else {
			j = mid
		}
	}
	if i == 0 {
		return 0, false
	}
	if l := t.last[i-1]; hi > l.Hi || (hi == l.Hi && lo > l.Lo) {
		return 0, false
	}
	return i - 1, true
}
