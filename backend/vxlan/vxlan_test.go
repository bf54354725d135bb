package vxlan

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
)

const (
	subnetA = "10.244.1.0/24"
	subnetB = "10.244.2.0/24"
)

var (
	podA = netip.MustParseAddr("10.244.1.2")
	podB = netip.MustParseAddr("10.244.2.2")
)

// twoNodes starts the backend on two connected nodes, each with one pod, and exchanges
// their leases.
func twoNodes(t *testing.T, keys map[string]any) (a, b *testNode, podNSA, podNSB string) {
	t.Helper()
	ka, kb := kerneltest.TwoNodes(t)
	a = startNode(t, ka, subnetA, keys)
	b = startNode(t, kb, subnetB, keys)
	connect(t, a, b)
	podNSA = kerneltest.AddPod(t, ka, netip.MustParsePrefix("10.244.1.1/24"), podA, a.nw.MTU())
	podNSB = kerneltest.AddPod(t, kb, netip.MustParsePrefix("10.244.2.1/24"), podB, b.nw.MTU())
	return a, b, podNSA, podNSB
}

func TestPodsTalkAcrossVXLAN(t *testing.T) {
	a, b, pa, pb := twoNodes(t, nil)

	// The kernel state is flanneld's, field by field.
	link := kerneltest.MustRun(t, a.NS, "ip", "-d", "link", "show", "flannel.1")
	for _, w := range []string{"mtu 1450", "state UNKNOWN", "link/ether " + vtepMAC(a.Addr, 1).String(),
		"vxlan id 1 local 192.0.2.1 dev eth0", "dstport 8472", "nolearning"} {
		if !strings.Contains(link, w) {
			t.Errorf("flannel.1 lacks %q:\n%s", w, link)
		}
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "-4", "-o", "addr", "show", "dev", "flannel.1"); !strings.Contains(out, "inet 10.244.1.0/32") {
		t.Errorf("flannel.1 address: %q", out)
	}
	macB := vtepMAC(b.Addr, 1).String()
	checks := []struct{ argv, want string }{
		{"ip route show 10.244.2.0/24", "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"},
		{"ip neigh show dev flannel.1", "10.244.2.0 lladdr " + macB + " PERMANENT"},
		{"bridge fdb show dev flannel.1", macB + " dst 192.0.2.2 self permanent"},
	}
	for _, c := range checks {
		if out := kerneltest.MustRun(t, a.NS, strings.Fields(c.argv)...); !strings.Contains(out, c.want) {
			t.Errorf("%s: %q lacks %q", c.argv, out, c.want)
		}
	}
	if got, want := string(a.attrs.BackendData), fmt.Sprintf(`{"VNI":1,"VtepMAC":"%s"}`, vtepMAC(a.Addr, 1)); got != want {
		t.Errorf("BackendData = %s, want %s", got, want)
	}
	if a.attrs.BackendType != "vxlan" || a.nw.MTU() != 1450 {
		t.Errorf("BackendType %q, MTU %d", a.attrs.BackendType, a.nw.MTU())
	}

	ping(t, pa, podB)
	ping(t, pb, podA)
	ping(t, a.NS, podB) // host to remote pod, sourced from flannel.1's address
	tcpTransfer(t, pa, pb, podB, 8<<20)
	tcpTransfer(t, pb, pa, podA, 1<<20)
	// The 8 MiB really went through the VXLAN device.
	if tx := txBytes(t, a.NS, "flannel.1"); tx < 8<<20 {
		t.Fatalf("flannel.1 sent only %d bytes", tx)
	}
}

func txBytes(t *testing.T, ns, dev string) int64 {
	t.Helper()
	out := kerneltest.MustRun(t, ns, "cat", "/sys/class/net/"+dev+"/statistics/tx_bytes")
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestChecksumOffloadOffStillCarriesTCP(t *testing.T) {
	a, b, pa, pb := twoNodes(t, map[string]any{"ChecksumOffload": false})
	for _, n := range []*testNode{a, b} {
		if out := kerneltest.MustRun(t, n.NS, "ethtool", "-k", "flannel.1"); !strings.Contains(out, "tx-checksumming: off") {
			t.Fatalf("%s: ethtool -k flannel.1:\n%s", n.NS, out)
		}
	}
	tcpTransfer(t, pa, pb, podB, 4<<20)
	// Re-enabled behind our back: the repair pass switches it off again.
	kerneltest.MustRun(t, a.NS, "ethtool", "-K", "flannel.1", "tx", "on")
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ethtool", "-k", "flannel.1"); !strings.Contains(out, "tx-checksumming: off") {
		t.Fatalf("not repaired:\n%s", out)
	}
}

func TestApplyTwiceAndReconcileWriteNothing(t *testing.T) {
	ka, kb := kerneltest.TwoNodes(t)
	a := startNode(t, ka, subnetA, nil)
	b := startNode(t, kb, subnetB, nil)
	mon := kerneltest.Watch(t, a.NS)
	ctx := context.Background()
	if err := a.nw.Apply(ctx, added(b.lease())); err != nil {
		t.Fatal(err)
	}
	if n, _ := mon.Settle(50 * time.Millisecond); n == 0 {
		t.Fatal("first Apply changed nothing")
	}
	if err := a.nw.Apply(ctx, added(b.lease())); err != nil {
		t.Fatal(err)
	}
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("second Apply made %d changes (last: %s)", n, last)
	}
	for i := 0; i < 2; i++ {
		if _, err := a.nw.reconcile(); err != nil {
			t.Fatal(err)
		}
	}
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("reconcile with nothing wrong made %d changes (last: %s)", n, last)
	}
	// A new backend on the same node (a restart) adopts everything without a write.
	a2 := startNode(t, ka, subnetA, nil)
	if err := a2.nw.Apply(ctx, added(b.lease())); err != nil {
		t.Fatal(err)
	}
	if _, err := a2.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("restart made %d changes (last: %s)", n, last)
	}
}

func linkIndex(t *testing.T, n *testNode) int {
	t.Helper()
	l, err := n.be.h.Netlink().LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func TestAdoptAndStableMAC(t *testing.T) {
	ka, _ := kerneltest.TwoNodes(t)
	a := startNode(t, ka, subnetA, nil)
	idx := linkIndex(t, a)
	mon := kerneltest.Watch(t, ka.NS)

	// A second Prepare, and a whole new backend (a restart), adopt the device unchanged.
	attrs, err := a.be.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b2 := newBackend(t, ka, nil)
	attrs2, err := b2.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Activate(context.Background(), a.lease()); err != nil {
		t.Fatal(err)
	}
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("adopting a correct device made %d changes (last: %s)", n, last)
	}
	if got := linkIndex(t, a); got != idx {
		t.Fatalf("ifindex %d -> %d: device was re-created", idx, got)
	}
	if string(attrs.BackendData) != string(a.attrs.BackendData) || string(attrs2.BackendData) != string(a.attrs.BackendData) {
		t.Fatalf("BackendData changed across Prepare: %s, %s, %s", a.attrs.BackendData, attrs.BackendData, attrs2.BackendData)
	}

	// Something (udev's MACAddressPolicy=random) changes the MAC: repair restores it.
	kerneltest.MustRun(t, ka.NS, "ip", "link", "set", "flannel.1", "address", "02:12:34:56:78:9a")
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "link", "show", "flannel.1"); !strings.Contains(out, vtepMAC(ka.Addr, 1).String()) {
		t.Fatalf("MAC not restored: %s", out)
	}
}

func TestWrongDeviceRecreatedWithSameMAC(t *testing.T) {
	for _, c := range []struct {
		name string
		argv []string
	}{
		{"vni", []string{"ip", "link", "add", "flannel.1", "type", "vxlan", "id", "5", "local", "192.0.2.1", "dev", "eth0", "dstport", "8472", "nolearning"}},
		{"port", []string{"ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", "192.0.2.1", "dev", "eth0", "dstport", "4789", "nolearning"}},
		{"learning", []string{"ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", "192.0.2.1", "dev", "eth0", "dstport", "8472"}},
		{"not vxlan", []string{"ip", "link", "add", "flannel.1", "type", "bridge"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ka, _ := kerneltest.TwoNodes(t)
			kerneltest.MustRun(t, ka.NS, c.argv...)
			kerneltest.MustRun(t, ka.NS, "ip", "link", "set", "flannel.1", "address", "02:00:00:00:00:05")
			before := kerneltest.MustRun(t, ka.NS, "cat", "/sys/class/net/flannel.1/ifindex")
			a := startNode(t, ka, subnetA, nil)
			link := kerneltest.MustRun(t, ka.NS, "ip", "-d", "link", "show", "flannel.1")
			for _, w := range []string{"vxlan id 1 local 192.0.2.1 dev eth0", "dstport 8472", "nolearning", vtepMAC(ka.Addr, 1).String()} {
				if !strings.Contains(link, w) {
					t.Errorf("re-created flannel.1 lacks %q:\n%s", w, link)
				}
			}
			if after := kerneltest.MustRun(t, ka.NS, "cat", "/sys/class/net/flannel.1/ifindex"); after == before {
				t.Errorf("ifindex unchanged (%s): not re-created", before)
			}
			want := fmt.Sprintf(`{"VNI":1,"VtepMAC":"%s"}`, vtepMAC(ka.Addr, 1))
			if string(a.attrs.BackendData) != want {
				t.Errorf("BackendData = %s, want %s", a.attrs.BackendData, want)
			}
		})
	}
}

func TestDeviceRecreatedAfterReconcileKeepsMAC(t *testing.T) {
	a, b, pa, _ := twoNodes(t, nil)
	_ = b
	// Someone deletes the device: routes, neighbours and FDB entries go with it.
	kerneltest.MustRun(t, a.NS, "ip", "link", "del", "flannel.1")
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "link", "show", "flannel.1"); !strings.Contains(out, vtepMAC(a.Addr, 1).String()) {
		t.Fatalf("re-created device has another MAC: %s", out)
	}
	ping(t, pa, podB) // the peer's entries for us are still valid: same MAC
}

func TestRunRepairsDrift(t *testing.T) {
	a, _, pa, _ := twoNodes(t, nil)
	runInBackground(t, a.nw, 100*time.Millisecond)
	macB := vtepMAC(netip.MustParseAddr("192.0.2.2"), 1).String()
	kerneltest.MustRun(t, a.NS, "ip", "route", "del", "10.244.2.0/24")
	kerneltest.MustRun(t, a.NS, "ip", "neigh", "del", "10.244.2.0", "dev", "flannel.1")
	kerneltest.MustRun(t, a.NS, "bridge", "fdb", "del", macB, "dev", "flannel.1", "dst", "192.0.2.2", "self")
	kerneltest.MustRun(t, a.NS, "ip", "addr", "flush", "dev", "flannel.1")
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "flannel.1", "mtu", "1400")
	eventually(t, 5*time.Second, func() error {
		for _, c := range []struct{ argv, want string }{
			{"ip route show 10.244.2.0/24", "via 10.244.2.0 dev flannel.1 onlink"},
			{"ip neigh show dev flannel.1", "10.244.2.0 lladdr " + macB + " PERMANENT"},
			{"bridge fdb show dev flannel.1", macB + " dst 192.0.2.2 self permanent"},
			{"ip -4 addr show dev flannel.1", "10.244.1.0/32"},
			{"ip link show flannel.1", "mtu 1450"},
		} {
			out, err := nstest.Run(a.NS, strings.Fields(c.argv)...)
			if err != nil || !strings.Contains(out, c.want) {
				return fmt.Errorf("%s: %q (%v), want %q", c.argv, out, err, c.want)
			}
		}
		return nil
	})
	ping(t, pa, podB)
	// Link down removes the routes; Run brings both back.
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "flannel.1", "down")
	eventually(t, 5*time.Second, func() error {
		out, err := nstest.Run(a.NS, "ip", "route", "show", "10.244.2.0/24")
		if err != nil || !strings.Contains(out, "flannel.1") {
			return fmt.Errorf("route after link down: %q %v", out, err)
		}
		return nil
	})
	ping(t, pa, podB)
}

func TestPeerRemovedAndChanged(t *testing.T) {
	ka, kb := kerneltest.TwoNodes(t)
	a := startNode(t, ka, subnetA, nil)
	b := startNode(t, kb, subnetB, nil)
	ctx := context.Background()
	if err := a.nw.Apply(ctx, added(b.lease())); err != nil {
		t.Fatal(err)
	}
	oldMAC := vtepMAC(kb.Addr, 1).String()

	// The peer comes back with a new address and MAC (another node took the subnet).
	moved := b.lease()
	moved.Attrs.PublicIP = netip.MustParseAddr("192.0.2.3")
	newMAC := vtepMAC(moved.Attrs.PublicIP, 1).String()
	moved.Attrs.BackendData = marshalLeaseData(1, vtepMAC(moved.Attrs.PublicIP, 1))
	if err := a.nw.Apply(ctx, added(moved)); err != nil {
		t.Fatal(err)
	}
	neigh := kerneltest.MustRun(t, ka.NS, "ip", "neigh", "show", "dev", "flannel.1")
	fdb := kerneltest.MustRun(t, ka.NS, "bridge", "fdb", "show", "dev", "flannel.1")
	if !strings.Contains(neigh, "10.244.2.0 lladdr "+newMAC) || strings.Contains(neigh, oldMAC) {
		t.Errorf("neighbours after change: %q", neigh)
	}
	if !strings.Contains(fdb, newMAC+" dst 192.0.2.3 self permanent") || strings.Contains(fdb, oldMAC) || strings.Contains(fdb, "192.0.2.2") {
		t.Errorf("fdb after change: %q", fdb)
	}

	if err := a.nw.Apply(ctx, removed(moved)); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"ip", "route", "show", "10.244.2.0/24"},
		{"ip", "neigh", "show", "dev", "flannel.1"},
	} {
		if out := kerneltest.MustRun(t, ka.NS, argv...); strings.TrimSpace(out) != "" {
			t.Errorf("%v after removal: %q", argv, out)
		}
	}
	if out := kerneltest.MustRun(t, ka.NS, "bridge", "fdb", "show", "dev", "flannel.1"); strings.Contains(out, newMAC) {
		t.Errorf("fdb after removal: %q", out)
	}
	// Removing an unknown peer, or again, is fine.
	if err := a.nw.Apply(ctx, removed(moved)); err != nil {
		t.Fatal(err)
	}
	a.nw.mu.Lock()
	defer a.nw.mu.Unlock()
	if f := a.nw.fams[0]; len(f.peers) != 0 || len(f.gone) != 0 {
		t.Fatalf("peer state left: %v %v", f.peers, f.gone)
	}
}

func TestDirectRouting(t *testing.T) {
	a, b, pa, pb := twoNodes(t, map[string]any{"DirectRouting": true})
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.244.2.0/24"); !strings.Contains(out, "10.244.2.0/24 via 192.0.2.2 dev eth0") {
		t.Fatalf("direct route: %q", out)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "neigh", "show", "dev", "flannel.1"); strings.TrimSpace(out) != "" {
		t.Fatalf("tunnel neighbour for a direct peer: %q", out)
	}
	ping(t, pa, podB)
	before := txBytes(t, b.NS, "flannel.1")
	tcpTransfer(t, pb, pa, podA, 1<<20)
	if tx := txBytes(t, b.NS, "flannel.1") - before; tx > 64<<10 {
		t.Fatalf("direct peer: flannel.1 still carried %d bytes", tx)
	}

	// A peer behind a router is reached through the tunnel.
	ctx := context.Background()
	far := subnet.Lease{Subnet: netip.MustParsePrefix("10.244.7.0/24"), Attrs: subnet.LeaseAttrs{
		PublicIP: netip.MustParseAddr("198.51.100.7"), BackendType: Name,
		BackendData: marshalLeaseData(1, vtepMAC(netip.MustParseAddr("198.51.100.7"), 1)),
	}}
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
	if err := a.nw.Apply(ctx, added(far)); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.244.7.0/24"); !strings.Contains(out, "via 10.244.7.0 dev flannel.1 onlink") {
		t.Fatalf("tunnel route for a far peer: %q", out)
	}
	// Removal of the direct peer removes its direct route.
	if err := a.nw.Apply(ctx, removed(b.lease())); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.244.2.0/24"); strings.TrimSpace(out) != "" {
		t.Fatalf("direct route left: %q", out)
	}
}
