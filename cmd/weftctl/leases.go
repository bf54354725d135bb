package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/subnet"
)

// leaseRow is one lease in leases' output. An IPv6-only lease has a zero ("") Subnet and
// PublicIP; an IPv4-only one no IPv6 fields.
type leaseRow struct {
	Key           string          `json:"key"` // below subnets/, e.g. 10.244.5.0-24&fd00:10:0:5::-64
	Subnet        netip.Prefix    `json:"subnet"`
	IPv6Subnet    netip.Prefix    `json:"ipv6Subnet,omitzero"`
	PublicIP      netip.Addr      `json:"publicIP"`
	PublicIPv6    netip.Addr      `json:"publicIPv6,omitzero"`
	BackendType   string          `json:"backendType"` // "" for flannel's udp leases
	BackendData   json.RawMessage `json:"backendData,omitempty"`
	BackendV6Data json.RawMessage `json:"backendV6Data,omitempty"`
	Reserved      bool            `json:"reserved"`
	// EtcdLeaseID is the key's etcd lease in hex, as etcdctl prints it; absent for a
	// reservation.
	EtcdLeaseID string `json:"etcdLeaseID,omitempty"`
	// Expires and ExpiresInSeconds are absent for a reservation; an etcd lease that ran out
	// between the listing and the TTL query shows ExpiresInSeconds 0.
	Expires          time.Time `json:"expires,omitzero"`
	ExpiresInSeconds *int64    `json:"expiresInSeconds,omitempty"`
}

// malformedRow is a key below subnets/ that does not parse.
type malformedRow struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// leasesResult is leases' JSON output.
type leasesResult struct {
	Revision  int64          `json:"revision"`
	Leases    []leaseRow     `json:"leases"`
	Malformed []malformedRow `json:"malformed"`
}

func runLeases(ctx context.Context, c *cli, _ []string) error {
	reg, err := c.registry()
	if err != nil {
		return err
	}
	res, err := c.listLeases(ctx, reg)
	if err != nil {
		return err
	}
	if c.opts.output == outputJSON {
		return c.writeJSON(res)
	}
	now := c.clock()
	// The IPv6 columns appear when a lease has an IPv6 side: an IPv4-only store's table is
	// as it always was.
	v6 := slices.ContainsFunc(res.Leases, func(r leaseRow) bool { return r.IPv6Subnet.IsValid() || r.PublicIPv6.IsValid() })
	tw := c.table()
	if v6 {
		fmt.Fprintln(tw, "SUBNET\tIPV6-SUBNET\tPUBLIC-IP\tPUBLIC-IPV6\tBACKEND\tEXPIRES-IN\tRESERVED")
	} else {
		fmt.Fprintln(tw, "SUBNET\tPUBLIC-IP\tBACKEND\tEXPIRES-IN\tRESERVED")
	}
	for _, r := range res.Leases {
		expires := "-"
		if !r.Reserved {
			expires = humanDuration(r.Expires.Sub(now))
		}
		if v6 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(addrText(r.Subnet)), dash(addrText(r.IPv6Subnet)),
				dash(addrText(r.PublicIP)), dash(addrText(r.PublicIPv6)), dash(r.BackendType), expires, yesNo(r.Reserved))
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Subnet, r.PublicIP, dash(r.BackendType), expires, yesNo(r.Reserved))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(res.Malformed) > 0 {
		fmt.Fprintf(c.stdout, "\n%d malformed key(s) (weftd skips them):\n", len(res.Malformed))
		tw = c.table()
		fmt.Fprintln(tw, "KEY\tERROR")
		for _, m := range res.Malformed {
			fmt.Fprintf(tw, "%s\t%s\n", m.Key, oneLine(m.Error))
		}
		return tw.Flush()
	}
	return nil
}

// listLeases lists the leases sorted by subnet (IPv4, then IPv6; IPv6-only leases last), with each etcd lease's time to live (one
// TimeToLive request per distinct etcd lease).
func (c *cli) listLeases(ctx context.Context, reg subnet.Registry) (leasesResult, error) {
	list, err := reg.ListLeases(ctx)
	if err != nil {
		return leasesResult{}, c.etcdError(err)
	}
	now := c.clock()
	ttls := make(map[int64]int64) // etcd lease ID -> remaining seconds, -1 when gone
	res := leasesResult{Revision: list.Revision, Leases: []leaseRow{}, Malformed: []malformedRow{}}
	for _, l := range list.Leases {
		r := leaseRow{
			Key:    l.Key(),
			Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet,
			PublicIP: l.Attrs.PublicIP, PublicIPv6: l.Attrs.PublicIPv6,
			BackendType: l.Attrs.BackendType, BackendData: l.Attrs.BackendData, BackendV6Data: l.Attrs.BackendV6Data,
			Reserved: l.Reserved(),
		}
		if !l.Reserved() {
			ttl, ok := ttls[l.TTLID]
			if !ok {
				if ttl, err = c.timeToLive(ctx, reg, l); err != nil {
					return leasesResult{}, err
				}
				ttls[l.TTLID] = ttl
			}
			r.EtcdLeaseID = fmt.Sprintf("%x", l.TTLID)
			secs := max(ttl, 0)
			r.ExpiresInSeconds = &secs
			r.Expires = now.Add(time.Duration(secs) * time.Second)
		}
		res.Leases = append(res.Leases, r)
	}
	slices.SortFunc(res.Leases, func(a, b leaseRow) int { return compareSubnets(a.Subnet, a.IPv6Subnet, b.Subnet, b.IPv6Subnet) })
	for _, m := range list.Malformed {
		res.Malformed = append(res.Malformed, malformedRow{Key: m.Key, Error: m.Err.Error()})
	}
	return res, nil
}

// timeToLive returns the remaining whole seconds of l's etcd lease, -1 when it no longer
// exists.
func (c *cli) timeToLive(ctx context.Context, reg subnet.Registry, l subnet.Lease) (int64, error) {
	d, err := reg.TimeToLive(ctx, l)
	if errors.Is(err, subnet.ErrNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, c.etcdError(err)
	}
	return int64(d / time.Second), nil
}

// findMalformedKey returns the malformed key of a listing whose full etcd key is key, or
// nil.
func findMalformedKey(list subnet.LeaseList, key string) *subnet.Malformed {
	for i, m := range list.Malformed {
		if m.Key == key {
			return &list.Malformed[i]
		}
	}
	return nil
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
