package main

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// switchInterval is the pods' ping interval while a node switches daemons.
const switchInterval = 50 * time.Millisecond

// switchCost is what a ping every switchInterval from node 0's pod to node 1's saw while
// node 0 switched daemons.
type switchCost struct {
	what string
	took time.Duration // from the first step of the switch to the new daemon being ready
	res  pingStream
}

func (s switchCost) String() string {
	gap, _ := s.res.LongestGap()
	return fmt.Sprintf("%-36s %2d of %3d pings lost, longest gap between replies %4d ms, new daemon ready after %4d ms",
		s.what, s.res.LostCount(), s.res.Transmitted, gap.Milliseconds(), s.took.Milliseconds())
}

// measureSwitch pings from pods[0] to pods[1] every switchInterval while do switches node
// 0's daemon, until the pods talk again both ways (bounded: the test fails after 10 s) and
// one more second has passed.
func measureSwitch(t *testing.T, pods map[int]*cluster.Pod, what string, do func()) switchCost {
	t.Helper()
	ping := startStreamPing(t, pods[0], pods[1].IP, switchInterval, int(time.Minute/switchInterval))
	time.Sleep(time.Second)
	start := time.Now()
	do()
	took := time.Since(start)
	pingAll(t, pods, 10*time.Second)
	time.Sleep(time.Second)
	c := switchCost{what: what, took: took, res: ping.Stop(t)}
	t.Log(c)
	return c
}

// TestRollbackUDPToFlanneld switches a udp node from weftd to flanneld and back, in place,
// with the pods pinging across it: weftd stopped with SIGTERM, then with SIGKILL, and
// replaced by a stand-in that opens and configures its TUN as flanneld does (see
// flanneld_standin_test.go); then the stand-in stopped and weftd started again. After
// every switch the pods must ping each other both ways and move data over TCP (which
// would meet TCP superpackets if weft left TUN offloads behind); the pings lost in each
// switch are logged.
func TestRollbackUDPToFlanneld(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`)
	ds, pods, envs := startNodes(t, c, []int{0, 1})
	pingAll(t, pods, 10*time.Second)
	cfg := standInConfig{
		NodeIP:  c.NodeIP(0),
		Subnet:  envs[0].Subnet.Masked(),
		Network: mustPrefix("10.244.0.0/16"),
		MTU:     envs[0].MTU,
		Peers:   map[netip.Prefix]netip.Addr{envs[1].Subnet.Masked(): c.NodeIP(1)},
	}

	var costs []switchCost
	for _, stop := range []struct {
		signal string
		stop   func(*cluster.Weftd)
	}{
		{"SIGTERM", func(w *cluster.Weftd) {
			if err := w.Stop(); err != nil {
				t.Errorf("weftd after SIGTERM: %v", err)
			}
		}},
		{"SIGKILL", (*cluster.Weftd).Kill},
	} {
		var fl *standIn
		var dev, route string
		costs = append(costs, measureSwitch(t, pods, "weftd -> flanneld ("+stop.signal+")", func() {
			stop.stop(ds[0])
			fl = startStandIn(t, c, 0, cfg)
			var err error
			if dev, route, err = fl.waitReady(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if dev != "flannel0" || route != "added" {
				t.Errorf("after weftd's %s, flanneld's TUNSETIFF(flannel%%d) got %s and its route to the Network %s (want flannel0, added):\n%s\n%s",
					stop.signal, dev, route, ipOut(t, c, 0, "-d", "link", "show", "type", "tun"), ipOut(t, c, 0, "-4", "route"))
			}
		}))
		transfer(t, pods)
		if out := fl.out.String(); strings.Contains(out, "oversized") {
			t.Errorf("the stand-in read superpackets from %s after weftd's %s: %s", dev, stop.signal, out)
		}

		costs = append(costs, measureSwitch(t, pods, "flanneld -> weftd (after "+stop.signal+")", func() {
			fl.stop(t)
			if err := ds[0].Start(); err != nil {
				t.Fatal(err)
			}
			if err := ds[0].WaitLog("udp backend active", 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}))
		transfer(t, pods)
	}
	var sum strings.Builder
	for _, s := range costs {
		fmt.Fprintf(&sum, "\n  %s", s)
	}
	t.Logf("udp node switched in place, pods pinging every %s:%s", switchInterval, sum.String())
}

// transfer moves 4 MiB over TCP between the pods, both ways.
func transfer(t *testing.T, pods map[int]*cluster.Pod) {
	t.Helper()
	for _, p := range [][2]int{{0, 1}, {1, 0}} {
		if err := cluster.TCPTransfer(pods[p[0]], pods[p[1]], 4<<20, 30*time.Second); err != nil {
			t.Errorf("TCP from node %d's pod to node %d's: %v", p[0], p[1], err)
		}
	}
}
