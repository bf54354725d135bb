package kernel_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/ip"
)

// batchPeer is one vxlan-style peer: route via its VTEP onlink, neighbour, FDB entry.
type batchPeer struct {
	sn   netip.Prefix
	mac  net.HardwareAddr
	pub  netip.Addr
	vtep netip.Addr
}

func batchPeers(n int) []batchPeer {
	var ps []batchPeer
	for i := range n {
		sn := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i), 0}), 24)
		ps = append(ps, batchPeer{sn: sn, mac: net.HardwareAddr{2, 0, 0, 0, 1, byte(i)},
			pub: netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}), vtep: sn.Addr()})
	}
	return ps
}

func (p batchPeer) route(dev int) *netlink.Route {
	return &netlink.Route{LinkIndex: dev, Dst: ip.IPNet(p.sn), Gw: net.IP(p.vtep.AsSlice()), Flags: int(netlink.FLAG_ONLINK)}
}

func ensureAll(t *testing.T, b *kernel.Batch, dev int, ps []batchPeer) {
	t.Helper()
	for _, p := range ps {
		if err := b.EnsureNeigh(dev, p.vtep, p.mac); err != nil {
			t.Fatal(err)
		}
		if err := b.EnsureFDB(dev, p.mac, p.pub); err != nil {
			t.Fatal(err)
		}
		if err := b.EnsureRoute(p.route(dev)); err != nil {
			t.Fatal(err)
		}
	}
}

func checkAll(t *testing.T, b *kernel.Batch, dev int, ps []batchPeer, want bool) {
	t.Helper()
	for _, p := range ps {
		r, err1 := b.HasRoute(p.route(dev))
		n, err2 := b.HasNeigh(dev, p.vtep, p.mac)
		f, err3 := b.HasFDB(dev, p.mac, p.pub)
		for _, err := range []error{err1, err2, err3} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if r != want || n != want || f != want {
			t.Fatalf("%s: route %v neighbour %v fdb %v, want %v", p.sn, r, n, f, want)
		}
	}
}

func TestBatchProgramsChecksAndStaysIdle(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "local", "192.0.2.1",
		"dev", "eth0", "dstport", "8472", "nolearning")
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "vx0", "up")
	vx := linkIndex(t, h, "vx0")
	ps := batchPeers(50)
	mon := kerneltest.Watch(t, a.NS)

	// One batch programs everything; a new batch sees it all and writes nothing.
	b := h.NewBatch()
	checkAll(t, b, vx, ps, false)
	ensureAll(t, b, vx, ps)
	checkAll(t, b, vx, ps, true) // the batch's own view follows its writes
	if n, _ := mon.Settle(50 * time.Millisecond); n < 3*len(ps) {
		t.Fatalf("programming %d peers made %d changes", len(ps), n)
	}
	b = h.NewBatch()
	checkAll(t, b, vx, ps, true)
	ensureAll(t, b, vx, ps)
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("a second batch wrote %d changes (last %s)", n, last)
	}
	if got := strings.Count(kerneltest.MustRun(t, a.NS, "ip", "route", "show", "dev", "vx0"), "onlink"); got != len(ps) {
		t.Fatalf("%d routes on vx0, want %d", got, len(ps))
	}

	// Someone changes entries behind the batch's back; a fresh batch puts them right.
	p := ps[3]
	kerneltest.MustRun(t, a.NS, "ip", "route", "replace", p.sn.String(), "via", "10.200.3.9", "dev", "vx0", "onlink")
	kerneltest.MustRun(t, a.NS, "ip", "neigh", "replace", p.vtep.String(), "lladdr", "02:00:00:00:00:99", "dev", "vx0", "nud", "permanent")
	kerneltest.MustRun(t, a.NS, "bridge", "fdb", "append", p.mac.String(), "dev", "vx0", "dst", "192.0.2.9", "self", "permanent")
	kerneltest.MustRun(t, a.NS, "ip", "route", "del", ps[4].sn.String())
	mon.Settle(50 * time.Millisecond)
	b = h.NewBatch()
	ensureAll(t, b, vx, ps)
	if n, _ := mon.Settle(50 * time.Millisecond); n == 0 || n > 6 {
		t.Fatalf("repairing 4 entries made %d changes", n)
	}
	checkAll(t, h.NewBatch(), vx, ps, true)
	if out := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "vx0"); strings.Contains(out, "192.0.2.9") {
		t.Fatalf("stale fdb remote left: %q", out)
	}

	// Removing and adding again within one batch.
	b = h.NewBatch()
	checkAll(t, b, vx, ps[:2], true)
	for _, p := range ps[:2] {
		if err := b.DeleteRoute(p.sn, vx); err != nil {
			t.Fatal(err)
		}
		if err := b.DeleteNeigh(vx, p.vtep); err != nil {
			t.Fatal(err)
		}
		if err := b.DeleteFDB(vx, p.mac, p.pub); err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, b, vx, ps[:2], false)
	checkAll(t, h.NewBatch(), vx, ps[:2], false)
	ensureAll(t, b, vx, ps[:1])
	checkAll(t, h.NewBatch(), vx, ps[:1], true)
	checkAll(t, h.NewBatch(), vx, ps[1:2], false)

	// Deleting what is gone is fine, with or without the table read.
	for _, b := range []*kernel.Batch{h.NewBatch(), b} {
		if err := b.DeleteRoute(ps[1].sn, vx); err != nil {
			t.Fatal(err)
		}
		if err := b.DeleteNeigh(vx, ps[1].vtep); err != nil {
			t.Fatal(err)
		}
		if err := b.DeleteFDB(vx, ps[1].mac, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBatchRouteWithOtherMetricAndOnOtherLink(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	eth := linkIndex(t, h, "eth0")
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "dum0", "type", "bridge")
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "dum0", "up")
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "10.9.0.0/24", "dev", "dum0", "metric", "50")
	dst := netip.MustParsePrefix("10.9.0.0/24")
	r := &netlink.Route{LinkIndex: eth, Dst: ip.IPNet(dst), Gw: net.ParseIP("192.0.2.2")}
	b := h.NewBatch()
	if err := b.EnsureRoute(r); err != nil {
		t.Fatal(err)
	}
	out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", dst.String())
	if !strings.Contains(out, "via 192.0.2.2 dev eth0") || !strings.Contains(out, "dev dum0") {
		t.Fatalf("routes = %q", out)
	}
	// The same metric as an existing route: replaced.
	r2 := &netlink.Route{LinkIndex: eth, Dst: ip.IPNet(dst), Gw: net.ParseIP("192.0.2.3"), Priority: 50}
	if err := h.NewBatch().EnsureRoute(r2); err != nil {
		t.Fatal(err)
	}
	out = kerneltest.MustRun(t, a.NS, "ip", "route", "show", dst.String())
	if strings.Contains(out, "dum0") || !strings.Contains(out, "via 192.0.2.3") || !strings.Contains(out, "via 192.0.2.2") {
		t.Fatalf("routes after replace = %q", out)
	}
	// Deleting through eth0 keeps nothing there; through link 0, everything.
	if err := h.NewBatch().DeleteRoute(dst, eth); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", dst.String()); out != "" {
		t.Fatalf("left after delete: %q", out)
	}
	if _, err := b.HasRoute(&netlink.Route{Dst: ip.IPNet(dst), Table: 100}); err == nil {
		t.Fatal("a Batch accepted another table")
	}
}

func TestBatchSweeps(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "local", "192.0.2.1",
		"dev", "eth0", "dstport", "8472", "nolearning")
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "vx0", "up")
	vx, eth := linkIndex(t, h, "vx0"), linkIndex(t, h, "eth0")
	ps := batchPeers(3)
	ensureAll(t, h.NewBatch(), vx, ps)
	for _, argv := range []string{
		"ip route add 10.200.9.0/24 via 192.0.2.9 dev eth0",
		"ip route add 10.200.9.0/24 via 192.0.2.8 dev eth0 metric 5",
		"ip neigh add 192.0.2.77 lladdr 02:00:00:00:00:77 dev eth0 nud permanent",
	} {
		kerneltest.MustRun(t, a.NS, strings.Fields(argv)...)
	}
	mon := kerneltest.Watch(t, a.NS)

	// A sweep that finds nothing stale writes nothing.
	b := h.NewBatch()
	never := func(kernel.ListedRoute) bool { return false }
	if got, err := b.SweepRoutes(0, never); err != nil || len(got) != 0 {
		t.Fatalf("SweepRoutes(never) = %v, %v", got, err)
	}
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("an empty sweep made %d changes (last %s)", n, last)
	}

	// Routes: only the matching link and the chosen entries go; one batch sees its sweep.
	got, err := b.SweepRoutes(vx, func(r kernel.ListedRoute) bool { return r.Dst == ps[1].sn })
	if err != nil || len(got) != 1 || got[0].Dst != ps[1].sn || got[0].Gw != ps[1].vtep || !got[0].Onlink || got[0].LinkIndex != vx {
		t.Fatalf("SweepRoutes(vx0) = %+v, %v", got, err)
	}
	if ok, err := b.HasRoute(ps[1].route(vx)); err != nil || ok {
		t.Fatalf("swept route still in the batch's view: %v, %v", ok, err)
	}
	got, err = b.SweepRoutes(eth, func(r kernel.ListedRoute) bool { return r.Gw == netip.MustParseAddr("192.0.2.8") })
	if err != nil || len(got) != 1 || got[0].Priority != 5 {
		t.Fatalf("SweepRoutes(eth0, metric 5) = %+v, %v", got, err)
	}
	out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.200.9.0/24")
	if !strings.Contains(out, "via 192.0.2.9") || strings.Contains(out, "192.0.2.8") {
		t.Fatalf("routes to 10.200.9.0/24 after sweeping the metric-5 one: %q", out)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", ps[1].sn.String()); out != "" {
		t.Fatalf("swept route left: %q", out)
	}

	// Neighbours and FDB entries of one link.
	gotN, err := b.SweepNeighs(vx, func(n kernel.ListedNeigh) bool { return n.Permanent && n.Addr != ps[0].vtep })
	if err != nil || len(gotN) != 2 {
		t.Fatalf("SweepNeighs = %+v, %v", gotN, err)
	}
	gotF, err := b.SweepFDB(vx, func(f kernel.ListedFDB) bool { return f.Self && f.Permanent && f.MAC == string(ps[2].mac) })
	if err != nil || len(gotF) != 1 || gotF[0].Dst != ps[2].pub {
		t.Fatalf("SweepFDB = %+v, %v", gotF, err)
	}
	checkAll(t, b, vx, ps[:1], true)
	checkAll(t, h.NewBatch(), vx, ps[:1], true)
	if out := kerneltest.MustRun(t, a.NS, "ip", "neigh", "show", "dev", "vx0"); strings.Count(out, "PERMANENT") != 1 {
		t.Fatalf("neighbours after sweep: %q", out)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "neigh", "show", "dev", "eth0"); !strings.Contains(out, "192.0.2.77") {
		t.Fatalf("a neighbour on another link was swept: %q", out)
	}
	if out := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "vx0"); strings.Contains(out, ps[2].mac.String()) ||
		!strings.Contains(out, ps[1].mac.String()) {
		t.Fatalf("fdb after sweep: %q", out)
	}
}
