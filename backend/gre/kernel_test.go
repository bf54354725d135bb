//go:build linux

package gre

import (
	"strings"
	"testing"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
)

// TestKernelMode runs both nodes with the kernel GRE device. It needs ip_gre and skips,
// naming the reason, on a kernel without it.
func TestKernelMode(t *testing.T) {
	skipWithoutNamespaces(t)
	if err := kernelHasGRE(t); err != nil {
		t.Skipf("kernel has no GRE support (ip_gre): %v", err)
	}
	c := newCluster(t)
	// A TUN left by an earlier userspace-mode run is deleted when kernel mode takes over.
	run(t, c.nodeA, "ip", "tuntap", "add", "dev", TUNName, "mode", "tun")
	a := startNode(t, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", `{"Type":"gre","Mode":"kernel"}`, greLease("10.244.2.0/24", "192.0.2.2"))
	b := startNode(t, c, c.nodeB, "192.0.2.2", "10.244.2.0/24", `{"Type":"gre","Mode":"kernel","MTU":1400}`, greLease("10.244.1.0/24", "192.0.2.1"))
	kn := a.NW.(*kernelNetwork)

	t.Run("device and peer entries", func(t *testing.T) {
		out := run(t, c.nodeA, "ip", "-d", "link", "show", DeviceName)
		for _, want := range []string{"gre remote any local 192.0.2.1", "ttl 64", "mtu 1476", "UP"} {
			if !contains(out, want) {
				t.Fatalf("%s lacks %q:\n%s", DeviceName, want, out)
			}
		}
		if out := run(t, c.nodeB, "ip", "link", "show", DeviceName); !contains(out, "mtu 1400") {
			t.Fatalf("MTU key: %s", out)
		}
		if out := run(t, c.nodeA, "ip", "-4", "-o", "addr", "show", "dev", DeviceName); !contains(out, "inet 10.244.1.0/32") {
			t.Fatalf("address: %s", out)
		}
		if out := run(t, c.nodeA, "ip", "route", "show", "10.244.2.0/24"); !contains(out, "via 192.0.2.2 dev "+DeviceName) || !contains(out, "onlink") {
			t.Fatalf("route: %s", out)
		}
		if out := run(t, c.nodeA, "ip", "neigh", "show", "192.0.2.2", "dev", DeviceName); !contains(out, "lladdr 192.0.2.2") || !contains(out, "PERMANENT") {
			t.Fatalf("neighbour: %s", out)
		}
		if _, err := nstest.Run(c.nodeA, "ip", "link", "show", TUNName); err == nil {
			t.Fatalf("the stale userspace TUN was not deleted")
		}
		if _, ok := a.NW.(backend.PacketCounter); ok {
			t.Fatal("kernel mode claims userspace packet counters")
		}
	})

	t.Run("ping", func(t *testing.T) {
		ping(t, c.podA, true, "-c", "3", "-i", "0.2", "10.244.2.2")
		ping(t, c.podB, true, "-c", "2", "-i", "0.2", "10.244.1.2")
	})

	t.Run("wire format", func(t *testing.T) {
		fd := capture(t, c.nodeB)
		go nstest.Run(c.podA, "ping", "-c", "2", "-i", "0.2", "10.244.2.2") //nolint:errcheck // the capture checks
		pkt := nextGRE(t, fd, "192.0.2.1", "192.0.2.2", func(inner []byte) bool { return len(inner) >= 20 && inner[9] == 1 })
		if hl := int(pkt[0]&0xf) * 4; string(pkt[hl:hl+4]) != string(plainGRE) {
			t.Fatalf("kernel GRE header % x, want % x", pkt[hl:hl+4], plainGRE)
		}
	})

	t.Run("drift and stale entries are repaired", func(t *testing.T) {
		run(t, c.nodeA, "ip", "route", "del", "10.244.2.0/24")
		run(t, c.nodeA, "ip", "route", "add", "10.244.77.0/24", "via", "192.0.2.77", "dev", DeviceName, "onlink")
		if drift, err := kn.reconcile(); err != nil || !drift {
			t.Fatalf("reconcile = %v, %v", drift, err)
		}
		if drift, err := kn.reconcile(); err != nil || drift {
			t.Fatalf("second reconcile = %v, %v; want no drift", drift, err)
		}
		if out := run(t, c.nodeA, "ip", "route", "show", "dev", DeviceName); !contains(out, "10.244.2.0/24 via 192.0.2.2") || contains(out, "10.244.77.0") {
			t.Fatalf("routes after repair:\n%s", out)
		}
		run(t, c.nodeA, "ip", "link", "del", DeviceName)
		if drift, err := kn.reconcile(); err != nil || !drift {
			t.Fatalf("reconcile after deleting the device = %v, %v", drift, err)
		}
		ping(t, c.podA, true, "-c", "1", "10.244.2.2")
	})

	t.Run("peer removal and move", func(t *testing.T) {
		moved := greLease("10.244.2.0/24", "192.0.2.22")
		if err := a.NW.Apply(t.Context(), []subnet.Event{{Type: subnet.Added, Lease: moved}}); err != nil {
			t.Fatal(err)
		}
		if out := run(t, c.nodeA, "ip", "route", "show", "10.244.2.0/24"); !contains(out, "via 192.0.2.22") {
			t.Fatalf("moved route: %s", out)
		}
		if out := run(t, c.nodeA, "ip", "neigh", "show", "dev", DeviceName); contains(out, "192.0.2.2 ") {
			t.Fatalf("old neighbour kept:\n%s", out)
		}
		if err := a.NW.Apply(t.Context(), []subnet.Event{{Type: subnet.Removed, Lease: moved}}); err != nil {
			t.Fatal(err)
		}
		if out := strings.TrimSpace(run(t, c.nodeA, "ip", "route", "show", "dev", DeviceName)); out != "" {
			t.Fatalf("routes left after removal: %s", out)
		}
		if d := a.NW.(backend.Describer).Describe(); len(d.Peers) != 0 || d.Info["mode"] != "kernel" {
			t.Fatalf("Describe after removal: %+v", d)
		}
	})

	t.Run("restart adopts the device and sweeps leftovers", func(t *testing.T) {
		index := run(t, c.nodeB, "cat", "/sys/class/net/"+DeviceName+"/ifindex")
		b.Stop(t)
		// A peer left while weftd was stopped: its entries stay behind.
		run(t, c.nodeB, "ip", "neigh", "add", "192.0.2.9", "lladdr", "192.0.2.9", "dev", DeviceName, "nud", "permanent")
		run(t, c.nodeB, "ip", "route", "add", "10.244.9.0/24", "via", "192.0.2.9", "dev", DeviceName, "onlink")
		b = startNode(t, c, c.nodeB, "192.0.2.2", "10.244.2.0/24", `{"Type":"gre","Mode":"kernel","MTU":1400}`, greLease("10.244.1.0/24", "192.0.2.1"))
		if again := run(t, c.nodeB, "cat", "/sys/class/net/"+DeviceName+"/ifindex"); again != index {
			t.Fatalf("index %s after restart, was %s", again, index)
		}
		if out := run(t, c.nodeB, "ip", "route", "show", "dev", DeviceName); contains(out, "10.244.9.0") || !contains(out, "10.244.1.0/24 via 192.0.2.1") {
			t.Fatalf("routes after restart:\n%s", out)
		}
		if out := run(t, c.nodeB, "ip", "neigh", "show", "dev", DeviceName); contains(out, "192.0.2.9") {
			t.Fatalf("leftover neighbour kept:\n%s", out)
		}
	})

	t.Run("switching to userspace deletes the kernel device", func(t *testing.T) {
		b.Stop(t)
		b = startNode(t, c, c.nodeB, "192.0.2.2", "10.244.2.0/24", `{"Type":"gre","Mode":"userspace"}`, greLease("10.244.1.0/24", "192.0.2.1"))
		if _, err := nstest.Run(c.nodeB, "ip", "link", "show", DeviceName); err == nil {
			t.Fatal("kernel device kept in userspace mode")
		}
		if err := a.NW.Apply(t.Context(), []subnet.Event{{Type: subnet.Added, Lease: greLease("10.244.2.0/24", "192.0.2.2")}}); err != nil {
			t.Fatal(err)
		}
		// Kernel mode on A, userspace on B: the same bytes on the wire.
		ping(t, c.podA, true, "-c", "2", "-i", "0.2", "10.244.2.2")
	})
}
