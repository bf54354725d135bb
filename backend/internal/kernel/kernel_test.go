package kernel_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/pkg/nsutil"
)

func openIn(t *testing.T, ns string) *kernel.Handle {
	t.Helper()
	var h *kernel.Handle
	if err := nsutil.Do(ns, func() (err error) { h, err = kernel.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func linkIndex(t *testing.T, h *kernel.Handle, name string) int {
	t.Helper()
	l, err := h.Netlink().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func TestHandleStaysInItsNamespace(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	// Used from this goroutine (root namespace thread), it still sees the node's eth0 address.
	idx := linkIndex(t, h, "eth0")
	as, err := h.Addrs(idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || !as[0].IP.Equal(net.IP(a.Addr.AsSlice())) {
		t.Fatalf("addresses of eth0 through the handle = %v, want %s", as, a.Addr)
	}
}

func TestEnsureRouteIdempotentAndReplaces(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	mon := kerneltest.Watch(t, a.NS)
	eth := linkIndex(t, h, "eth0")
	dst := netip.MustParsePrefix("10.244.2.0/24")
	r := &netlink.Route{LinkIndex: eth, Dst: ip.IPNet(dst), Gw: net.ParseIP("192.0.2.2")}
	if err := h.EnsureRoute(r); err != nil {
		t.Fatal(err)
	}
	if n, _ := mon.Settle(50 * time.Millisecond); n == 0 {
		t.Fatal("first EnsureRoute produced no netlink change")
	}
	if err := h.EnsureRoute(r); err != nil {
		t.Fatal(err)
	}
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("second EnsureRoute wrote %d changes (last %s), want none", n, last)
	}
	out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", dst.String())
	if !strings.Contains(out, "via 192.0.2.2 dev eth0") {
		t.Fatalf("route = %q", out)
	}
	// A different gateway for the same destination replaces the route.
	r2 := &netlink.Route{LinkIndex: eth, Dst: ip.IPNet(dst), Gw: net.ParseIP("192.0.2.3")}
	if err := h.EnsureRoute(r2); err != nil {
		t.Fatal(err)
	}
	out = kerneltest.MustRun(t, a.NS, "ip", "route", "show", dst.String())
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "via 192.0.2.3") {
		t.Fatalf("after replace: %q", out)
	}
	// An onlink route through a gateway outside any connected subnet.
	r3 := &netlink.Route{LinkIndex: eth, Dst: ip.IPNet(dst), Gw: net.ParseIP("10.244.2.0"), Flags: int(netlink.FLAG_ONLINK)}
	if err := h.EnsureRoute(r3); err != nil {
		t.Fatal(err)
	}
	mon.Settle(50 * time.Millisecond)
	if err := h.EnsureRoute(r3); err != nil {
		t.Fatal(err)
	}
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("second EnsureRoute(onlink) wrote %d changes (last %s)", n, last)
	}
	if err := h.DeleteRoute(dst, eth); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteRoute(dst, eth); err != nil {
		t.Fatalf("deleting a missing route: %v", err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", dst.String()); out != "" {
		t.Fatalf("route left after delete: %q", out)
	}
}

func TestDeleteRouteKeepsOtherLinks(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "dum0", "type", "bridge")
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "dum0", "up")
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "10.9.0.0/24", "dev", "dum0")
	if err := h.DeleteRoute(netip.MustParsePrefix("10.9.0.0/24"), linkIndex(t, h, "eth0")); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.9.0.0/24"); !strings.Contains(out, "dum0") {
		t.Fatalf("route on another link was deleted: %q", out)
	}
}

func TestDirectlyConnected(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	eth := linkIndex(t, h, "eth0")
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"192.0.2.2", true},     // same segment
		{"192.0.2.1", false},    // myself
		{"198.51.100.7", false}, // behind a gateway
	} {
		got, err := h.DirectlyConnected(netip.MustParseAddr(c.addr), eth)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("DirectlyConnected(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
	if _, err := h.DirectlyConnected(netip.MustParseAddr("203.0.113.1"), eth); err == nil {
		t.Error("no route at all: want an error")
	}
}

// TestNeighAndFDB programs neighbour and FDB entries one fresh Batch at a time (each write
// before any dump, as one peer joining costs).
func TestNeighAndFDB(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "local", "192.0.2.1",
		"dev", "eth0", "dstport", "8472", "nolearning")
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "vx0", "up")
	vx := linkIndex(t, h, "vx0")
	mon := kerneltest.Watch(t, a.NS)
	mac1, _ := net.ParseMAC("0a:00:00:00:00:01")
	mac2, _ := net.ParseMAC("0a:00:00:00:00:02")
	peer := netip.MustParseAddr("10.244.2.0")
	pub := netip.MustParseAddr("192.0.2.2")

	steps := []struct {
		name string
		do   func() error
	}{
		{"neigh", func() error { return h.NewBatch().EnsureNeigh(vx, peer, mac1) }},
		{"fdb", func() error { return h.NewBatch().EnsureFDB(vx, mac1, pub) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		mon.Settle(50 * time.Millisecond)
		if err := s.do(); err != nil {
			t.Fatalf("%s again: %v", s.name, err)
		}
		if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
			t.Fatalf("second %s wrote %d changes (last %s)", s.name, n, last)
		}
	}
	out := kerneltest.MustRun(t, a.NS, "ip", "neigh", "show", "dev", "vx0")
	if !kerneltest.Contains(out, "10.244.2.0 lladdr 0a:00:00:00:00:01 PERMANENT") {
		t.Fatalf("neigh = %q", out)
	}
	out = kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "vx0")
	if !kerneltest.Contains(out, "0a:00:00:00:00:01 dst 192.0.2.2 self permanent") {
		t.Fatalf("fdb = %q", out)
	}
	// Change of MAC for the neighbour; change of remote for the FDB entry (a stale remote
	// appended by someone else is removed too).
	kerneltest.MustRun(t, a.NS, "bridge", "fdb", "append", "0a:00:00:00:00:01", "dev", "vx0", "dst", "192.0.2.9", "self", "permanent")
	if err := h.NewBatch().EnsureNeigh(vx, peer, mac2); err != nil {
		t.Fatal(err)
	}
	if err := h.NewBatch().EnsureFDB(vx, mac1, netip.MustParseAddr("192.0.2.3")); err != nil {
		t.Fatal(err)
	}
	out = kerneltest.MustRun(t, a.NS, "ip", "neigh", "show", "dev", "vx0")
	if !kerneltest.Contains(out, "lladdr 0a:00:00:00:00:02") {
		t.Fatalf("neigh after change = %q", out)
	}
	out = kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "vx0")
	if !kerneltest.Contains(out, "0a:00:00:00:00:01 dst 192.0.2.3 self permanent") ||
		strings.Contains(out, "192.0.2.2") || strings.Contains(out, "192.0.2.9") {
		t.Fatalf("fdb after change = %q", out)
	}
	if err := h.NewBatch().DeleteNeigh(vx, peer); err != nil {
		t.Fatal(err)
	}
	if err := h.NewBatch().DeleteFDB(vx, mac1, netip.MustParseAddr("192.0.2.3")); err != nil {
		t.Fatal(err)
	}
	if err := h.NewBatch().DeleteNeigh(vx, peer); err != nil {
		t.Fatalf("deleting a missing neighbour: %v", err)
	}
	if err := h.NewBatch().DeleteFDB(vx, mac1, netip.MustParseAddr("192.0.2.3")); err != nil {
		t.Fatalf("deleting a missing fdb entry: %v", err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "neigh", "show", "dev", "vx0"); strings.Contains(out, "10.244.2.0") {
		t.Fatalf("neigh left: %q", out)
	}
	if out := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "vx0"); strings.Contains(out, "0a:00:00:00:00:01") {
		t.Fatalf("fdb left: %q", out)
	}
}

func TestEnsureSoleAddr(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "dum0", "type", "bridge")
	kerneltest.MustRun(t, a.NS, "ip", "addr", "add", "10.244.9.0/32", "dev", "dum0")
	idx := linkIndex(t, h, "dum0")
	want := netip.MustParsePrefix("10.244.1.0/32")
	for i := 0; i < 2; i++ {
		if err := h.EnsureSoleAddr(idx, want); err != nil {
			t.Fatal(err)
		}
	}
	as, err := h.Addrs(idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].IPNet.String() != want.String() {
		t.Fatalf("addresses = %v, want only %s", as, want)
	}
}

func TestTxChecksum(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "vx0", "type", "vxlan", "id", "7", "local", "192.0.2.1", "dev", "eth0", "dstport", "8472")
	on, err := h.TxChecksum("vx0")
	if err != nil {
		t.Fatal(err)
	}
	if !on {
		t.Skip("vxlan device starts with tx checksum off on this kernel")
	}
	changed, err := h.EnsureTxChecksum("vx0", false)
	if err != nil || !changed {
		t.Fatalf("EnsureTxChecksum(off) = %v, %v", changed, err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ethtool", "-k", "vx0"); !strings.Contains(out, "tx-checksumming: off") {
		t.Fatalf("ethtool -k after switching off:\n%s", out)
	}
	if changed, err := h.EnsureTxChecksum("vx0", false); err != nil || changed {
		t.Fatalf("second EnsureTxChecksum(off) = %v, %v; want no change", changed, err)
	}
	if _, err := h.TxChecksum("nosuchdev"); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("TxChecksum(missing) = %v, want ENODEV", err)
	}
}

func TestParseKernelRelease(t *testing.T) {
	for _, c := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"5.15.0-91-generic", 5, 15, true},
		{"6.1.0+", 6, 1, true},
		{"5.6", 5, 6, true},
		{"4.19.0-rc1", 4, 19, true},
		{"6.18.44-fc-v595", 6, 18, true},
		{"", 0, 0, false},
		{"6", 0, 0, false},
		{"x.y", 0, 0, false},
		{"5.-1", 0, 0, false},
	} {
		maj, min, err := kernel.ParseKernelRelease(c.in)
		if (err == nil) != c.ok || maj != c.major || min != c.minor {
			t.Errorf("ParseKernelRelease(%q) = %d, %d, %v; want %d, %d, ok=%v", c.in, maj, min, err, c.major, c.minor, c.ok)
		}
	}
	if _, _, err := kernel.KernelVersion(); err != nil {
		t.Fatal(err)
	}
}

func TestRetryDump(t *testing.T) {
	calls := 0
	got, err := kernel.RetryDump(func() (int, error) {
		calls++
		if calls < 3 {
			return 0, netlink.ErrDumpInterrupted
		}
		return 42, nil
	})
	if err != nil || got != 42 || calls != 3 {
		t.Fatalf("RetryDump = %d, %v after %d calls", got, err, calls)
	}
	_, err = kernel.RetryDump(func() (int, error) { return 1, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatalf("always interrupted: %v", err)
	}
	boom := errors.New("boom")
	if _, err := kernel.RetryDump(func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("other error: %v", err)
	}
}

func TestRouteMatches(t *testing.T) {
	dst := ip.IPNet(netip.MustParsePrefix("10.244.2.0/24"))
	base := netlink.Route{Dst: dst, LinkIndex: 3, Gw: net.ParseIP("10.244.2.0"), Flags: int(netlink.FLAG_ONLINK)}
	kern := base
	kern.Table, kern.Type, kern.Protocol = unix.RT_TABLE_MAIN, unix.RTN_UNICAST, unix.RTPROT_BOOT
	for _, c := range []struct {
		name string
		edit func(r *netlink.Route)
		want bool
	}{
		{"same", func(*netlink.Route) {}, true},
		{"other gw", func(r *netlink.Route) { r.Gw = net.ParseIP("10.244.3.0") }, false},
		{"other link", func(r *netlink.Route) { r.LinkIndex = 4 }, false},
		{"no onlink", func(r *netlink.Route) { r.Flags = 0 }, false},
		{"other metric", func(r *netlink.Route) { r.Priority = 100 }, false},
		{"other table", func(r *netlink.Route) { r.Table = 100 }, false},
		{"other dst", func(r *netlink.Route) { r.Dst = ip.IPNet(netip.MustParsePrefix("10.244.2.0/25")) }, false},
		{"linkdown flag ignored", func(r *netlink.Route) { r.Flags |= unix.RTNH_F_LINKDOWN }, true},
		{"no gw", func(r *netlink.Route) { r.Gw = nil }, false},
	} {
		have := kern
		c.edit(&have)
		if got := kernel.RouteMatches(&base, &have); got != c.want {
			t.Errorf("%s: RouteMatches = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestClosedHandleRefuses(t *testing.T) {
	a, _ := kerneltest.TwoNodes(t)
	h := openIn(t, a.NS)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	dst := netip.MustParsePrefix("10.244.2.0/24")
	for name, err := range map[string]error{
		"EnsureRoute": h.EnsureRoute(&netlink.Route{Dst: ip.IPNet(dst), LinkIndex: 1}),
		"DeleteRoute": h.DeleteRoute(dst, 0),
		"EnsureNeigh": h.NewBatch().EnsureNeigh(1, netip.MustParseAddr("10.244.2.0"), net.HardwareAddr{2, 0, 0, 0, 0, 1}),
		"EnsureFDB":   h.NewBatch().EnsureFDB(1, net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("192.0.2.2")),
		"SweepRoutes": func() error { _, err := h.NewBatch().SweepRoutes(0, nil); return err }(),
		"EnsureAddr":  h.EnsureSoleAddr(1, netip.MustParsePrefix("10.244.1.0/32")),
	} {
		if !errors.Is(err, kernel.ErrClosed) {
			t.Errorf("%s on a closed handle = %v, want ErrClosed", name, err)
		}
	}
	if _, err := h.Routes(0); !errors.Is(err, kernel.ErrClosed) {
		t.Errorf("Routes on a closed handle = %v", err)
	}
	if _, err := h.TxChecksum("eth0"); !errors.Is(err, kernel.ErrClosed) {
		t.Errorf("TxChecksum on a closed handle = %v", err)
	}
}
