package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
)

// outage is how long etcd is down in TestEtcdOutage.
const outage = 30 * time.Second

// TestEtcdOutage: etcd is killed for 30 s. Pods keep talking without losing one packet of a
// 20 ms ping; every weftd keeps running, says that the store is gone and then that it is
// back (a reconnect that flaps may say so more than once; the counts are logged), and warns
// of nothing else; on its return each node renews its lease and lists the leases again: a
// node that started during the outage gets its lease and becomes reachable, and a node that
// died during the outage is removed when its lease expires. The times are logged.
func TestEtcdOutage(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 4})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	ds, pods, _ := startNodes(t, c, []int{0, 1}, "--healthz-port", healthPort)
	// The leaver holds a short lease so that, once dead, it is gone one TTL after etcd's
	// return (etcd restarts every lease's TTL when it comes back).
	leaverTTL := 10 * time.Second
	leaver, _, lenv := startNodes(t, c, []int{2}, "--subnet-lease-ttl", leaverTTL.String())
	pingAll(t, pods, 10*time.Second)
	gone := lenv[2].Subnet.Masked().String()
	if routeTo(t, c, 0, gone) == "" {
		t.Fatalf("node 0 has no route to the leaver's %s", gone)
	}
	renewals0 := metric(t, c, 0, "weft_lease_renewals_total", "", "")

	const interval = 20 * time.Millisecond
	ping := startStreamPing(t, pods[0], pods[1].IP, interval, int(2*time.Minute/interval))
	time.Sleep(2 * time.Second)

	etcd := c.EtcdServer()
	etcd.Stop()
	down := time.Now()
	t.Logf("etcd stopped")
	// A node joins while etcd is down: it cannot get a lease yet.
	joiner := c.StartNode(3, "--healthz-port", healthPort)
	// The leaver dies while etcd is down.
	leaver[2].Kill()
	time.Sleep(time.Until(down.Add(outage)))
	if _, err := c.WaitSubnetEnv(3, 0); err == nil {
		t.Fatal("the joiner wrote a subnet file while etcd was down")
	}
	launched := time.Now()
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("etcd down for %s, then serving %s after its relaunch", launched.Sub(down).Round(time.Millisecond), up.Sub(launched).Round(time.Millisecond))

	// Own lease renewed at once.
	eventually(t, 15*time.Second, "node 0 renews its lease", func() error {
		if v := metric(t, c, 0, "weft_lease_renewals_total", "", ""); v <= renewals0 {
			return fmt.Errorf("renewals %v", v)
		}
		return nil
	})
	renewed := time.Since(up)

	// The joiner gets a lease and is reachable.
	jenv, err := c.WaitSubnetEnv(3, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	leased := time.Since(up)
	jpod := c.AddPod(3)
	eventually(t, 15*time.Second, "the joiner's pod is reachable from node 0's pod", func() error {
		return pods[0].Ping(jpod.IP, 1, time.Second)
	})
	reachable := time.Since(up)

	// The leaver's route goes when its lease expires.
	eventually(t, leaverTTL+15*time.Second, "node 0 drops the route to the dead leaver", func() error {
		if r := routeTo(t, c, 0, gone); r != "" {
			return fmt.Errorf("still there: %s", r)
		}
		return nil
	})
	removed := time.Since(up)

	res := ping.Stop(t)
	t.Logf("ping every %s across the outage: %s", interval, res.Summary())
	if gap, end := res.LongestGap(); gap > 100*time.Millisecond {
		t.Logf("the longest gap ended %s after etcd stopped (%s after it was back)", end.Sub(down).Round(time.Millisecond), end.Sub(up).Round(time.Millisecond))
	}
	t.Logf("after etcd's return (from when the harness saw it serve): own lease renewed within %s; joiner leased %s in %s, its pod reachable in %s; dead leaver (TTL %s) removed in %s",
		renewed.Round(time.Millisecond), jenv.Subnet, leased.Round(time.Millisecond), reachable.Round(time.Millisecond),
		leaverTTL, removed.Round(time.Millisecond))
	for _, n := range []int{0, 1} {
		lost, _ := logTime(ds[n].RunLog(), "etcd is unavailable", down)
		back, _ := logTime(ds[n].RunLog(), "etcd is available again", down)
		t.Logf("node %d: outage noticed %s after etcd stopped; leases listed again %s after etcd was relaunched",
			n, lost.Sub(down).Round(time.Millisecond), back.Sub(launched).Round(time.Millisecond))
	}
	if res.LostCount() != 0 || res.Err != nil || res.Transmitted < int(outage/interval) {
		t.Errorf("pod traffic lost packets across the etcd outage: %s (%v)\n%v", res.Summary(), res.Err, res.Lost)
	}
	for _, n := range []int{0, 1} {
		if !ds[n].Running() {
			t.Errorf("weftd on node %d exited", n)
		}
		log := ds[n].RunLog()
		down, back, err := outageLogged(log, "etcd is unavailable", "etcd is available again")
		t.Logf("node %d: outage logged %d times, recovery %d times", n, down, back)
		if err != nil {
			t.Errorf("node %d: %v:\n%s", n, err, log)
		}
		var other []string
		for _, line := range problemLines(log) {
			if !strings.Contains(line, "etcd is unavailable") {
				other = append(other, line)
			}
		}
		if len(other) != 0 {
			t.Errorf("node %d logged errors or warnings other than the outage:\n%s", n, strings.Join(other, "\n"))
		}
	}
	if !joiner.Running() {
		t.Error("the joiner exited")
	}
}

// logTime returns the time of the first klog line containing substr (on the day of ref).
func logTime(log, substr string, ref time.Time) (time.Time, bool) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, substr) {
			continue
		}
		m := klogTime.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		tod, err := time.ParseInLocation("15:04:05.000000", m[1], time.Local)
		if err != nil {
			continue
		}
		return time.Date(ref.Year(), ref.Month(), ref.Day(), tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.Local), true
	}
	return time.Time{}, false
}

// problemLines returns the klog error and warning lines of a log (E... / W... and the etcd
// client's level="warn" lines).
func problemLines(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "E") || strings.HasPrefix(line, "W") || strings.Contains(line, `level="warn"`) || strings.Contains(line, `level="error"`) {
			out = append(out, line)
		}
	}
	return out
}

// TestEtcdLeaderAndQuorumLoss: with a 3-member etcd, stopping the leader, then another
// member (quorum lost), then bringing both back never restarts weftd nor costs one packet of
// a 20 ms ping between pods. A lease change made while the leader is down (a node joining,
// with 2 of 3 members up) reaches the other nodes, and after the quorum loss the watches
// still deliver (a node leaving is seen everywhere).
func TestEtcdLeaderAndQuorumLoss(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 3, EtcdMembers: 3})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	ds, pods, _ := startNodes(t, c, []int{0, 1})
	pingAll(t, pods, 10*time.Second)
	pids := map[int]int{0: ds[0].PID(), 1: ds[1].PID()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ec := c.EtcdCluster()
	waitLeader := func(what string) (int, time.Duration) {
		t.Helper()
		start := time.Now()
		for {
			i, err := ec.LeaderIndex(ctx, cli)
			if err == nil {
				return i, time.Since(start)
			}
			if time.Since(start) > 20*time.Second {
				t.Fatalf("%s: no leader within 20s: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first, _ := waitLeader("at start")

	const interval = 20 * time.Millisecond
	ping := startStreamPing(t, pods[0], pods[1].IP, interval, int(2*time.Minute/interval))
	time.Sleep(time.Second)

	// 1. The leader goes; 2 of 3 members elect another.
	ec.Member(first).Stop()
	second, election := waitLeader("after the leader stopped")
	t.Logf("leader m%d stopped; m%d elected in %s", first, second, election.Round(time.Millisecond))

	// A node joins meanwhile: its lease reaches the others through their watches.
	joined := time.Now()
	jds, jpods, jenvs := startNodes(t, c, []int{2})
	for n := range pods {
		eventually(t, 10*time.Second, fmt.Sprintf("node %d learns of the node that joined without a leader", n), func() error {
			if routeTo(t, c, n, jenvs[2].Subnet.Masked().String()) == "" {
				return fmt.Errorf("no route")
			}
			return nil
		})
	}
	t.Logf("a node joining with the old leader down was routed by the others %s after it started", time.Since(joined).Round(time.Millisecond))
	if err := pods[0].Ping(jpods[2].IP, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// 2. Another member goes: no quorum.
	ec.Member(second).Stop()
	lost := time.Now()
	t.Logf("m%d stopped too: quorum lost", second)
	time.Sleep(5 * time.Second) // the remaining member ends leader-requiring watches after ~3 s
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	_, werr := cli.Put(sctx, c.Prefix()+"/probe", "x")
	scancel()
	if werr == nil {
		t.Fatal("a write succeeded with 1 of 3 members up: the test is not testing quorum loss")
	}

	// 3. Both come back.
	if err := ec.Start(); err != nil {
		t.Fatal(err)
	}
	_, reelect := waitLeader("after the members came back")
	t.Logf("quorum back after %s (leader %s after the restart)", time.Since(lost).Round(time.Millisecond), reelect.Round(time.Millisecond))

	// The watches deliver again: node 2 leaves, everyone drops its route.
	if err := jds[2].Stop(); err != nil {
		t.Fatal(err)
	}
	etcdDelete(t, c, leaseKey(jenvs[2]))
	left := time.Now()
	for n := range pods {
		eventually(t, 15*time.Second, fmt.Sprintf("node %d drops the route of the node that left", n), func() error {
			if r := routeTo(t, c, n, jenvs[2].Subnet.Masked().String()); r != "" {
				return fmt.Errorf("still there: %s", r)
			}
			return nil
		})
	}
	t.Logf("a lease deleted after the quorum came back was unrouted everywhere in %s", time.Since(left).Round(time.Millisecond))

	res := ping.Stop(t)
	t.Logf("ping every %s across leader loss and quorum loss: %s", interval, res.Summary())
	if res.LostCount() != 0 || res.Err != nil || res.Transmitted < 200 {
		t.Errorf("pod traffic lost packets: %s (%v)\n%v", res.Summary(), res.Err, res.Lost)
	}
	for n, pid := range pids {
		if !ds[n].Running() || ds[n].PID() != pid || countLines(ds[n].Log(), "Starting weftd") != 1 {
			t.Errorf("weftd on node %d was restarted or exited (pid %d, was %d)", n, ds[n].PID(), pid)
		}
		log := ds[n].RunLog()
		down, back := countLines(log, "etcd is unavailable"), countLines(log, "etcd is available again")
		t.Logf("node %d: outage logged %d times, recovery %d times", n, down, back)
		if down < 1 || down != back {
			t.Errorf("node %d logged %d outages and %d recoveries, want the quorum loss once each:\n%s", n, down, back, log)
		}
	}
}

// TestOwnLeaseTaken: node 0's lease is deleted and its subnet reserved at once for another
// node. weftd cannot take its subnet back, so it takes another one, says so loudly (SUBNET
// CHANGED, once), rewrites subnet.env, and shows the change in /readyz?verbose and in
// weft_subnet_changes_total; its peer routes to the new subnet.
func TestOwnLeaseTaken(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	ds, pods, envs := startNodes(t, c, []int{0, 1}, "--healthz-port", healthPort)
	pingAll(t, pods, 10*time.Second)
	old := envs[0].Subnet.Masked()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	key := c.Prefix() + "/" + leaseKey(envs[0])
	thief := `{"PublicIP":"192.0.2.99","PublicIPv6":null,"BackendType":"host-gw"}`
	taken := time.Now()
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, key, thief); err != nil { // no etcd lease: a reservation
		t.Fatal(err)
	}

	if err := ds[0].WaitLog("SUBNET CHANGED", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	var now netip.Prefix
	eventually(t, 10*time.Second, "subnet.env names the new subnet", func() error {
		env, err := subnetenv.Read(c.SubnetFile(0))
		if err != nil {
			return err
		}
		if env.Subnet.Masked() == old {
			return fmt.Errorf("still %s", env.Subnet)
		}
		now = env.Subnet.Masked()
		return nil
	})
	t.Logf("own lease %s deleted and reserved for another node: weftd moved to %s in %s", old, now, time.Since(taken).Round(time.Millisecond))
	if n := countLines(ds[0].RunLog(), "SUBNET CHANGED"); n != 1 {
		t.Errorf("SUBNET CHANGED logged %d times, want once", n)
	}
	if got := etcdGet(t, c, leaseKey(envs[0])); got != thief {
		t.Errorf("the reservation was overwritten: %s", got)
	}
	mine := etcdGet(t, c, fmt.Sprintf("subnets/%s-%d", now.Addr(), now.Bits()))
	if !strings.Contains(mine, `"PublicIP":"`+c.NodeIP(0).String()+`"`) {
		t.Errorf("no lease for node 0's new subnet %s: %q", now, mine)
	}

	var snap struct {
		Ready        bool `json:"ready"`
		SubnetChange *struct {
			From, To netip.Prefix
		} `json:"subnetChange"`
		Subnet netip.Prefix `json:"subnet"`
	}
	eventually(t, 5*time.Second, "/readyz?verbose reports the change", func() error {
		body := get(t, c, 0, "/readyz?verbose")
		if err := json.Unmarshal([]byte(body), &snap); err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		if !snap.Ready || snap.SubnetChange == nil || snap.SubnetChange.From != old || snap.SubnetChange.To != now || snap.Subnet != now {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	if v := metric(t, c, 0, "weft_subnet_changes_total", "", ""); v != 1 {
		t.Errorf("weft_subnet_changes_total = %v, want 1", v)
	}
	eventually(t, 10*time.Second, "node 1 routes node 0's new subnet", func() error {
		if r := routeTo(t, c, 1, now.String()); !strings.Contains(r, "via "+c.NodeIP(0).String()) {
			return fmt.Errorf("route %q", r)
		}
		return nil
	})
	if !ds[0].Running() {
		t.Fatal("weftd exited")
	}
}

// TestMalformedPeerLease: garbage in the lease directory (a value that is not JSON, a key
// that is not a subnet) is skipped with one warning per key and value, while weftd keeps
// running and the pods keep talking; the same key turned into a valid lease is routed.
func TestMalformedPeerLease(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	ds, pods, _ := startNodes(t, c, []int{0, 1})
	pingAll(t, pods, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(key, value string) {
		t.Helper()
		if _, err := cli.Put(ctx, c.Prefix()+"/subnets/"+key, value); err != nil {
			t.Fatal(err)
		}
	}
	put("10.244.250.0-24", "{not json")
	put("10.244.250.0-24", "{not json") // the same garbage again: not logged again
	put("junk", `{"PublicIP":"192.0.2.77"}`)
	for n := range ds {
		for _, key := range []string{"10.244.250.0-24", "subnets/junk"} {
			if err := ds[n].WaitLog(key, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	pingAll(t, pods, 5*time.Second)
	put("10.244.250.0-24", `{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"host-gw"}`)
	for n := range ds {
		eventually(t, 5*time.Second, fmt.Sprintf("node %d routes the lease once it is valid", n), func() error {
			if r := routeTo(t, c, n, "10.244.250.0/24"); !strings.Contains(r, "via 192.0.2.77") {
				return fmt.Errorf("route %q", r)
			}
			return nil
		})
		log := ds[n].RunLog()
		if k := countLines(log, "Skipping malformed lease"); k != 2 {
			t.Errorf("node %d warned %d times, want once per bad key and value (2):\n%s", n, k, log)
		}
		if !ds[n].Running() {
			t.Errorf("weftd on node %d exited", n)
		}
	}
}
