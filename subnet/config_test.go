package subnet

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		js                string
		subnetLen         int
		min, max, backend string
	}{
		{`{"Network":"10.244.0.0/16"}`, 24, "10.244.1.0", "10.244.255.0", "udp"},
		{`{"Network":"10.244.0.0/22","Backend":{"Type":"host-gw"}}`, 24, "10.244.1.0", "10.244.3.0", "host-gw"},
		{`{"Network":"10.244.0.0/24"}`, 26, "10.244.0.64", "10.244.0.192", "udp"},
		{`{"Network":"10.244.0.0/28"}`, 30, "10.244.0.4", "10.244.0.12", "udp"},
		{`{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","SubnetMax":"10.20.0.0","Backend":{"Type":"udp","Port":8285}}`, 20, "10.10.0.0", "10.20.0.0", "udp"},
		{`{"Network":"10.244.0.0/16","EnableIPv4":true,"EnableIPv6":false,"EnableNFTables":false,"Backend":{"Type":"vxlan"}}`, 24, "10.244.1.0", "10.244.255.0", "vxlan"},
	} {
		c, err := ParseConfig([]byte(tc.js))
		if err != nil {
			t.Errorf("%s: %v", tc.js, err)
			continue
		}
		if c.SubnetLen != tc.subnetLen || c.SubnetMin != netip.MustParseAddr(tc.min) || c.SubnetMax != netip.MustParseAddr(tc.max) || c.BackendType != tc.backend {
			t.Errorf("%s: got len %d min %s max %s backend %s", tc.js, c.SubnetLen, c.SubnetMin, c.SubnetMax, c.BackendType)
		}
	}
}

func TestParseConfigErrorsNameKeyAndValue(t *testing.T) {
	for _, tc := range []struct{ js, want string }{
		{`not json`, "not valid JSON"},
		{`{"Network":"10.244.0.0/16"} {}`, "trailing data"},
		{`{}`, "Network is missing"},
		{`{"Network":"banana"}`, `"banana" is not a CIDR`},
		{`{"Network":"fd00::/64"}`, `"fd00::/64" is not an IPv4 network`},
		{`{"Network":"10.244.0.0/29"}`, "Network 10.244.0.0/29 is too small"},
		{`{"Network":"10.244.0.0/16","SubnetLen":16}`, "SubnetLen 16 out of range"},
		{`{"Network":"10.244.0.0/16","SubnetLen":17}`, "at least four subnets"},
		{`{"Network":"10.244.0.0/16","SubnetLen":31}`, "SubnetLen 31 out of range"},
		{`{"Network":"10.244.0.0/16","SubnetLen":"24"}`, "SubnetLen"},
		{`{"Network":"10.244.0.0/16","SubnetMin":"10.245.0.0"}`, "SubnetMin 10.245.0.0 is outside Network 10.244.0.0/16"},
		{`{"Network":"10.244.0.0/16","SubnetMax":"10.244.3.7"}`, "SubnetMax 10.244.3.7 is not aligned to SubnetLen /24"},
		{`{"Network":"10.244.0.0/16","SubnetMin":"x"}`, `SubnetMin "x" is not an IPv4 address`},
		{`{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.3.0"}`, "SubnetMin 10.244.9.0 is above SubnetMax 10.244.3.0"},
		{`{"Network":"10.244.0.0/16","Backend":"vxlan"}`, `Backend must be a JSON object, got "vxlan"`},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":7}}`, "Backend.Type 7 is not a backend name"},
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"10.244.0.0/16"}`, `IPv6Network: "10.244.0.0/16" is not an IPv6 network`},
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMin":"fd01::"}`, "IPv6SubnetMin fd01:: is outside IPv6Network fd00::/56"},
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMax":"fd00::1"}`, "IPv6SubnetMax fd00::1 is not aligned to IPv6SubnetLen /64"},
	} {
		_, err := ParseConfig([]byte(tc.js))
		if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an ErrInvalidConfig containing %q", tc.js, err, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{"Network":"10.244.0.0/16"}`, `{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","Backend":{"Type":"vxlan","VNI":2}}`, `{"Network":"10.244.0.0/28"}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		// Whatever parses is self-consistent.
		if !c.InRange(netip.PrefixFrom(c.SubnetMin, c.SubnetLen)) || !c.InRange(netip.PrefixFrom(c.SubnetMax, c.SubnetLen)) {
			t.Fatalf("bounds outside range: %+v", c)
		}
		if len(FreeSubnets(c, nil, 3)) == 0 {
			t.Fatalf("no subnet in a valid range: %+v", c)
		}
	})
}
