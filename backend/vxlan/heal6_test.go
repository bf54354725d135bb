package vxlan

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
)

// TestRunRestoresIPv6WithinASecond: whatever is deleted or changed on flannel-v6.1 of a
// dual-stack node comes back within a second, from the kernel's notifications alone (no
// periodic pass), is counted, and the IPv4 side stays in place.
func TestRunRestoresIPv6WithinASecond(t *testing.T) {
	a, b, pa, _ := twoNodes6(t, true, nil)
	runInBackground(t, a.nw, time.Hour)
	ping6(t, pa, podB6)
	macB6 := vtepMAC(underB6, 1).String()
	for _, c := range []struct {
		name  string
		argv  []string
		kinds []string // repairs that must be counted
	}{
		{"route deleted", []string{"ip -6 route del fd00:0:0:2::/64"}, []string{"route"}},
		{"route gateway changed", []string{"ip -6 route replace fd00:0:0:2::/64 via fd00:0:0:2::9 dev flannel-v6.1 onlink metric 1024"}, []string{"route"}},
		{"route moved to eth0", []string{"ip -6 route replace fd00:0:0:2::/64 via 2001:db8::2 dev eth0 metric 1024"}, []string{"route"}},
		{"neighbour deleted", []string{"ip -6 neigh del fd00:0:0:2:: dev flannel-v6.1"}, []string{"neighbour"}},
		{"neighbour MAC changed", []string{"ip -6 neigh replace fd00:0:0:2:: lladdr 02:00:00:00:00:09 dev flannel-v6.1 nud permanent"}, []string{"neighbour"}},
		{"fdb deleted", []string{"bridge fdb del " + macB6 + " dev flannel-v6.1 dst 2001:db8::2 self"}, []string{"fdb"}},
		{"fdb remote changed", []string{"bridge fdb replace " + macB6 + " dev flannel-v6.1 dst 2001:db8::9 self permanent"}, []string{"fdb"}},
		{"address deleted", []string{"ip -6 addr del fd00:0:0:1::/128 dev flannel-v6.1"}, []string{"address"}},
		{"device down", []string{"ip link set flannel-v6.1 down"}, []string{"device", "route"}},
		{"device MTU changed", []string{"ip link set flannel-v6.1 mtu 1300"}, []string{"device"}},
		{"device deleted", []string{"ip link del flannel-v6.1"}, []string{"device", "address", "route", "neighbour", "fdb"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := map[string]int{}
			for _, k := range c.kinds {
				before[k] = a.repairs.Count(k)
			}
			for _, argv := range c.argv {
				kerneltest.MustRun(t, a.NS, strings.Fields(argv)...)
			}
			d := kerneltest.WaitFor(t, time.Second, c.name, peer6InPlace(a, b))
			t.Logf("%s: restored after %v", c.name, d)
			ping6(t, pa, podB6)
			kerneltest.WaitFor(t, time.Second, "repairs counted", func() error {
				for _, k := range c.kinds {
					if a.repairs.Count(k) <= before[k] {
						return fmt.Errorf("no %s repair counted: %s", k, a.repairs)
					}
				}
				return nil
			})
			time.Sleep(100 * time.Millisecond) // the next incident is a separate one
		})
	}
	kerneltest.WaitFor(t, time.Second, "IPv4 entries", peerInPlace(a, b))
	ping(t, pa, podB)
}

// TestIdleRunWritesNothingIPv6: with everything in place, reconcile passes of a
// dual-stack network find nothing and change nothing, also after repairing a deleted
// flannel-v6.1.
// tables6 lists weft's IPv6 state on node a: routes, neighbours, FDB entries and global
// addresses. The kernel's own link-local address and route (which it adds, and whose DAD
// ends, when it likes) are left out: they are not weft's.
const tables6 = "ip -6 route show table main | grep -v '^fe80:'; ip -6 neigh show dev flannel-v6.1 | grep -v '^fe80:'; " +
	"bridge fdb show dev flannel-v6.1; ip -6 addr show dev flannel-v6.1 scope global"

func TestIdleRunWritesNothingIPv6(t *testing.T) {
	a, b, _, _ := twoNodes6(t, true, nil)
	quiet := func(what string) {
		t.Helper()
		before := kerneltest.MustRun(t, a.NS, "sh", "-c", tables6)
		for i := 0; i < 5; i++ {
			drift, err := a.nw.reconcile()
			if drift || err != nil {
				t.Fatalf("%s: pass %d found drift=%v err=%v", what, i, drift, err)
			}
		}
		after := kerneltest.MustRun(t, a.NS, "sh", "-c", tables6)
		if before != after {
			t.Fatalf("%s: idle passes changed the tables:\n%s\n---\n%s", what, before, after)
		}
	}
	quiet("after connect")
	kerneltest.MustRun(t, a.NS, "ip", "link", "del", "flannel-v6.1")
	drift, err := a.nw.reconcile()
	if !drift || err != nil {
		t.Fatalf("repair pass: drift=%v err=%v", drift, err)
	}
	kerneltest.WaitFor(t, time.Second, "restored", peer6InPlace(a, b))
	quiet("after the repair")
}
