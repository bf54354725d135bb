//go:build linux

package gre

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/test/nstest"
)

// tunInPlace returns a check that node ns has the userspace TUN up with its MTU, only
// the own address and the route to the Network.
func tunInPlace(ns string) func() error {
	return func() error {
		for _, c := range []struct{ argv, want string }{
			{"ip -o link show " + TUNName, ",UP"},
			{"ip -o link show " + TUNName, " mtu 1476 "},
			{"ip -4 -o addr show dev " + TUNName, "inet 10.244.1.0/32"},
			{"ip route show exact 10.244.0.0/16", "10.244.0.0/16 dev " + TUNName},
			{"cat /proc/sys/net/ipv4/conf/" + TUNName + "/accept_local", "1"},
		} {
			out, err := nstest.Run(ns, strings.Fields(c.argv)...)
			if err != nil || !strings.Contains(out, c.want) {
				return fmt.Errorf("%s: %q (%v), want %q", c.argv, strings.TrimSpace(out), err, c.want)
			}
		}
		return nil
	}
}

// TestUserspaceRecreatesDeletedTUN deletes the userspace TUN while pods exchange
// traffic: Run re-creates it with its address and route, counts a device repair and
// goes on forwarding, without returning.
func TestUserspaceRecreatesDeletedTUN(t *testing.T) {
	skipWithoutNamespaces(t)
	c := newCluster(t)
	a := startNode(t, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", `{"Type":"gre","Mode":"userspace"}`, greLease("10.244.2.0/24", "192.0.2.2"))
	startNode(t, c, c.nodeB, "192.0.2.2", "10.244.2.0/24", `{"Type":"gre","Mode":"userspace"}`, greLease("10.244.1.0/24", "192.0.2.1"))
	ping(t, c.podA, true, "-c", "1", "10.244.2.2")
	for round := 1; round <= 2; round++ {
		flood := make(chan struct{})
		go func() {
			defer close(flood)
			_, _ = nstest.Run(c.podA, "ping", "-n", "-q", "-i", "0.01", "-w", "2", "10.244.2.2")
		}()
		time.Sleep(200 * time.Millisecond) // traffic flows in both directions
		before := a.repairs.Count("device")
		start := time.Now()
		run(t, c.nodeA, "ip", "link", "del", TUNName)
		kerneltest.WaitFor(t, time.Second, TUNName+" re-created", tunInPlace(c.nodeA))
		restored := time.Since(start)
		kerneltest.WaitFor(t, time.Second, "pods ping again", func() error {
			_, err := nstest.Run(c.podA, "ping", "-n", "-c", "1", "-W", "0.2", "10.244.2.2")
			return err
		})
		t.Logf("round %d: %s restored after %v, pods ping after %v", round, TUNName, restored, time.Since(start))
		// A pass that runs while the device is half re-made may count a second repair: more
		// than before is what proves the repair, the count is logged.
		kerneltest.WaitFor(t, time.Second, "device repair counted", func() error {
			if got := a.repairs.Count("device"); got <= before {
				return fmt.Errorf("%d device repairs, as before the deletion: %s", got, a.repairs)
			}
			return nil
		})
		t.Logf("round %d: %d device repair(s) counted for the deletion", round, a.repairs.Count("device")-before)
		select {
		case err := <-a.Done():
			t.Fatalf("Run returned %v after %s was deleted", err, TUNName)
		default:
		}
		<-flood
	}
}
