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

// TestRunEndsOnCloseAndCancelAndCloseKeepsState: Run ends on cancel and on Close (which
// may be called twice), leaves no goroutine behind, and Close leaves the data plane
// alone. The ipv6 node is dual stack: two kernel subscriptions, merged.
func TestRunEndsOnCloseAndCancelAndCloseKeepsState(t *testing.T) {
	forEachFamily(t, runEndsOnCancelAndClose)
}

func runEndsOnCancelAndClose(t *testing.T, f inet) {
	a, b, _, _ := f.twoNodes(t, nil)
	base := runtime.NumGoroutine()
	a.nw.resync = 10 * time.Millisecond
	ends := func(done chan error, what string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after %s = %v, want nil", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Run did not return after %s", what)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.nw.Run(ctx) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	ends(done, "cancel")

	go func() { done <- a.nw.Run(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	if err := a.nw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.nw.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ends(done, "Close")
	// Bounded generously: goroutines that end late on a loaded machine are not a leak.
	for deadline := time.Now().Add(15 * time.Second); runtime.NumGoroutine() > base && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines after Run ended, %d before", n, base)
	}
	// Close left the data plane alone: the device, and the peer's route, neighbour and FDB
	// entry, of each family the node runs.
	fams := []inet{ipv4}
	if f == ipv6 {
		fams = append(fams, ipv6)
	}
	for _, g := range fams {
		if err := peerInPlace(g, a, b)(); err != nil {
			t.Errorf("after Close: %v", err)
		}
	}
}

// TestApplyWhileRunning runs the repair loop flat out while peers come and go, for the
// race detector, and checks the end state. The ipv6 node is IPv6 only, with node b as a
// peer beside the leases.
func TestApplyWhileRunning(t *testing.T) {
	forEachFamily(t, applyWhileRunning)
}

func applyWhileRunning(t *testing.T, f inet) {
	var a *testNode
	var leases []subnet.Lease
	others := 0 // peers besides the leases
	if f == ipv6 {
		a, _, _, _ = twoNodes6(t, false, nil)
		others = 1
		for i := 10; i < 20; i++ {
			leases = append(leases, lease6("", fmt.Sprintf("fd00:0:0:%d::/64", i), netip.Addr{},
				netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", i))))
		}
	} else {
		ka, _ := kerneltest.TwoNodes(t)
		a = startNode(t, ka, subnetA, nil)
		for i := 10; i < 20; i++ {
			leases = append(leases, vxlanLease(fmt.Sprintf("10.244.%d.0/24", i), fmt.Sprintf("192.0.2.%d", i)))
		}
	}
	runInBackground(t, a.nw, time.Millisecond)
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		if err := a.nw.Apply(ctx, added(leases...)); err != nil {
			t.Fatal(err)
		}
		if err := a.nw.Apply(ctx, removed(leases[:5]...)); err != nil {
			t.Fatal(err)
		}
	}
	want := 5 + others
	out := kerneltest.MustRun(t, a.NS, "ip", f.ip, "route", "show", "dev", f.dev)
	if n := strings.Count(out, "onlink"); n != want {
		t.Fatalf("%d routes on %s, want %d:\n%s", n, f.dev, want, out)
	}
	for _, l := range leases[5:] {
		sn, _ := f.ofLease(l)
		if !strings.Contains(out, sn.String()) {
			t.Errorf("route for %s missing:\n%s", sn, out)
		}
	}
	fdb := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", f.dev)
	if n := strings.Count(fdb, "self permanent"); n != want {
		t.Errorf("%d fdb entries, want %d:\n%s", n, want, fdb)
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
