package main

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/subnet"
)

func TestConfigJSON(t *testing.T) {
	tests := []struct {
		fam           family
		backend, want string
	}{
		{familyIPv4, "host-gw", `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`},
		{familyIPv4, "vxlan", `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`},
		{familyIPv4, `we"ird`, `{"Network":"10.244.0.0/16","Backend":{"Type":"we\"ird"}}`},
		{familyDualStack, "vxlan",
			`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`},
		{familyIPv6, "host-gw",
			`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`},
	}
	for _, tt := range tests {
		got := configJSON(tt.fam, tt.backend)
		if got != tt.want {
			t.Errorf("configJSON(%s, %q) = %s, want %s", tt.fam, tt.backend, got, tt.want)
			continue
		}
		// weftd's own parser reads it as the family asked for.
		if tt.backend == `we"ird` {
			continue
		}
		cfg, err := subnet.ParseConfig([]byte(got))
		if err != nil {
			t.Errorf("subnet.ParseConfig(%s): %v", got, err)
			continue
		}
		if cfg.EnableIPv4 != tt.fam.v4() || cfg.EnableIPv6 != tt.fam.v6() {
			t.Errorf("%s: parsed EnableIPv4 %t EnableIPv6 %t", got, cfg.EnableIPv4, cfg.EnableIPv6)
		}
	}
}

func TestParseFamily(t *testing.T) {
	for _, s := range []string{"ipv4", "dual-stack", "ipv6"} {
		if f, err := parseFamily(s); err != nil || string(f) != s {
			t.Errorf("parseFamily(%q) = %q, %v", s, f, err)
		}
	}
	for _, s := range []string{"", "IPv6", "dual", "v4"} {
		_, err := parseFamily(s)
		if err == nil || !strings.Contains(err.Error(), `"`+s+`"`) {
			t.Errorf("parseFamily(%q): err %v, want one naming the value", s, err)
		}
	}
}

func TestFamilyParts(t *testing.T) {
	tests := []struct {
		fam   family
		cidrs []string
		probe []probeFamily
		pub   string
	}{
		{familyIPv4, []string{"10.244.3.0/24"}, []probeFamily{{"IPv4", false}}, "public IP a"},
		{familyDualStack, []string{"10.244.3.0/24", "fd00:10:244:3::/64"},
			[]probeFamily{{"IPv4", false}, {"IPv6", true}}, "public IP a, public IPv6 b"},
		{familyIPv6, []string{"fd00:10:244:3::/64"}, []probeFamily{{"IPv6", true}}, "public IPv6 b"},
	}
	for _, tt := range tests {
		if got := podCIDRs(tt.fam, 2); !reflect.DeepEqual(got, tt.cidrs) {
			t.Errorf("podCIDRs(%s, 2) = %q, want %q", tt.fam, got, tt.cidrs)
		}
		if got := tt.fam.probeFamilies(); !reflect.DeepEqual(got, tt.probe) {
			t.Errorf("%s.probeFamilies() = %v, want %v", tt.fam, got, tt.probe)
		}
		if got := publicIPs(tt.fam, "a", "b"); got != tt.pub {
			t.Errorf("publicIPs(%s) = %q, want %q", tt.fam, got, tt.pub)
		}
	}
	if got, want := podCIDRs(familyIPv6, 15), []string{"fd00:10:244:10::/64"}; !reflect.DeepEqual(got, want) {
		t.Errorf("podCIDRs(ipv6, 15) = %q, want %q (hex, as the /64 of node 16)", got, want)
	}
	if got, want := famNames(familyDualStack.probeFamilies()), "IPv4 and IPv6"; got != want {
		t.Errorf("famNames = %q, want %q", got, want)
	}
}

func TestLeaseNames(t *testing.T) {
	v4 := netip.MustParsePrefix("10.244.1.1/24")
	v6 := netip.MustParsePrefix("fd00:10:244:1::1/64")
	tests := []struct {
		env           subnetenv.Env
		subnets, vars string
		key           string
	}{
		{subnetenv.Env{Subnet: v4}, "10.244.1.0/24", "FLANNEL_SUBNET=10.244.1.1/24", "10.244.1.0-24"},
		{subnetenv.Env{Subnet: v4, IPv6Subnet: v6}, "10.244.1.0/24 fd00:10:244:1::/64",
			"FLANNEL_SUBNET=10.244.1.1/24 FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64", "10.244.1.0-24&fd00:10:244:1::-64"},
		{subnetenv.Env{IPv6Subnet: v6}, "fd00:10:244:1::/64", "FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64",
			"0.0.0.0-0&fd00:10:244:1::-64"},
		{subnetenv.Env{}, "-", "", "0.0.0.0-0"},
	}
	for _, tt := range tests {
		if got := subnets(tt.env.Subnet, tt.env.IPv6Subnet); got != tt.subnets {
			t.Errorf("subnets(%v) = %q, want %q", tt.env, got, tt.subnets)
		}
		if got := envSubnets(tt.env); got != tt.vars {
			t.Errorf("envSubnets(%v) = %q, want %q", tt.env, got, tt.vars)
		}
		// The etcd key reportLease reads.
		if got := subnet.LeaseKey(tt.env.Subnet.Masked(), tt.env.IPv6Subnet.Masked()); got != tt.key {
			t.Errorf("LeaseKey(%v) = %q, want %q", tt.env, got, tt.key)
		}
	}
}
