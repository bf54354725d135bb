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

// TestDualStackRunEndsOnCloseWithoutLeaks: Run of a dual-stack network (two kernel
// subscriptions, merged) ends on Close and leaves no goroutine behind; the IPv6 state
// stays.
func TestDualStackRunEndsOnCloseWithoutLeaks(t *testing.T) {
	a, b, _, _ := twoNodes6(t, true, nil)
	base := runtime.NumGoroutine()
	done := make(chan error, 1)
	go func() { done <- a.nw.Run(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	if err := a.nw.Close(); err != nil {
		t.Fatal(err)
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
	if err := peer6InPlace(a, b)(); err != nil {
		t.Errorf("after Close: %v", err)
	}
}

// TestApplyWhileRunningIPv6 runs the repair loop flat out while dual-stack and
// IPv6-only peers come and go, for the race detector, and checks the end state.
func TestApplyWhileRunningIPv6(t *testing.T) {
	a, _, _, _ := twoNodes6(t, false, nil)
	runInBackground(t, a.nw, time.Millisecond)
	var leases []subnet.Lease
	for i := 10; i < 20; i++ {
		leases = append(leases, lease6("", fmt.Sprintf("fd00:0:0:%d::/64", i), netip.Addr{},
			netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", i))))
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
	out := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show", "dev", "flannel-v6.1")
	if n := strings.Count(out, "onlink"); n != 6 { // node b and leases[5:]
		t.Fatalf("%d routes on flannel-v6.1, want 6:\n%s", n, out)
	}
	for _, l := range leases[5:] {
		if !strings.Contains(out, l.IPv6Subnet.String()) {
			t.Errorf("route for %s missing:\n%s", l.IPv6Subnet, out)
		}
	}
	fdb := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "flannel-v6.1")
	if n := strings.Count(fdb, "self permanent"); n != 6 {
		t.Errorf("%d fdb entries, want 6:\n%s", n, fdb)
	}
}
