package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// eventually retries f every 100 ms until it succeeds. timeout is how long that is expected
// to take: past it, a note is logged; the test fails only past waitBound(timeout), so that a
// stall of a loaded machine (processes, netlink, etcd) does not fail it.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	start := time.Now()
	bound := waitBound(timeout)
	noted := false
	for {
		err := f()
		if err == nil {
			if noted {
				t.Logf("NOTE: %s: true after %v, past the expected %v", what, time.Since(start).Round(time.Millisecond), timeout)
			}
			return
		}
		if !noted && time.Since(start) > timeout {
			noted = true
		}
		if time.Since(start) > bound {
			t.Fatalf("%s: not true within %s (expected within %s): %v", what, bound, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitBound is how long eventually waits before it fails: timeout, and at least 15 s.
func waitBound(timeout time.Duration) time.Duration { return max(timeout, 15*time.Second) }

// startNodes starts weftd on the given nodes, waits for their subnet files and gives each
// node one pod.
func startNodes(t *testing.T, c *cluster.Cluster, nodes []int, args ...string) (map[int]*cluster.Weftd, map[int]*cluster.Pod, map[int]subnetenv.Env) {
	t.Helper()
	ds, pods, envs := map[int]*cluster.Weftd{}, map[int]*cluster.Pod{}, map[int]subnetenv.Env{}
	for _, i := range nodes {
		ds[i] = c.StartNode(i, args...)
	}
	for _, i := range nodes {
		env, err := c.WaitSubnetEnv(i, 20*time.Second)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		envs[i] = env
		pods[i] = c.AddPod(i)
	}
	return ds, pods, envs
}

// pingAll checks that every pod reaches every other pod (retrying while routes converge).
func pingAll(t *testing.T, pods map[int]*cluster.Pod, timeout time.Duration) {
	t.Helper()
	for i, from := range pods {
		for j, to := range pods {
			if i == j {
				continue
			}
			eventually(t, timeout, fmt.Sprintf("pod on node %d pings pod on node %d", i, j), func() error {
				return from.Ping(to.IP, 1, 2*time.Second)
			})
		}
	}
}

// routeTo returns the node's main-table route to dst ("" when none).
func routeTo(t *testing.T, c *cluster.Cluster, node int, dst string) string {
	t.Helper()
	out, err := c.Exec(c.NodeNS(node), "ip", "-4", "route", "show", "exact", dst)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// withEtcd runs f with a client of the cluster's etcd, bounded to 10 s.
func withEtcd(t *testing.T, c *cluster.Cluster, f func(ctx context.Context, cli *clientv3.Client) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := f(ctx, cli); err != nil {
		t.Fatal(err)
	}
}

// etcdDelete deletes a key below the cluster's prefix.
func etcdDelete(t *testing.T, c *cluster.Cluster, key string) {
	t.Helper()
	withEtcd(t, c, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Delete(ctx, c.Prefix()+"/"+key)
		return err
	})
}

// etcdPut writes a key below the cluster's prefix (with no etcd lease: a reservation, for
// a subnet key).
func etcdPut(t *testing.T, c *cluster.Cluster, key, value string) {
	t.Helper()
	withEtcd(t, c, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Put(ctx, c.Prefix()+"/"+key, value)
		return err
	})
}

// etcdGet reads a key below the cluster's prefix ("" when missing).
func etcdGet(t *testing.T, c *cluster.Cluster, key string) string {
	t.Helper()
	var value string
	withEtcd(t, c, func(ctx context.Context, cli *clientv3.Client) error {
		resp, err := cli.Get(ctx, c.Prefix()+"/"+key)
		if err == nil && len(resp.Kvs) > 0 {
			value = string(resp.Kvs[0].Value)
		}
		return err
	})
	return value
}

func leaseKey(env subnetenv.Env) string {
	sn := env.Subnet.Masked()
	return fmt.Sprintf("subnets/%s-%d", sn.Addr(), sn.Bits())
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
