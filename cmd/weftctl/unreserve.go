package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/subnet"
)

// unreserveResult is unreserve's JSON output.
type unreserveResult struct {
	Subnet      netip.Prefix `json:"subnet"` // zero ("") for an IPv6-only key
	IPv6Subnet  netip.Prefix `json:"ipv6Subnet,omitzero"`
	Key         string       `json:"key"`
	PublicIP    netip.Addr   `json:"publicIP,omitzero"` // absent if the value did not parse
	PublicIPv6  netip.Addr   `json:"publicIPv6,omitzero"`
	Reservation bool         `json:"reservation"` // false: an ordinary lease, deleted with --force
	Revision    int64        `json:"revision"`
}

func runUnreserve(ctx context.Context, c *cli, args []string) error {
	sn, sn6, err := parseSubnets(args[0])
	if err != nil {
		return err
	}
	reg, err := c.registry()
	if err != nil {
		return err
	}
	res, err := c.unreserve(ctx, reg, sn, sn6)
	if err != nil {
		return err
	}
	if c.opts.output == outputJSON {
		return c.writeJSON(res)
	}
	what := "reservation"
	if !res.Reservation {
		what = "lease"
	}
	held := ""
	if node := subnetsText(netip.PrefixFrom(res.PublicIP, 0), netip.PrefixFrom(res.PublicIPv6, 0)); node != "" {
		held = " of " + node
	}
	fmt.Fprintf(c.stdout, "deleted the %s%s for %s\n", what, held, subnetsText(res.Subnet, res.IPv6Subnet))
	return nil
}

// unreserve deletes a key if it is a reservation (or, with --force, any key), at the
// revision it was checked at (Registry.DeleteLeaseAt). The key is the one of sn and sn6
// exactly if it exists (its value need not parse); else, when one subnet is given, the one
// lease that holds it (e.g. the dual-stack key of an IPv4 subnet); several are ambiguous.
// A lease key naming both subnets matches that key only.
func (c *cli) unreserve(ctx context.Context, reg subnet.Registry, sn, sn6 netip.Prefix) (unreserveResult, error) {
	key := c.leaseKey(sn, sn6)
	res := unreserveResult{Subnet: sn, IPv6Subnet: sn6, Key: key}
	list, err := reg.ListLeases(ctx)
	if err != nil {
		return res, c.etcdError(err)
	}
	var rev, ttlID int64
	found := func(l subnet.Lease) {
		res.Subnet, res.IPv6Subnet, res.Key = l.Subnet, l.IPv6Subnet, c.keys.Lease(l.Key())
		res.PublicIP, res.PublicIPv6, rev, ttlID = l.Attrs.PublicIP, l.Attrs.PublicIPv6, l.Revision, l.TTLID
	}
	if l, ok := keyLease(list, subnet.LeaseKey(sn, sn6)); ok {
		found(l)
	} else if bad := findMalformedKey(list, key); bad != nil {
		rev, ttlID = bad.Revision, bad.TTLID
	} else if h := holders(list, sn, sn6); len(h) == 1 && !(sn.IsValid() && sn6.IsValid()) {
		found(h[0])
	} else if len(h) > 1 {
		keys := ""
		for _, l := range h {
			keys += " " + l.Key()
		}
		return res, fmt.Errorf("%s is in %d keys:%s; name one by its lease key", subnetsText(sn, sn6), len(h), keys)
	} else {
		return res, fmt.Errorf("no reservation or lease for %s at %s: %w", subnetsText(sn, sn6), key, subnet.ErrNotFound)
	}
	res.Reservation = ttlID == 0
	what := subnetsText(res.Subnet, res.IPv6Subnet)
	if !res.Reservation && !c.opts.force {
		holder := ""
		if node := subnetsText(netip.PrefixFrom(res.PublicIP, 0), netip.PrefixFrom(res.PublicIPv6, 0)); node != "" {
			holder = " held by " + node
		}
		return res, fmt.Errorf("%s is an ordinary lease%s (etcd lease %x), not a reservation; "+
			"use --force to delete it (that node then takes a new subnet)", what, holder, ttlID)
	}
	res.Revision, err = reg.DeleteLeaseAt(ctx, res.Subnet, res.IPv6Subnet, rev)
	if errors.Is(err, subnet.ErrTaken) {
		return res, fmt.Errorf("%s changed while being deleted; check with weftctl leases and run again: %w", res.Key, subnet.ErrTaken)
	}
	if err != nil {
		return res, c.etcdError(err)
	}
	return res, nil
}

// holders returns the leases holding sn (when given) or sn6 (when given).
func holders(list subnet.LeaseList, sn, sn6 netip.Prefix) []subnet.Lease {
	var out []subnet.Lease
	for _, l := range list.Leases {
		if sn.IsValid() && l.Subnet == sn || sn6.IsValid() && l.IPv6Subnet == sn6 {
			out = append(out, l)
		}
	}
	return out
}
