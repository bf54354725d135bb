package tundev

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/internal/kernel"
)

func TestRelevant(t *testing.T) {
	p := &Plane{dev: Device{Name: "flannel0", Index: 4, Network: netip.MustParsePrefix("10.244.0.0/16")}}
	pfx := netip.MustParsePrefix
	for _, c := range []struct {
		name string
		c    kernel.Change
		want bool
	}{
		{"the device", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 4}, true},
		{"the device by name", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 8, LinkName: "flannel0"}, true},
		{"other link", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 2, LinkName: "eth0"}, false},
		{"the device's address", kernel.Change{Kind: kernel.AddrChange, LinkIndex: 4}, true},
		{"eth0 address", kernel.Change{Kind: kernel.AddrChange, LinkIndex: 2}, false},
		{"network route elsewhere", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: pfx("10.244.0.0/16")}, true},
		{"route via the device", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 4, Prefix: pfx("10.9.0.0/16")}, true},
		{"local table", kernel.Change{Kind: kernel.RouteChange, Table: 255, LinkIndex: 4, Prefix: pfx("10.244.1.0/32")}, false},
		{"pod route", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 6, Prefix: pfx("10.244.1.0/24")}, false},
		{"neighbour", kernel.Change{Kind: kernel.NeighChange, LinkIndex: 4}, false},
	} {
		if got := p.relevant(c.c); got != c.want {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestRelevantWithoutIPv4: a device that carries no IPv4 (an IPv6-only network) has no
// Network; a route change elsewhere is not its, whatever its prefix.
func TestRelevantWithoutIPv4(t *testing.T) {
	p := &Plane{dev: Device{Name: "weft-gre0", Index: 4}}
	for _, c := range []struct {
		name string
		c    kernel.Change
		want bool
	}{
		{"route without prefix elsewhere", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2}, false},
		{"route via the device", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 4, Prefix: netip.MustParsePrefix("10.9.0.0/16")}, true},
		{"the device's address", kernel.Change{Kind: kernel.AddrChange, LinkIndex: 4}, true},
	} {
		if got := p.relevant(c.c); got != c.want {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestRelevantIPv6: a device with IPv6 also cares for a route to its Network6 through
// another link, and subscribes to IPv6 changes; one without does neither.
func TestRelevantIPv6(t *testing.T) {
	pfx := netip.MustParsePrefix
	dual := Device{Name: "weft-gre0", Index: 4, Network: pfx("10.244.0.0/16"), Own6: pfx("fd00:10:244:1::/64"), Network6: pfx("fd00:10:244::/56")}
	other6 := kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: pfx("fd00:10:244::/56")}
	via6 := kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 4, Prefix: pfx("fd00:99::/64")}
	pod6 := kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 6, Prefix: pfx("fd00:10:244:1::/64")}
	if !(&Plane{dev: dual}).relevant(other6) || !dual.Concerns(via6) || dual.Concerns(pod6) {
		t.Errorf("dual-stack device: network route elsewhere %v, route via it %v, pod route %v; want true, true, false",
			dual.Concerns(other6), dual.Concerns(via6), dual.Concerns(pod6))
	}
	if got := dual.Families(); len(got) != 2 || got[0] != kernel.IPv4 || got[1] != kernel.IPv6 {
		t.Errorf("dual-stack Families() = %v, want IPv4 and IPv6", got)
	}
	v4 := Device{Name: "flannel0", Index: 4, Network: pfx("10.244.0.0/16")}
	if v4.Concerns(other6) {
		t.Error("an IPv4-only device cares for a route to an IPv6 network elsewhere")
	}
	if got := v4.Families(); len(got) != 1 || got[0] != kernel.IPv4 {
		t.Errorf("IPv4-only Families() = %v, want IPv4", got)
	}
}
