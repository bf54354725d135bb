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
