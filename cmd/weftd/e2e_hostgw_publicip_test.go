package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/test/cluster"
)

// TestHostGWRefusesPublicIP: as flanneld, weftd refuses to run host-gw when the public IP
// (IPv4) or public IPv6 address is not the interface's address (here a NAT address that
// no interface of the node holds): it exits with status 1 and logs an error naming the
// public address, the interface's address and the interface, before it writes a subnet
// file or takes a lease.
func TestHostGWRefusesPublicIP(t *testing.T) {
	for _, tc := range []struct {
		name, config, flag, public string
		ipv6                       bool
		want                       func(c *cluster.Cluster) string
	}{
		{
			name: "IPv4", config: `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`,
			flag: "--public-ip", public: "198.51.100.50",
			want: func(c *cluster.Cluster) string {
				return fmt.Sprintf("host-gw needs the public IP (198.51.100.50) to be the interface's address (%s on eth0)", c.NodeIP(0))
			},
		},
		{
			name:   "IPv6",
			config: `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"` + ipv6Network + `","Backend":{"Type":"host-gw"}}`,
			flag:   "--public-ipv6", public: "2001:db8:ff::50", ipv6: true,
			want: func(c *cluster.Cluster) string {
				return fmt.Sprintf("host-gw needs the public IPv6 address (2001:db8:ff::50) to be the interface's (%s on eth0)", c.NodeIPv6(0))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster.New(t, cluster.Options{Nodes: 1, IPv6: tc.ipv6})
			c.PutConfig(tc.config)
			w := c.StartNode(0, tc.flag, tc.public)
			err := w.Wait(30 * time.Second)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("weftd ended with %v, want exit status 1; its output:\n%s", err, w.RunLog())
			}
			if want := tc.want(c); !strings.Contains(w.RunLog(), want) {
				t.Errorf("weftd's output does not contain %q:\n%s", want, w.RunLog())
			}
			if _, err := os.Stat(c.SubnetFile(0)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("subnet file: %v, want none", err)
			}
			withEtcd(t, c, func(ctx context.Context, cli *clientv3.Client) error {
				resp, err := cli.Get(ctx, c.Prefix()+"/subnets/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
				if err == nil && len(resp.Kvs) != 0 {
					t.Errorf("%d leases in etcd, want none (first: %s)", len(resp.Kvs), resp.Kvs[0].Key)
				}
				return err
			})
		})
	}
}
