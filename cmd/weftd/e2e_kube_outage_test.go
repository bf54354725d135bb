package main

import (
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// TestKubeAPIServerOutage: the API server goes away for 30 s under a 20 ms ping between pods
// on two nodes: no packet is lost, weftd says that the server is gone and then that it
// answers again (a reconnect that flaps may say so more than once; the counts are logged),
// and when the server is back it catches up (a node that joins then is programmed, and the
// peer known before the outage is not added again).
func TestKubeAPIServerOutage(t *testing.T) {
	const outage = 30 * time.Second
	k := newKubeCluster(t, 3, "vxlan")
	ds, pods := map[int]*cluster.Weftd{}, map[int]*cluster.Pod{}
	for i := range 2 {
		k.createNode(t, i, podCIDRFor(i))
		ds[i] = k.startWeftd(t, i)
	}
	for i := range 2 {
		if _, err := k.WaitSubnetEnv(i, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		pods[i] = k.AddPod(i)
	}
	pingAll(t, pods, 15*time.Second)

	const interval = 20 * time.Millisecond
	count := int((outage + 4*time.Second) / interval)
	type pingRes struct {
		res cluster.PingResult
		err error
	}
	done := make(chan pingRes, 1)
	go func() {
		res, err := pods[0].PingWith(pods[1].IP, count, outage+20*time.Second, cluster.PingOptions{Interval: interval})
		done <- pingRes{res, err}
	}()
	time.Sleep(2 * time.Second)
	addedBefore := map[int]int{}
	for i := range 2 {
		addedBefore[i] = strings.Count(ds[i].Log(), addedPeerLine(1-i))
	}
	k.api.Stop()
	if err := ds[0].WaitLog("The Kubernetes API server is unavailable", outage); err != nil {
		t.Error(err)
	}
	time.Sleep(outage)
	if err := k.api.Start(); err != nil {
		t.Fatal(err)
	}
	p := <-done
	if p.err != nil || p.res.Received != p.res.Transmitted || p.res.Transmitted != count {
		t.Fatalf("20 ms ping across a %v API server outage: %d/%d replies: %v", outage, p.res.Received, p.res.Transmitted, p.err)
	}
	t.Logf("%d/%d replies across the outage", p.res.Received, p.res.Transmitted)
	if err := ds[0].WaitLog("The Kubernetes API server answers again", 30*time.Second); err != nil {
		t.Error(err)
	}

	ds[2], pods[2] = k.joinNode(t, 2)
	pingAll(t, pods, 15*time.Second)
	for i := range 2 {
		log := ds[i].Log()
		down, back, err := outageLogged(log, "The Kubernetes API server is unavailable", "The Kubernetes API server answers again")
		n := strings.Count(log, addedPeerLine(1-i))
		t.Logf("node %d: outage logged %d times, recovery %d times; peer %s added %d times before the outage, %d in all",
			i, down, back, podCIDRFor(1-i), addedBefore[i], n)
		if err != nil {
			t.Errorf("node %d: %v:\n%s", i, err, log)
		}
		if addedBefore[i] < 1 || n != addedBefore[i] {
			t.Errorf("node %d added the peer %s %d times before the outage and %d times in all, want it added before and not again",
				i, podCIDRFor(1-i), addedBefore[i], n)
		}
	}
}

// addedPeerLine is what weftd's vxlan backend logs when it adds node i as a peer.
func addedPeerLine(i int) string {
	return `"Added peer" logger="vxlan.vxlan" subnet="` + podCIDRFor(i) + `"`
}
