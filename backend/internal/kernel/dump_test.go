package kernel

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
)

// TestDumpsMatchNetlink: the in-place dumps a Batch uses list what netlink's own lists do,
// for routes of every shape weft meets, neighbours and FDB entries.
func TestDumpsMatchNetlink(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	for _, argv := range []string{
		"ip link add vx0 type vxlan id 7 local 192.0.2.1 dev eth0 dstport 8472 nolearning",
		"ip link set vx0 up",
		"ip link add dum0 type bridge",
		"ip link set dum0 up",
		"ip route add 10.244.2.0/24 via 10.244.2.0 dev vx0 onlink",
		"ip route add 10.244.3.0/24 via 192.0.2.2 dev eth0 metric 7",
		"ip route add 10.244.3.0/24 dev dum0 metric 9 proto static",
		"ip route add blackhole 10.244.4.0/24",
		"ip route add 10.244.5.0/24 nexthop via 192.0.2.2 dev eth0 nexthop via 192.0.2.3 dev eth0",
		"ip route add 10.244.6.0/24 via 192.0.2.2 dev eth0 table 100",
		"ip route add 10.244.7.0/24 dev eth0 src 192.0.2.1",
		"ip neigh add 10.244.2.0 lladdr 02:00:00:00:00:02 dev vx0 nud permanent",
		"ip neigh add 192.0.2.9 lladdr 02:00:00:00:00:09 dev eth0 nud permanent",
		"bridge fdb add 02:00:00:00:00:02 dev vx0 dst 192.0.2.2 self permanent",
		"bridge fdb append 02:00:00:00:00:02 dev vx0 dst 192.0.2.3 self permanent",
		"bridge fdb add 02:00:00:00:00:04 dev vx0 dst 192.0.2.4 vni 99 self permanent",
	} {
		kerneltest.MustRun(t, a.NS, strings.Fields(argv)...)
	}
	var h *Handle
	if err := nsutil.Do(a.NS, func() (err error) { h, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	vx, err := h.nl.LinkByName("vx0")
	if err != nil {
		t.Fatal(err)
	}
	eth, err := h.nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}

	// Handle.Routes goes through the same in-place dump; netlink's own list is the reference.
	lean, err := h.Routes(0)
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.nl.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	got, want := fmtRoutes(lean), fmtRoutes(list)
	if !slices.Equal(got, want) {
		t.Fatalf("routes:\nin place %q\nnetlink  %q", got, want)
	}
	if len(got) < 6 || !strings.Contains(strings.Join(got, "\n"), "nexthops [dev "+strconv.Itoa(eth.Attrs().Index)+" via 192.0.2.2 dev") {
		t.Fatalf("routes listed: %q", got)
	}
	onEth, err := h.Routes(eth.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range onEth {
		if r.LinkIndex != eth.Attrs().Index {
			t.Fatalf("Routes(eth0) lists %v", r)
		}
	}

	for _, c := range []struct {
		family int
		link   int
	}{{unix.AF_INET, vx.Attrs().Index}, {unix.AF_INET, eth.Attrs().Index}, {unix.AF_BRIDGE, vx.Attrs().Index}} {
		var got []neighEntry
		if err := h.dumps.neighbours(uint8(c.family), c.link, func(e neighEntry) { got = append(got, e) }); err != nil {
			t.Fatal(err)
		}
		ns, err := h.nl.NeighList(c.link, c.family)
		if err != nil {
			t.Fatal(err)
		}
		var exp []neighEntry
		for _, n := range ns {
			ip, _ := netip.AddrFromSlice(n.IP)
			exp = append(exp, neighEntry{ip: ip.Unmap(), mac: string(n.HardwareAddr), state: uint16(n.State),
				flags: uint8(n.Flags), vlan: uint16(n.Vlan), vni: uint32(n.VNI)})
		}
		if !slices.Equal(got, exp) {
			t.Fatalf("family %d link %d:\nin place %v\nnetlink  %v", c.family, c.link, got, exp)
		}
	}
}

// fmtRoutes renders what RouteMatches and a delete look at, and the nexthops, sorted.
func fmtRoutes(rs []netlink.Route) []string {
	var out []string
	for i := range rs {
		e := entryOf(&rs[i])
		if !e.dst.IsValid() {
			continue
		}
		s := fmt.Sprintf("%s gw %s src %s dev %d table %d metric %d tos %d type %d scope %d proto %d flags %#x nexthops [",
			e.dst, e.gw, e.src, e.link, e.table, e.priority, e.tos, e.typ, e.scope, e.protocol, e.flags&unix.RTNH_F_ONLINK)
		for _, nh := range rs[i].MultiPath {
			s += fmt.Sprintf("dev %d via %s ", nh.LinkIndex, nh.Gw)
		}
		out = append(out, s+"]")
	}
	slices.Sort(out)
	return out
}
