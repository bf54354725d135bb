package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// TestReadOnlyProcSys runs every backend with /proc/sys read-only, as a container runtime
// mounts it in an unprivileged pod (dist/kube-weft.yml): weftd must not need to write it.
// weftd runs through a wrapper that makes its mount namespace's /proc/sys read-only.
func TestReadOnlyProcSys(t *testing.T) {
	dir := t.TempDir()
	weftd := filepath.Join(dir, "weftd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := cluster.Build(ctx, "./cmd/weftd", weftd); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "weftd-ro-proc-sys")
	script := fmt.Sprintf(`#!/bin/sh
exec unshare --mount --propagation private sh -c 'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec %s "$@"' weftd "$@"
`, weftd)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"udp", "gre", "vxlan", "host-gw", "wireguard"} {
		t.Run(backend, func(t *testing.T) {
			c := cluster.New(t, cluster.Options{Nodes: 2, WeftdPath: wrapper})
			c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"` + backend + `"}}`)
			pods := map[int]*cluster.Pod{}
			for i := range 2 {
				c.StartNode(i)
			}
			for i := range 2 {
				if _, err := c.WaitSubnetEnv(i, 20*time.Second); err != nil {
					t.Fatal(err)
				}
				pods[i] = c.AddPod(i)
			}
			pingAll(t, pods, 10*time.Second)
			// The TUN backends' accept_local is set all the same (over netlink).
			if dev := map[string]string{"udp": "flannel0", "gre": "weft-gre0"}[backend]; dev != "" {
				out, err := c.Exec(c.NodeNS(0), "cat", "/proc/sys/net/ipv4/conf/"+dev+"/accept_local")
				if err != nil || strings.TrimSpace(out) != "1" {
					t.Errorf("%s accept_local = %q, %v; want 1", dev, out, err)
				}
			}
			// The wrapper really made /proc/sys read-only for weftd.
			out, err := c.Exec(c.NodeNS(0), "unshare", "--mount", "--propagation", "private", "sh", "-c",
				"mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && echo 1 > /proc/sys/net/ipv4/ip_forward")
			if err == nil {
				t.Fatalf("the read-only /proc/sys was writable: %s", out)
			}
		})
	}
}
