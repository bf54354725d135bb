package subnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/weftnet/weft/pkg/wait"
)

// Acquire takes a lease for a node publishing attrs, in flannel's order: the existing lease
// naming this node's public address (a reservation stays a reservation); then the subnets
// of hint (those of the previous subnet file, or of the lease just lost) if they are free
// and in range; then random free subnets among the first ones from SubnetMin (and
// IPv6SubnetMin). A lease has one subnet per family the network runs. Losing a create race
// moves on to other subnets. When a range is full it returns an error wrapping
// ErrNoFreeSubnet.
//
// With a Registry that assigns the subnets (an Assigner: Kubernetes) there is no choice to
// make: Acquire claims the assigned subnets, which must fit the config, and hint is unused.
func (m *Manager) Acquire(ctx context.Context, attrs LeaseAttrs, hint Lease) (Lease, error) {
	if as, ok := m.reg.(Assigner); ok {
		l, err := m.claimAssigned(ctx, as, attrs)
		if err == nil {
			m.setOwn(l)
		}
		return l, err
	}
	for attempt := 0; attempt < maxCreateAttempts; attempt++ {
		l, err := m.tryAcquire(ctx, attrs, hint)
		if err == nil {
			m.setOwn(l)
			return l, nil
		}
		if !errors.Is(err, ErrTaken) {
			return Lease{}, err
		}
		// Lost a race: the next list shows the winner. Avoid lock-step retries.
		hint = Lease{}
		if err := wait.Sleep(ctx, m.jitter(10*time.Millisecond, 50*time.Millisecond)); err != nil {
			return Lease{}, err
		}
	}
	return Lease{}, fmt.Errorf("acquire: lost %d create races in a row: %w", maxCreateAttempts, ErrTaken)
}

// claimAssigned claims the subnets the Registry assigns to this node.
func (m *Manager) claimAssigned(ctx context.Context, as Assigner, attrs LeaseAttrs) (Lease, error) {
	sn, sn6, err := as.AssignedSubnets(ctx, m.cfg)
	if err != nil {
		return Lease{}, err
	}
	want := Lease{Subnet: sn, IPv6Subnet: sn6}
	if !m.cfg.Fits(want) {
		return Lease{}, fmt.Errorf("the subnets %s assigned to this node do not fit the network config (%s): the config's networks and subnet lengths must match how the cluster assigns node subnets",
			DescribeSubnets(sn, sn6), m.cfg.describe())
	}
	l, err := m.reg.CreateLease(ctx, sn, sn6, attrs, 0)
	if err != nil {
		m.obs.StoreError("create", err)
		return Lease{}, fmt.Errorf("claim the assigned subnets %s: %w", DescribeSubnets(sn, sn6), err)
	}
	m.log.Info("Claimed the subnets assigned to this node", "subnet", sn, "ipv6Subnet", sn6, "publicIP", l.Attrs.PublicIP, "publicIPv6", l.Attrs.PublicIPv6)
	return l, nil
}

// DescribeSubnets names a lease's subnets for messages: "10.244.5.0/24", "fd00::/64" or
// "10.244.5.0/24 and fd00::/64".
func DescribeSubnets(sn, sn6 netip.Prefix) string {
	switch {
	case sn.IsValid() && sn6.IsValid():
		return sn.String() + " and " + sn6.String()
	case sn6.IsValid():
		return sn6.String()
	}
	return sn.String()
}

// describe names the config's networks for messages.
func (c *Config) describe() string {
	var parts []string
	if c.EnableIPv4 {
		parts = append(parts, fmt.Sprintf("/%d subnets of %s", c.SubnetLen, c.Network))
	}
	if c.EnableIPv6 {
		parts = append(parts, fmt.Sprintf("/%d subnets of %s", c.IPv6SubnetLen, c.IPv6Network))
	}
	return strings.Join(parts, " and ")
}

func (m *Manager) tryAcquire(ctx context.Context, attrs LeaseAttrs, hint Lease) (Lease, error) {
	list, err := m.reg.ListLeases(ctx)
	if err != nil {
		m.obs.StoreError("list", err)
		return Lease{}, fmt.Errorf("list leases: %w", err)
	}
	if mine, ok := findMine(list.Leases, attrs, m.cfg, hint); ok {
		return m.reuse(ctx, mine, attrs)
	}
	var taken4, taken6 takenSet
	if m.cfg.EnableIPv4 {
		taken4 = newTakenSet(m.cfg.Network, list.Leases)
	}
	if m.cfg.EnableIPv6 {
		taken6 = newTakenSet(m.cfg.IPv6Network, list.Leases)
	}
	if (hint.Subnet.IsValid() || hint.IPv6Subnet.IsValid()) && m.hintFree(hint, taken4, taken6) {
		sn, sn6 := hint.Subnet.Masked(), hint.IPv6Subnet.Masked()
		l, err := m.reg.CreateLease(ctx, sn, sn6, attrs, m.ttl)
		if err == nil {
			m.log.Info("Took the subnets of the previous subnet file", "subnet", sn, "ipv6Subnet", sn6)
			return l, nil
		}
		if !errors.Is(err, ErrTaken) {
			return Lease{}, fmt.Errorf("create lease %s: %w", DescribeSubnets(sn, sn6), err)
		}
	}
	// One random index into both families' free lists, as flanneld: the key is a function of
	// it, so two nodes that draw the same IPv4 subnet from the same listing draw the same
	// key too, and the create transaction lets only one of them have it. Nodes whose
	// listings differ can still pair one subnet with different ones of the other family:
	// the Registry refuses the second key (etcdv3.Registry.CreateLease), and the loser
	// lists again.
	var free4, free6 []netip.Prefix
	if m.cfg.EnableIPv4 {
		if free4, err = freeOf(taken4, m.cfg.SubnetMin, m.cfg.SubnetMax, m.cfg.SubnetLen, m.cfg.Network, ""); err != nil {
			return Lease{}, err
		}
	}
	if m.cfg.EnableIPv6 {
		if free6, err = freeOf(taken6, m.cfg.IPv6SubnetMin, m.cfg.IPv6SubnetMax, m.cfg.IPv6SubnetLen, m.cfg.IPv6Network, "IPv6 "); err != nil {
			return Lease{}, err
		}
	}
	n := len(free4)
	if !m.cfg.EnableIPv4 || (m.cfg.EnableIPv6 && len(free6) < n) {
		n = len(free6)
	}
	i := m.intN(n)
	var sn, sn6 netip.Prefix
	if m.cfg.EnableIPv4 {
		sn = free4[i]
	}
	if m.cfg.EnableIPv6 {
		sn6 = free6[i]
	}
	l, err := m.reg.CreateLease(ctx, sn, sn6, attrs, m.ttl)
	if err != nil {
		return Lease{}, fmt.Errorf("create lease %s: %w", DescribeSubnets(sn, sn6), err)
	}
	return l, nil
}

// freeOf returns the first free subnets of one family's range [lo, hi], or says that the
// range is full (family is "" or "IPv6 ", for the message).
func freeOf(ts takenSet, lo, hi netip.Addr, bits int, network netip.Prefix, family string) ([]netip.Prefix, error) {
	free := ts.free(lo, hi, bits, maxCandidates)
	if len(free) == 0 {
		return nil, fmt.Errorf("all %ssubnets from %s to %s (/%d) of %s are taken: %w", family, lo, hi, bits, network, ErrNoFreeSubnet)
	}
	return free, nil
}

// hintFree reports whether hint has a subnet for exactly the families the network runs,
// each in range and free.
func (m *Manager) hintFree(hint Lease, taken4, taken6 takenSet) bool {
	h := Lease{Subnet: hint.Subnet.Masked(), IPv6Subnet: hint.IPv6Subnet.Masked()} // a zero Prefix stays zero
	if !m.cfg.Fits(h) {
		return false
	}
	return (!m.cfg.EnableIPv4 || (m.cfg.InRange(h.Subnet) && !taken4.overlaps(h.Subnet))) &&
		(!m.cfg.EnableIPv6 || (m.cfg.InRangeIPv6(h.IPv6Subnet) && !taken6.overlaps(h.IPv6Subnet)))
}

// reuse keeps my existing lease: renew it in place when its value is already right,
// otherwise rewrite it (a reservation stays a reservation).
func (m *Manager) reuse(ctx context.Context, mine Lease, attrs LeaseAttrs) (Lease, error) {
	if mine.Attrs.Equal(attrs) {
		l, err := m.reg.RenewLease(ctx, mine)
		if err == nil {
			m.log.Info("Reusing my existing lease", "lease", mine.Key(), "reserved", mine.Reserved())
			return l, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Lease{}, fmt.Errorf("renew lease %s: %w", mine.Key(), err)
		}
	}
	ttl := m.ttl
	if mine.Reserved() {
		ttl = 0
	}
	l, err := m.reg.UpdateLease(ctx, mine, attrs, ttl)
	if err != nil {
		return Lease{}, fmt.Errorf("update lease %s: %w", mine.Key(), err)
	}
	m.log.Info("Reusing my existing lease with updated attributes", "lease", l.Key(), "reserved", l.Reserved())
	return l, nil
}

// findMine returns the lease of this node that fits the config (a subnet for exactly the
// families it runs): one naming attrs.PublicIP, or in an IPv6-only network
// attrs.PublicIPv6. It prefers a reservation (an operator's pin beats an ordinary lease the
// node may also still hold), then the lease of hint (the subnets the node had: another lease
// naming its address, e.g. a stale one, must not move its pods), then the first in key order.
func findMine(leases []Lease, attrs LeaseAttrs, cfg *Config, hint Lease) (Lease, bool) {
	var found Lease
	rank := 0 // 0: none, 1: any, 2: the hint's, 3: a reservation
	for _, l := range leases {
		if !isMine(l, attrs, cfg) {
			continue
		}
		r := 1
		switch {
		case l.Reserved():
			r = 3
		case sameSubnets(l, hint):
			r = 2
		}
		if r > rank {
			found, rank = l, r
		}
	}
	return found, rank > 0
}

// isMine reports whether l fits cfg and names the node publishing attrs.
func isMine(l Lease, attrs LeaseAttrs, cfg *Config) bool {
	if !cfg.Fits(l) {
		return false
	}
	if cfg.EnableIPv4 {
		return attrs.PublicIP.IsValid() && l.Attrs.PublicIP == attrs.PublicIP
	}
	return attrs.PublicIPv6.IsValid() && l.Attrs.PublicIPv6 == attrs.PublicIPv6
}

// sameSubnets reports whether l has the subnets of hint (any hint subnet given, masked).
func sameSubnets(l, hint Lease) bool {
	if !hint.Subnet.IsValid() && !hint.IPv6Subnet.IsValid() {
		return false
	}
	same := func(a, b netip.Prefix) bool { return a.IsValid() == b.IsValid() && (!a.IsValid() || a == b.Masked()) }
	return same(l.Subnet, hint.Subnet) && same(l.IPv6Subnet, hint.IPv6Subnet)
}

// FreeSubnets returns up to limit IPv4 subnets in [SubnetMin, SubnetMax] that overlap no
// taken subnet inside the Network, whatever its length, in ascending order.
func FreeSubnets(cfg *Config, taken []netip.Prefix, limit int) []netip.Prefix {
	leases := make([]Lease, len(taken))
	for i, p := range taken {
		leases[i] = Lease{Subnet: p}
	}
	return newTakenSet(cfg.Network, leases).free(cfg.SubnetMin, cfg.SubnetMax, cfg.SubnetLen, limit)
}
