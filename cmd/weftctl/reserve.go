package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/subnet"
)

// maxReserveAttempts bounds how often reserve lists again after losing a race.
const maxReserveAttempts = 5

// Actions reported by reserve.
const (
	reserveCreated   = "created"   // the key did not exist
	reserveConverted = "converted" // the node's own lease lost its TTL
	reserveUnchanged = "unchanged" // already reserved for that node
)

// reserveResult is reserve's JSON output. Subnet and PublicIP are zero ("") in an IPv6-only
// reservation; IPv6Subnet and PublicIPv6 are absent in an IPv4-only one.
type reserveResult struct {
	Subnet     netip.Prefix `json:"subnet"`
	PublicIP   netip.Addr   `json:"publicIP"`
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
	PublicIPv6 netip.Addr   `json:"publicIPv6,omitzero"`
	Key        string       `json:"key"`
	Action     string       `json:"action"`
	Revision   int64        `json:"revision"`
	// OtherLeases are further leases of the same node that fit the config; weftd reuses
	// the first of a node's leases in key order, which may not be this one.
	OtherLeases []orphan `json:"otherLeases,omitempty"`
}

// reservation is what reserve writes: the lease's subnets and its value.
type reservation struct {
	sn, sn6 netip.Prefix
	attrs   subnet.LeaseAttrs
}

func (r reservation) lease() subnet.Lease {
	return subnet.Lease{Subnet: r.sn, IPv6Subnet: r.sn6, Attrs: r.attrs}
}

// text names the reservation's subnets and node for messages: "10.244.5.0/24",
// "10.244.5.0/24 and fd00:10:0:5::/64" (dual stack) or "fd00:10:0:5::/64".
func (r reservation) text() string { return subnetsText(r.sn, r.sn6) }

// node names the reservation's node: its public IP, and its public IPv6 in a dual-stack one.
func (r reservation) node() string {
	return subnetsText(netip.PrefixFrom(r.attrs.PublicIP, 0), netip.PrefixFrom(r.attrs.PublicIPv6, 0))
}

// subnetsText joins the valid ones of a (an IPv4 value) and b (an IPv6 value) with " and ";
// a prefix of length 0 prints as its address.
func subnetsText(a, b netip.Prefix) string {
	var s string
	for _, p := range []netip.Prefix{a, b} {
		if !p.IsValid() {
			continue
		}
		t := p.String()
		if p.Bits() == 0 {
			t = p.Addr().String()
		}
		if s != "" {
			s += " and "
		}
		s += t
	}
	return s
}

// subjectText is "subnet X is" or, for two subnets, "subnets X and Y are".
func subjectText(sn, sn6 netip.Prefix) string {
	if sn.IsValid() && sn6.IsValid() {
		return "subnets " + subnetsText(sn, sn6) + " are"
	}
	return "subnet " + subnetsText(sn, sn6) + " is"
}

// parseReservation reads reserve's arguments and flags: SUBNET (parseSubnets) and
// PUBLIC-IP, with --ipv6-subnet and --public-ipv6 for a dual-stack reservation. PUBLIC-IP
// is IPv4 when SUBNET has an IPv4 subnet, else (IPv6 only) IPv6; a reservation with an
// IPv6 subnet needs a public IPv6 (PUBLIC-IP of an IPv6-only one, else --public-ipv6).
func parseReservation(o *options, args []string) (reservation, error) {
	var r reservation
	var err error
	if r.sn, r.sn6, err = parseSubnets(args[0]); err != nil {
		return r, err
	}
	if o.ipv6Subnet != "" {
		switch {
		case r.sn6.IsValid():
			return r, usagef("--ipv6-subnet %s: SUBNET %s already names the IPv6 subnet", o.ipv6Subnet, args[0])
		case !r.sn.IsValid():
			return r, usagef("--ipv6-subnet goes with an IPv4 SUBNET (a dual-stack reservation)")
		}
		if r.sn6, err = parseIPv6Subnet("--ipv6-subnet", o.ipv6Subnet); err != nil {
			return r, err
		}
	}
	v6only := !r.sn.IsValid()
	pub, err := parsePublicIP("public IP", args[1], v6only)
	if err != nil {
		return r, err
	}
	if v6only {
		r.attrs.PublicIPv6 = pub
	} else {
		r.attrs.PublicIP = pub
	}
	if o.publicIPv6 != "" {
		if !r.sn6.IsValid() {
			return r, usagef("--public-ipv6 goes with a reservation that has an IPv6 subnet (--ipv6-subnet, or an IPv6 SUBNET)")
		}
		pub6, err := parsePublicIP("--public-ipv6", o.publicIPv6, true)
		if err != nil {
			return r, err
		}
		if v6only && pub6 != pub {
			return r, usagef("--public-ipv6 %s differs from PUBLIC-IP %s of an IPv6-only reservation", pub6, pub)
		}
		r.attrs.PublicIPv6 = pub6
	}
	if r.sn6.IsValid() && !r.attrs.PublicIPv6.IsValid() {
		return r, usagef("a reservation with the IPv6 subnet %s needs the node's public IPv6 address (--public-ipv6)", r.sn6)
	}
	return r, nil
}

// fitError says why cfg does not fit a reservation of sn and sn6 (a node's lease has a
// subnet for exactly the families the network runs), or nil.
func fitError(cfg *subnet.Config, sn, sn6 netip.Prefix) error {
	switch {
	case cfg.EnableIPv4 && !sn.IsValid():
		return fmt.Errorf("the network is %s: the reservation needs an IPv4 subnet of Network %s (SUBNET)", cfg.Families(), cfg.Network)
	case !cfg.EnableIPv4 && sn.IsValid():
		return fmt.Errorf("the network is IPv6-only (EnableIPv4 false): give SUBNET as an IPv6 subnet of IPv6Network %s, not %s", cfg.IPv6Network, sn)
	case cfg.EnableIPv6 && !sn6.IsValid():
		return fmt.Errorf("the network is %s: the reservation needs an IPv6 subnet of IPv6Network %s (--ipv6-subnet)", cfg.Families(), cfg.IPv6Network)
	case !cfg.EnableIPv6 && sn6.IsValid():
		return fmt.Errorf("the network does not run IPv6 (EnableIPv6 false): %s cannot be reserved", sn6)
	case sn.IsValid() && !cfg.Contains(sn):
		return fmt.Errorf("subnet %s does not fit the network config (Network %s, SubnetLen /%d)", sn, cfg.Network, cfg.SubnetLen)
	case sn6.IsValid() && !cfg.ContainsIPv6(sn6):
		return fmt.Errorf("subnet %s does not fit the network config (IPv6Network %s, IPv6SubnetLen /%d)", sn6, cfg.IPv6Network, cfg.IPv6SubnetLen)
	}
	return nil
}

func runReserve(ctx context.Context, c *cli, args []string) error {
	want, err := parseReservation(c.opts, args)
	if err != nil {
		return err
	}
	reg, err := c.registry()
	if err != nil {
		return err
	}
	cfg, err := c.readConfig(ctx, reg)
	if err != nil {
		return err
	}
	if err := fitError(cfg, want.sn, want.sn6); err != nil {
		return err
	}
	res, err := c.reserve(ctx, reg, cfg, want)
	if err != nil {
		return err
	}
	if c.opts.output == outputJSON {
		return c.writeJSON(res)
	}
	switch res.Action {
	case reserveCreated:
		fmt.Fprintf(c.stdout, "reserved %s for %s\n", want.text(), want.node())
	case reserveConverted:
		fmt.Fprintf(c.stdout, "reserved %s for %s (its lease is now a reservation without TTL)\n", want.text(), want.node())
	default:
		fmt.Fprintf(c.stdout, "%s is already reserved for %s\n", want.text(), want.node())
	}
	if len(res.OtherLeases) > 0 {
		fmt.Fprintf(c.stderr, "warning: %s also holds these subnets; weftd keeps the first of a node's leases in key order,\n"+
			"so delete the others (weftctl unreserve [--force] SUBNET) for the reservation to be used:\n", want.node())
		c.printOrphans(c.stderr, res.OtherLeases)
	}
	return nil
}

// sameNode reports whether l names the node of want: by its public IP, or in an IPv6-only
// reservation by its public IPv6 (as weftd finds its own lease). A dual-stack lease must
// name want's public IPv6 too.
func sameNode(l subnet.Lease, want reservation) bool {
	if want.sn.IsValid() && l.Attrs.PublicIP != want.attrs.PublicIP {
		return false
	}
	return !want.sn6.IsValid() || l.Attrs.PublicIPv6 == want.attrs.PublicIPv6
}

// reserve makes want a reservation: create its key if absent, or drop the TTL of the
// node's own lease at that key, keeping its value. A key holding one of want's subnets
// with other subnets is refused. Each write is one transaction guarded by the revision
// the decision was made on; a lost race lists again.
func (c *cli) reserve(ctx context.Context, reg subnet.Registry, cfg *subnet.Config, want reservation) (reserveResult, error) {
	wl := want.lease()
	res := reserveResult{Subnet: want.sn, PublicIP: want.attrs.PublicIP, IPv6Subnet: want.sn6, PublicIPv6: want.attrs.PublicIPv6,
		Key: c.keys.Lease(wl.Key())}
	for attempt := 0; attempt < maxReserveAttempts; attempt++ {
		list, err := reg.ListLeases(ctx)
		if err != nil {
			return res, c.etcdError(err)
		}
		res.OtherLeases = otherLeases(cfg, list.Leases, want)
		l, found := keyLease(list, wl.Key())
		if bad := findMalformedKey(list, res.Key); bad != nil {
			return res, fmt.Errorf("key %s exists but does not parse (%v); delete it first with weftctl unreserve --force %s", bad.Key, bad.Err, wl.Key())
		}
		if other, ok := overlapping(list, want); ok {
			shared := sharedSubnets(other, want)
			return res, fmt.Errorf("%s is in the lease %s of %s (%s); delete it first (weftctl unreserve [--force] %s): %w",
				subnetsText(shared[0], shared[1]), c.keys.Lease(other.Key()), leaseNode(other), leaseKind(other), other.Key(), subnet.ErrTaken)
		}
		switch {
		case found && !sameNode(l, want):
			return res, fmt.Errorf("%s held by %s (%s), not %s: %w", subjectText(want.sn, want.sn6), leaseNode(l), leaseKind(l), want.node(), subnet.ErrTaken)
		case found && l.Reserved():
			res.Action, res.Revision = reserveUnchanged, l.Revision
			return res, nil
		case found:
			nl, err := reg.UpdateLease(ctx, l, l.Attrs, 0)
			if errors.Is(err, subnet.ErrTaken) {
				continue
			}
			if err != nil {
				return res, c.etcdError(err)
			}
			res.Action, res.Revision = reserveConverted, nl.Revision
			return res, nil
		default:
			nl, err := reg.CreateLease(ctx, want.sn, want.sn6, want.attrs, 0)
			if errors.Is(err, subnet.ErrTaken) {
				continue
			}
			if err != nil {
				return res, c.etcdError(err)
			}
			res.Action, res.Revision = reserveCreated, nl.Revision
			return res, nil
		}
	}
	return res, fmt.Errorf("reserve %s: the key kept changing during %d attempts: %w", want.text(), maxReserveAttempts, subnet.ErrTaken)
}

// keyLease returns the lease stored at key (below subnets/).
func keyLease(list subnet.LeaseList, key string) (subnet.Lease, bool) {
	for _, l := range list.Leases {
		if l.Key() == key {
			return l, true
		}
	}
	return subnet.Lease{}, false
}

// overlapping returns a lease at another key than want's that holds one of want's subnets.
func overlapping(list subnet.LeaseList, want reservation) (subnet.Lease, bool) {
	key := want.lease().Key()
	for _, l := range list.Leases {
		if l.Key() != key && (sharedSubnets(l, want) != [2]netip.Prefix{}) {
			return l, true
		}
	}
	return subnet.Lease{}, false
}

// sharedSubnets returns the subnets l has in common with want, IPv4 then IPv6, zero where
// none.
func sharedSubnets(l subnet.Lease, want reservation) (shared [2]netip.Prefix) {
	if want.sn.IsValid() && l.Subnet == want.sn {
		shared[0] = want.sn
	}
	if want.sn6.IsValid() && l.IPv6Subnet == want.sn6 {
		shared[1] = want.sn6
	}
	return shared
}

// leaseNode names a lease's node for messages: its public IP, and its public IPv6 if any.
func leaseNode(l subnet.Lease) string {
	s := subnetsText(netip.PrefixFrom(l.Attrs.PublicIP, 0), netip.PrefixFrom(l.Attrs.PublicIPv6, 0))
	if s == "" {
		return "no public IP"
	}
	return s
}

// otherLeases returns the leases of want's node, other than want's key, that fit cfg.
func otherLeases(cfg *subnet.Config, leases []subnet.Lease, want reservation) []orphan {
	key := want.lease().Key()
	var out []orphan
	for _, l := range leases {
		if l.Key() != key && cfg.Fits(l) && sameNode(l, want) {
			out = append(out, orphanOf(l))
		}
	}
	return out
}

func leaseKind(l subnet.Lease) string {
	if l.Reserved() {
		return "a reservation"
	}
	return "a lease"
}
