package vxlan

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/subnet"
)

func TestRunEndsOnCloseAndCancelAndCloseKeepsState(t *testing.T) {
	a, _, _, _ := twoNodes(t, nil)
	base := runtime.NumGoroutine()
	a.nw.resync = 10 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.nw.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	go func() { done <- a.nw.Run(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	if err := a.nw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.nw.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Close = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	for i := 0; runtime.NumGoroutine() > base && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines after Run ended, %d before", n, base)
	}
	// Close left the data plane alone.
	for _, c := range []struct{ argv, want string }{
		{"ip link show flannel.1", "flannel.1"},
		{"ip route show 10.244.2.0/24", "via 10.244.2.0 dev flannel.1 onlink"},
		{"ip neigh show dev flannel.1", "10.244.2.0"},
	} {
		if out := kerneltest.MustRun(t, a.NS, strings.Fields(c.argv)...); !strings.Contains(out, c.want) {
			t.Errorf("after Close, %s = %q", c.argv, out)
		}
	}
}

// TestApplyWhileRunning runs the repair loop flat out while peers come and go, for the
// race detector, and checks the end state.
func TestApplyWhileRunning(t *testing.T) {
	ka, _ := kerneltest.TwoNodes(t)
	a := startNode(t, ka, subnetA, nil)
	runInBackground(t, a.nw, time.Millisecond)
	var leases []subnet.Lease
	for i := 10; i < 20; i++ {
		pub := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		leases = append(leases, subnet.Lease{
			Subnet: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)),
			Attrs:  subnet.LeaseAttrs{PublicIP: pub, BackendType: Name, BackendData: marshalLeaseData(1, vtepMAC(pub, 1))},
		})
	}
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		if err := a.nw.Apply(ctx, added(leases...)); err != nil {
			t.Fatal(err)
		}
		if err := a.nw.Apply(ctx, removed(leases[:5]...)); err != nil {
			t.Fatal(err)
		}
	}
	out := kerneltest.MustRun(t, ka.NS, "ip", "route", "show", "dev", "flannel.1")
	if n := strings.Count(out, "onlink"); n != 5 {
		t.Fatalf("%d routes on flannel.1, want 5:\n%s", n, out)
	}
	for _, l := range leases[5:] {
		if !strings.Contains(out, l.Subnet.String()) {
			t.Errorf("route for %s missing:\n%s", l.Subnet, out)
		}
	}
	fdb := kerneltest.MustRun(t, ka.NS, "bridge", "fdb", "show", "dev", "flannel.1")
	if n := strings.Count(fdb, "self permanent"); n != 5 {
		t.Errorf("%d fdb entries, want 5:\n%s", n, fdb)
	}
}

func TestDirectRoutingUnreachablePeerUsesTunnel(t *testing.T) {
	ka, _ := kerneltest.TwoNodes(t)
	a := startNode(t, ka, subnetA, map[string]any{"DirectRouting": true})
	pub := netip.MustParseAddr("203.0.113.9") // no route at all
	l := subnet.Lease{Subnet: netip.MustParsePrefix("10.244.9.0/24"), Attrs: subnet.LeaseAttrs{
		PublicIP: pub, BackendType: Name, BackendData: marshalLeaseData(1, vtepMAC(pub, 1))}}
	if err := a.nw.Apply(context.Background(), added(l)); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "route", "show", "10.244.9.0/24"); !strings.Contains(out, "via 10.244.9.0 dev flannel.1 onlink") {
		t.Fatalf("route = %q", out)
	}
	// The peer becomes reachable on the segment: the repair pass switches it to direct.
	kerneltest.MustRun(t, ka.NS, "ip", "route", "add", "203.0.113.0/24", "dev", "eth0")
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "route", "show", "10.244.9.0/24"); !strings.Contains(out, "via 203.0.113.9 dev eth0") {
		t.Fatalf("route after the peer became direct = %q", out)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "neigh", "show", "dev", "flannel.1"); strings.Contains(out, "10.244.9.0") {
		t.Fatalf("tunnel neighbour left: %q", out)
	}
}
