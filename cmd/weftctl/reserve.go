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

// reserveResult is reserve's JSON output.
type reserveResult struct {
	Subnet   netip.Prefix `json:"subnet"`
	PublicIP netip.Addr   `json:"publicIP"`
	Key      string       `json:"key"`
	Action   string       `json:"action"`
	Revision int64        `json:"revision"`
	// OtherLeases are further leases of the same public IP that fit the config; weftd
	// reuses the first of a node's leases in key order, which may not be this one.
	OtherLeases []orphan `json:"otherLeases,omitempty"`
}

func runReserve(ctx context.Context, c *cli, args []string) error {
	sn, err := parseSubnet(args[0])
	if err != nil {
		return err
	}
	pub, err := parsePublicIP(args[1])
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
	if !cfg.Contains(sn) {
		return fmt.Errorf("subnet %s does not fit the network config (Network %s, SubnetLen /%d)", sn, cfg.Network, cfg.SubnetLen)
	}
	res, err := c.reserve(ctx, reg, cfg, sn, pub)
	if err != nil {
		return err
	}
	if c.opts.output == outputJSON {
		return c.writeJSON(res)
	}
	switch res.Action {
	case reserveCreated:
		fmt.Fprintf(c.stdout, "reserved %s for %s\n", sn, pub)
	case reserveConverted:
		fmt.Fprintf(c.stdout, "reserved %s for %s (its lease is now a reservation without TTL)\n", sn, pub)
	default:
		fmt.Fprintf(c.stdout, "%s is already reserved for %s\n", sn, pub)
	}
	if len(res.OtherLeases) > 0 {
		fmt.Fprintf(c.stderr, "warning: %s also holds these subnets; weftd keeps the first of a node's leases in key order,\n"+
			"so delete the others (weftctl unreserve [--force] SUBNET) for the reservation to be used:\n", pub)
		c.printOrphans(c.stderr, res.OtherLeases)
	}
	return nil
}

// reserve makes sn a reservation for pub: create the key if absent, or drop the TTL of
// pub's own lease keeping its value. Each write is one transaction guarded by the
// revision the decision was made on; a lost race lists again.
func (c *cli) reserve(ctx context.Context, reg subnet.Registry, cfg *subnet.Config, sn netip.Prefix, pub netip.Addr) (reserveResult, error) {
	res := reserveResult{Subnet: sn, PublicIP: pub, Key: c.leaseKey(sn)}
	for attempt := 0; attempt < maxReserveAttempts; attempt++ {
		list, err := reg.ListLeases(ctx)
		if err != nil {
			return res, c.etcdError(err)
		}
		res.OtherLeases = otherLeases(cfg, list.Leases, sn, pub)
		l, bad, found := c.findLease(list, sn)
		switch {
		case bad != nil:
			return res, fmt.Errorf("key %s exists but does not parse (%v); delete it first with weftctl unreserve --force %s", bad.Key, bad.Err, sn)
		case found && l.Attrs.PublicIP != pub:
			return res, fmt.Errorf("subnet %s is held by %s (%s), not %s: %w", sn, l.Attrs.PublicIP, leaseKind(l), pub, subnet.ErrTaken)
		case found && l.Reserved():
			res.Key, res.Action, res.Revision = c.keys.Lease(l.Key()), reserveUnchanged, l.Revision
			return res, nil
		case found:
			nl, err := reg.UpdateLease(ctx, l, l.Attrs, 0)
			if errors.Is(err, subnet.ErrTaken) {
				continue
			}
			if err != nil {
				return res, c.etcdError(err)
			}
			res.Key, res.Action, res.Revision = c.keys.Lease(nl.Key()), reserveConverted, nl.Revision
			return res, nil
		default:
			nl, err := reg.CreateLease(ctx, sn, netip.Prefix{}, subnet.LeaseAttrs{PublicIP: pub}, 0)
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
	return res, fmt.Errorf("reserve %s: the key kept changing during %d attempts: %w", sn, maxReserveAttempts, subnet.ErrTaken)
}

// otherLeases returns pub's leases other than sn that fit cfg.
func otherLeases(cfg *subnet.Config, leases []subnet.Lease, sn netip.Prefix, pub netip.Addr) []orphan {
	var out []orphan
	for _, l := range leases {
		if l.Attrs.PublicIP == pub && l.Subnet != sn && cfg.Contains(l.Subnet) {
			out = append(out, orphan{Subnet: l.Subnet, PublicIP: pub, Reserved: l.Reserved()})
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

// unreserveResult is unreserve's JSON output.
type unreserveResult struct {
	Subnet      netip.Prefix `json:"subnet"`
	Key         string       `json:"key"`
	PublicIP    netip.Addr   `json:"publicIP,omitzero"` // absent if the value did not parse
	Reservation bool         `json:"reservation"`       // false: an ordinary lease, deleted with --force
	Revision    int64        `json:"revision"`
}

func runUnreserve(ctx context.Context, c *cli, args []string) error {
	sn, err := parseSubnet(args[0])
	if err != nil {
		return err
	}
	reg, err := c.registry()
	if err != nil {
		return err
	}
	res, err := c.unreserve(ctx, reg, sn)
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
	if res.PublicIP.IsValid() {
		held = " of " + res.PublicIP.String()
	}
	fmt.Fprintf(c.stdout, "deleted the %s%s for %s\n", what, held, sn)
	return nil
}

// unreserve deletes sn's key if it is a reservation (or, with --force, any key), at the
// revision it was checked at (Registry.DeleteLeaseAt). Only sn's own (IPv4) key counts; its
// value need not parse.
func (c *cli) unreserve(ctx context.Context, reg subnet.Registry, sn netip.Prefix) (unreserveResult, error) {
	key := c.leaseKey(sn)
	res := unreserveResult{Subnet: sn, Key: key}
	list, err := reg.ListLeases(ctx)
	if err != nil {
		return res, c.etcdError(err)
	}
	var rev, ttlID int64
	if l, ok := exactLease(list, sn); ok {
		res.PublicIP, rev, ttlID = l.Attrs.PublicIP, l.Revision, l.TTLID
	} else if bad := c.findMalformed(list, sn); bad != nil {
		rev, ttlID = bad.Revision, bad.TTLID
	} else {
		return res, fmt.Errorf("no reservation or lease for %s at %s: %w", sn, key, subnet.ErrNotFound)
	}
	res.Reservation = ttlID == 0
	if !res.Reservation && !c.opts.force {
		holder := ""
		if res.PublicIP.IsValid() {
			holder = " held by " + res.PublicIP.String()
		}
		return res, fmt.Errorf("%s is an ordinary lease%s (etcd lease %x), not a reservation; "+
			"use --force to delete it (that node then takes a new subnet)", sn, holder, ttlID)
	}
	res.Revision, err = reg.DeleteLeaseAt(ctx, sn, netip.Prefix{}, rev)
	if errors.Is(err, subnet.ErrTaken) {
		return res, fmt.Errorf("%s changed while being deleted; check with weftctl leases and run again: %w", key, subnet.ErrTaken)
	}
	if err != nil {
		return res, c.etcdError(err)
	}
	return res, nil
}

// exactLease returns the lease stored at sn's own key: an IPv4 key, not a dual-stack one.
func exactLease(list subnet.LeaseList, sn netip.Prefix) (subnet.Lease, bool) {
	for _, l := range list.Leases {
		if l.Subnet == sn && !l.IPv6Subnet.IsValid() {
			return l, true
		}
	}
	return subnet.Lease{}, false
}
