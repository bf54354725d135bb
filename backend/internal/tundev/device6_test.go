//go:build linux

package tundev

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend/internal/fastpath/fastpathtest"
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

const (
	tunName   = "weft-t6"
	network6  = "fd00:10:244::/56"
	addr6     = "fd00:10:244:1::/128"
	route6    = network6 + " dev " + tunName + " metric 1024"
	testError = "tundev test"
)

// dualDevice is a dual-stack Device for the TUN tunName.
func dualDevice() Device {
	p := netip.MustParsePrefix
	return Device{Name: tunName, ErrPrefix: testError, Own: p("10.244.1.0/24"), Network: p("10.244.0.0/16"),
		Own6: p("fd00:10:244:1::/64"), Network6: p(network6), MTU: 1400}
}

// activateIn makes the TUN of d in a fresh namespace with Activate and returns the
// namespace, a Handle in it, and d with its index.
func activateIn(t *testing.T, d Device) (string, *kernel.Handle, Device) {
	t.Helper()
	if err := tun.Check(); err != nil {
		t.Skip(err)
	}
	ns := nstest.Temp(t, "tun6")
	var h *kernel.Handle
	err := nsutil.Do(ns, func() (err error) {
		if h, err = kernel.Open(); err != nil {
			return err
		}
		d, err = Activate(h, d, ktesting.NewLogger(t, ktesting.NewConfig()))
		return err
	})
	if h != nil {
		t.Cleanup(func() { h.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	return ns, h, d
}

// state6 returns a check that the TUN in ns has exactly the IPv6 address and route
// wanted, and none of the stale ones.
func state6(ns string, stale ...string) func() error {
	return func() error {
		addrs, err := nstest.Run(ns, "ip", "-6", "-o", "addr", "show", "dev", tunName, "scope", "global")
		if err != nil {
			return err
		}
		if strings.Count(addrs, "\n") != 1 || !strings.Contains(addrs, "inet6 "+addr6) {
			return fmt.Errorf("global IPv6 addresses %q, want only %s", addrs, addr6)
		}
		routes, err := nstest.Run(ns, "ip", "-6", "route", "show", "dev", tunName)
		if err != nil {
			return err
		}
		if !strings.Contains(routes, network6+" metric 1024") {
			return fmt.Errorf("IPv6 routes via %s %q, want %s", tunName, routes, route6)
		}
		for _, s := range stale {
			if strings.Contains(addrs+routes, s) {
				return fmt.Errorf("stale %s kept: addresses %q, routes %q", s, addrs, routes)
			}
		}
		return nil
	}
}

// TestDeviceIPv6: Activate gives a dual-stack TUN its IPv6 address (a /128, no DAD) and
// the route to the IPv6Network with metric 1024; Drift names each IPv6 difference with
// its repair kind, Ensure fixes it (removing other global addresses and stale routes,
// keeping the kernel's own) and then writes nothing; a Device without Own6 leaves IPv6
// alone.
func TestDeviceIPv6(t *testing.T) {
	ns, h, d := activateIn(t, dualDevice())
	if err := state6(ns)(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, ns, "ip", "-6", "route", "show", "exact", network6); !strings.Contains(out, route6) {
		t.Fatalf("IPv6 route %q, want %q", out, route6)
	}
	if f, err := d.Drift(h); err != nil || len(f) != 0 {
		t.Fatalf("Drift after Activate = %v, %v; want none", f, err)
	}

	kerneltest.MustRun(t, ns, "ip", "-6", "route", "del", network6, "dev", tunName)
	kerneltest.MustRun(t, ns, "ip", "-6", "addr", "del", addr6, "dev", tunName)
	kerneltest.MustRun(t, ns, "ip", "-6", "addr", "add", "fd00:10:244:99::/128", "dev", tunName, "nodad")
	kerneltest.MustRun(t, ns, "ip", "-6", "addr", "add", "2001:db8:5::1/64", "dev", tunName, "nodad")
	kerneltest.MustRun(t, ns, "ip", "-6", "route", "add", "fd00:99::/64", "dev", tunName)
	faults, err := d.Drift(h)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, f := range faults {
		kinds[f.Kind]++
	}
	// Address: the missing one and two stale ones. Route: the missing one and the stale
	// one; 2001:db8:5::/64, the kernel's prefix route of the /64 address, is not weft's.
	if kinds["address"] != 3 || kinds["route"] != 2 || len(faults) != 5 {
		t.Fatalf("Drift = %+v; want 3 address and 2 route faults", faults)
	}
	if err := d.Ensure(h); err != nil {
		t.Fatal(err)
	}
	if err := state6(ns, "fd00:10:244:99::", "2001:db8:5::", "fd00:99::")(); err != nil {
		t.Fatal(err)
	}
	if f, err := d.Drift(h); err != nil || len(f) != 0 {
		t.Fatalf("Drift after Ensure = %v, %v; want none", f, err)
	}
	mon := kerneltest.Watch(t, ns)
	if err := d.Ensure(h); err != nil {
		t.Fatal(err)
	}
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("Ensure with all in place wrote %d changes (last %s)", n, last)
	}

	// Without Own6 the device leaves IPv6 alone: neither a fault nor a removal.
	d4 := d
	d4.Own6, d4.Network6 = netip.Prefix{}, netip.Prefix{}
	if err := d4.Ensure(h); err != nil {
		t.Fatal(err)
	}
	if f, err := d4.Drift(h); err != nil || len(f) != 0 {
		t.Fatalf("Drift without Own6 = %v, %v; want none", f, err)
	}
	if err := state6(ns)(); err != nil {
		t.Fatalf("a Device without Own6 changed IPv6: %v", err)
	}
}

// TestPlaneRepairsIPv6: a running Plane on a dual-stack TUN puts back its deleted IPv6
// route and address, and removes a stale one, on the kernel's IPv6 notifications (its
// full check is an hour away), also after the device went down (the kernel drops its
// IPv6 addresses then); each repair is counted by kind.
func TestPlaneRepairsIPv6(t *testing.T) {
	ns, h, d := activateIn(t, dualDevice())
	repairs := &kerneltest.Repairs{}
	hub := fastpathtest.NewHub()
	var p *Plane
	err := nsutil.Do(ns, func() (err error) {
		p, err = NewPlane(PlaneConfig{
			Device:     d,
			Handle:     h,
			TUNOptions: tun.Options{Persist: true, Batch: 8},
			Conn:       hub.Conn(netip.MustParseAddrPort("192.0.2.1:8285"), 8, 64),
			Repaired:   repairs.Report,
			Log:        ktesting.NewLogger(t, ktesting.NewConfig()),
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p.SetResync(time.Hour) // repairs below come from notifications only
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})

	for _, c := range []struct {
		name  string
		kinds []string
		argvs [][]string
		stale []string
	}{
		{"route deleted", []string{"route"}, [][]string{{"ip", "-6", "route", "del", network6, "dev", tunName}}, nil},
		{"address deleted", []string{"address"}, [][]string{{"ip", "-6", "addr", "del", addr6, "dev", tunName}}, nil},
		{"stale address and route", []string{"address", "route"}, [][]string{
			{"ip", "-6", "addr", "add", "fd00:10:244:99::/128", "dev", tunName, "nodad"},
			{"ip", "-6", "route", "add", "fd00:99::/64", "dev", tunName},
		}, []string{"fd00:10:244:99::", "fd00:99::"}},
		{"link down", []string{"device", "address", "route"}, [][]string{{"ip", "link", "set", tunName, "down"}}, nil},
	} {
		before := map[string]int{}
		for _, k := range c.kinds {
			before[k] = repairs.Count(k)
		}
		for _, argv := range c.argvs {
			kerneltest.MustRun(t, ns, argv...)
		}
		took := kerneltest.WaitFor(t, 10*time.Second, c.name+": repaired", func() error {
			for _, k := range c.kinds {
				if repairs.Count(k) == before[k] {
					return fmt.Errorf("no %s repair counted yet (%s)", k, repairs)
				}
			}
			if out, _ := nstest.Run(ns, "ip", "-o", "link", "show", tunName); !strings.Contains(out, ",UP") {
				return fmt.Errorf("link %q not up", out)
			}
			return state6(ns, c.stale...)()
		})
		t.Logf("%s: repaired within %v (%s)", c.name, took.Round(time.Millisecond), repairs)
	}
}
