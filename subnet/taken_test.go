package subnet_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/subnettest"
)

func TestFreeSubnetsMixedLengths(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","SubnetLen":25}`)
	for _, tc := range []struct {
		name  string
		taken []string
		want  []string
	}{
		{"a /24 of an older SubnetLen takes both /25 halves", []string{"10.244.0.128/25", "10.244.1.0/24"},
			[]string{"10.244.2.0/25", "10.244.2.128/25"}},
		{"a /23 takes four /25s", []string{"10.244.0.0/23"}, []string{"10.244.2.0/25", "10.244.2.128/25"}},
		{"a /26 takes the /25 it lies in", []string{"10.244.0.192/26", "10.244.1.64/26"},
			[]string{"10.244.1.128/25", "10.244.2.0/25"}},
		{"a /30 and a /32 too", []string{"10.244.0.132/30", "10.244.1.9/32"}, []string{"10.244.1.128/25", "10.244.2.0/25"}},
		{"overlapping taken spans merge", []string{"10.244.0.0/20", "10.244.1.0/24", "10.244.15.128/25"},
			[]string{"10.244.16.0/25", "10.244.16.128/25"}},
		{"the whole network or more is no node's subnet", []string{"0.0.0.0/0", "10.0.0.0/8", "10.244.0.0/16"},
			[]string{"10.244.0.128/25", "10.244.1.0/25"}},
		{"prefixes outside the network do not matter", []string{"192.168.0.0/16"}, []string{"10.244.0.128/25", "10.244.1.0/25"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var taken []netip.Prefix
			for _, s := range tc.taken {
				taken = append(taken, pfx(s))
			}
			free := subnet.FreeSubnets(cfg, taken, 2)
			var got []string
			for _, p := range free {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("FreeSubnets(%v) = %v, want %v", tc.taken, got, tc.want)
			}
		})
	}
}

// A node holding 10.244.1.0/24 from before a change to SubnetLen 25 keeps its whole /24:
// no other node is handed 10.244.1.0/25 or 10.244.1.128/25, neither as a free subnet nor
// from its old subnet file.
func TestAcquireNeverOverlapsAfterSubnetLenChange(t *testing.T) {
	reg := subnettest.New()
	ctx := context.Background()
	if _, err := reg.CreateLease(ctx, pfx("10.244.1.0/24"), netip.Prefix{}, subnettest.MustAttrs("192.0.2.1", "vxlan"), time.Hour); err != nil {
		t.Fatal(err)
	}
	cfg := mustConfig(t, `{"Network":"10.244.0.0/22","SubnetLen":25}`)
	m := newManager(t, reg, cfg)
	seen := map[netip.Prefix]bool{}
	for i := range 4 {
		l, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2."+string(rune('2'+i)), "vxlan"), subnet.Lease{Subnet: pfx("10.244.1.0/25")})
		if err != nil {
			t.Fatal(err)
		}
		if l.Subnet.Overlaps(pfx("10.244.1.0/24")) || seen[l.Subnet] {
			t.Fatalf("node %d was given %s, which overlaps a live lease", i, l.Subnet)
		}
		seen[l.Subnet] = true
	}
}

// A node that lost its lease and finds two leases naming its address (its own and a stale
// one) takes its own subnet back, not the first in key order: its pods keep their addresses.
func TestAcquirePrefersTheSubnetItHad(t *testing.T) {
	reg := subnettest.New()
	ctx := context.Background()
	me := subnettest.MustAttrs("192.0.2.1", "vxlan")
	for _, sn := range []string{"10.244.3.0/24", "10.244.9.0/24"} {
		if _, err := reg.CreateLease(ctx, pfx(sn), netip.Prefix{}, me, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	l, err := newManager(t, reg, cfg).Acquire(ctx, me, subnet.Lease{Subnet: pfx("10.244.9.0/24")})
	if err != nil || l.Subnet != pfx("10.244.9.0/24") {
		t.Fatalf("Acquire with hint 10.244.9.0/24 = %v, %v; want the hint's lease", l.Subnet, err)
	}
}
