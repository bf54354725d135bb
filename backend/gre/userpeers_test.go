package gre

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/subnet"
)

func lease6(sn, sn6, pub string) subnet.Lease {
	l := subnet.Lease{Attrs: subnet.LeaseAttrs{BackendType: Name}}
	if sn != "" {
		l.Subnet = netip.MustParsePrefix(sn)
	}
	if sn6 != "" {
		l.IPv6Subnet = netip.MustParsePrefix(sn6)
	}
	if pub != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(pub)
	}
	return l
}

// TestLeasePeers checks the userspace peer set: keyed by the lease key, carrying the
// families the node runs, and the fast-path table built from it (both subnets of a
// dual-stack peer behind its one IPv4 endpoint).
func TestLeasePeers(t *testing.T) {
	type step struct {
		ev   subnet.Event
		kind changeKind
	}
	ev := func(typ subnet.EventType, sn, sn6, pub string) subnet.Event {
		return subnet.Event{Type: typ, Lease: lease6(sn, sn6, pub)}
	}
	for _, tc := range []struct {
		name       string
		run4, run6 bool
		steps      []step
		table      map[string]string // subnet -> endpoint of the resulting table
	}{
		{"dual-stack peers", true, true, []step{
			{ev(subnet.Added, "10.244.2.0/24", "fd00:0:0:2::/64", "192.0.2.2"), added},
			{ev(subnet.Added, "10.244.2.0/24", "fd00:0:0:2::/64", "192.0.2.2"), unchanged},
			{ev(subnet.Added, "10.244.3.0/24", "fd00:0:0:3::/64", "192.0.2.3"), added},
			{ev(subnet.Added, "10.244.3.0/24", "fd00:0:0:3::/64", "192.0.2.9"), updated},
		}, map[string]string{
			"10.244.2.0/24": "192.0.2.2:0", "fd00:0:0:2::/64": "192.0.2.2:0",
			"10.244.3.0/24": "192.0.2.9:0", "fd00:0:0:3::/64": "192.0.2.9:0",
		}},
		{"two leases with one IPv4 subnet are two peers", true, true, []step{
			{ev(subnet.Added, "10.244.2.0/24", "", "192.0.2.2"), added},
			{ev(subnet.Added, "10.244.4.0/24", "fd00:0:0:4::/64", "192.0.2.4"), added},
			{ev(subnet.Removed, "10.244.4.0/24", "fd00:0:0:4::/64", "192.0.2.4"), removed},
			{ev(subnet.Removed, "10.244.4.0/24", "fd00:0:0:4::/64", "192.0.2.4"), unchanged},
		}, map[string]string{"10.244.2.0/24": "192.0.2.2:0"}},
		{"IPv6-only lease without an IPv4 public IP is not carried", true, true, []step{
			{ev(subnet.Added, "", "fd00:0:0:5::/64", ""), unchanged},
			{ev(subnet.Added, "10.244.2.0/24", "fd00:0:0:2::/64", "192.0.2.2"), added},
		}, map[string]string{"10.244.2.0/24": "192.0.2.2:0", "fd00:0:0:2::/64": "192.0.2.2:0"}},
		{"IPv6-only peers go to their PublicIPv6", false, true, []step{
			{ev6(subnet.Added, "fd00:0:0:2::/64", "2001:db8::2"), added},
			{ev6(subnet.Added, "fd00:0:0:3::/64", "2001:db8::3"), added},
			{ev6(subnet.Added, "fd00:0:0:3::/64", "2001:db8::9"), updated},
			{ev6(subnet.Added, "fd00:0:0:4::/64", ""), unchanged},
			{ev6(subnet.Removed, "fd00:0:0:2::/64", "2001:db8::2"), removed},
		}, map[string]string{"fd00:0:0:3::/64": "[2001:db8::9]:0"}},
		{"IPv4-only node ignores IPv6 subnets", true, false, []step{
			{ev(subnet.Added, "10.244.2.0/24", "fd00:0:0:2::/64", "192.0.2.2"), added},
		}, map[string]string{"10.244.2.0/24": "192.0.2.2:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newLeasePeers(tc.run4, tc.run6)
			for i, st := range tc.steps {
				if c := s.apply(st.ev); c.kind != st.kind || c.key != st.ev.Lease.Key() {
					t.Fatalf("step %d (%v %s): %s key %q, want %s", i, st.ev.Type, st.ev.Lease.Key(), c.kind, c.key, st.kind)
				}
			}
			tab, err := s.table()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, p := range tab.Peers() {
				got[p.Subnet.String()] = p.Endpoint.String()
			}
			if len(got) != len(tc.table) {
				t.Fatalf("table %v, want %v", got, tc.table)
			}
			for sn, ep := range tc.table {
				if got[sn] != ep {
					t.Fatalf("table %v, want %v", got, tc.table)
				}
				if p, ok := tab.Lookup(netip.MustParsePrefix(sn).Addr().Next()); !ok || p.Endpoint.String() != ep {
					t.Fatalf("Lookup in %s: %v, %v", sn, p, ok)
				}
			}
		})
	}
}

func TestLeasePeersUnreachable6(t *testing.T) {
	s := newLeasePeers(true, true)
	c := s.apply(subnet.Event{Type: subnet.Added, Lease: lease6("", "fd00:0:0:5::/64", "")})
	if c.unreachable6 != netip.MustParsePrefix("fd00:0:0:5::/64") || len(s.peers) != 0 {
		t.Fatalf("change %+v, peers %v", c, s.peers)
	}
}

func TestCheckFamilies(t *testing.T) {
	for _, tc := range []struct {
		json string
		mode Mode
		want string // substring of the error, "" for none
	}{
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"gre"}}`, ModeKernel, ""},
		{`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/48","Backend":{"Type":"gre"}}`, ModeAuto, ""},
		{`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/48","Backend":{"Type":"gre"}}`, ModeUserspace, ""},
		{`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/48","Backend":{"Type":"gre"}}`, ModeKernel, `Mode: value "kernel"`},
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","Backend":{"Type":"gre"}}`, ModeAuto, ""},
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","Backend":{"Type":"gre"}}`, ModeUserspace, ""},
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","Backend":{"Type":"gre"}}`, ModeKernel, `Mode: value "kernel" carries IPv4 only, but the network has EnableIPv4=false`},
	} {
		cfg, err := subnet.ParseConfig([]byte(tc.json))
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		err = checkFamilies(cfg, tc.mode)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s, %s: %v, want ~%q", tc.json, tc.mode, err, tc.want)
		}
	}
}

// ev6 is a peer event for an IPv6-only lease with public IPv6 pub6 ("" for none).
func ev6(typ subnet.EventType, sn6, pub6 string) subnet.Event {
	l := subnet.Lease{IPv6Subnet: netip.MustParsePrefix(sn6), Attrs: subnet.LeaseAttrs{BackendType: Name}}
	if pub6 != "" {
		l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
	}
	return subnet.Event{Type: typ, Lease: l}
}
