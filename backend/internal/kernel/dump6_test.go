package kernel

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
)

// TestDumpsMatchNetlinkIPv6: the in-place dumps list the IPv6 main-table routes (of every
// shape weft meets, with the kernel's own link-local ones) and IPv6 neighbours exactly as
// netlink's lists do (but for the default route, which it skips), RoutesOf lists one
// link's, and an IPv6 dump lists no IPv4 route and the other way round.
func TestDumpsMatchNetlinkIPv6(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	for _, argv := range []string{
		"ip addr add 2001:db8::1/64 dev eth0 nodad",
		"ip link add vx6 type vxlan id 8 local 2001:db8::1 dev eth0 dstport 8472 nolearning",
		"ip link set vx6 up",
		"ip -6 route add fd00:0:0:2::/64 via fd00:0:0:2:: dev vx6 onlink metric 1024",
		"ip -6 route add fd00:0:0:3::/64 via 2001:db8::2 dev eth0 metric 7",
		"ip -6 route add fd00:0:0:3::/64 via 2001:db8::3 dev eth0 metric 9 proto static",
		"ip -6 route add blackhole fd00:0:0:4::/64",
		"ip -6 route add fd00:0:0:5::/64 nexthop via 2001:db8::2 dev eth0 nexthop via 2001:db8::3 dev eth0",
		"ip -6 route add fd00:0:0:6::/64 via 2001:db8::2 dev eth0 table 100",
		"ip -6 route add default via 2001:db8::2 dev eth0",
		"ip route add 10.244.7.0/24 via 192.0.2.2 dev eth0",
		"ip -6 neigh add fd00:0:0:2:: lladdr 02:00:00:00:00:02 dev vx6 nud permanent",
		"ip -6 neigh add 2001:db8::9 lladdr 02:00:00:00:00:09 dev eth0 nud permanent",
		"ip neigh add 192.0.2.9 lladdr 02:00:00:00:00:19 dev eth0 nud permanent",
	} {
		kerneltest.MustRun(t, a.NS, strings.Fields(argv)...)
	}
	h := openInNS(t, a.NS)
	var lean []netlink.Route
	err := h.dumps.mainRoutes(IPv6, func(e routeEntry, nexthops []byte) { lean = append(lean, e.netlinkRoute(nexthops)) })
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.nl.RouteListFiltered(unix.AF_INET6, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	got, want := fmtRoutes(lean), fmtRoutes(list)
	// netlink names the default route's destination ::/0; the in-place dump skips it.
	want = slices.DeleteFunc(want, func(s string) bool { return strings.HasPrefix(s, "::/0 ") })
	if !slices.Equal(got, want) {
		t.Fatalf("IPv6 routes:\nin place %q\nnetlink  %q", got, want)
	}
	all := strings.Join(got, "\n")
	if len(got) < 6 || !strings.Contains(all, "fe80::/64") || !strings.Contains(all, "via 2001:db8::3 ]") ||
		strings.Contains(all, "10.244.7.0") || strings.Contains(all, "fd00:0:0:6::") {
		t.Fatalf("IPv6 routes listed: %q", got)
	}
	v4, err := h.Routes(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range v4 {
		if r.Dst.IP.To4() == nil {
			t.Fatalf("the IPv4 dump lists %v", r)
		}
	}

	eth, err := h.nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	// RoutesOf: the IPv6 routes of one link, as the dump lists them.
	ofEth, err := h.RoutesOf(eth.Attrs().Index, IPv6)
	if err != nil {
		t.Fatal(err)
	}
	onEth := fmt.Sprintf(" dev %d table ", eth.Attrs().Index)
	wantEth := slices.DeleteFunc(slices.Clone(got), func(s string) bool { return !strings.Contains(s, onEth) })
	if gotEth := fmtRoutes(ofEth); !slices.Equal(gotEth, wantEth) || len(gotEth) < 3 {
		t.Fatalf("RoutesOf(eth0, IPv6) = %q, want %q", gotEth, wantEth)
	}
	if _, err := h.RoutesOf(0, Family(99)); err == nil || !strings.Contains(err.Error(), "family 99") {
		t.Fatalf("RoutesOf(family 99) = %v, want an error naming the family", err)
	}
	var gotN []neighEntry
	if err := h.dumps.neighbours(unix.AF_INET6, eth.Attrs().Index, func(e neighEntry) { gotN = append(gotN, e) }); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range gotN {
		if !e.ip.Is6() {
			t.Fatalf("the IPv6 neighbour dump lists %v", e.ip)
		}
		found = found || e.ip == netip.MustParseAddr("2001:db8::9") && e.mac == "\x02\x00\x00\x00\x00\x09"
	}
	if !found {
		t.Fatalf("IPv6 neighbours of eth0: %v", gotN)
	}
}
