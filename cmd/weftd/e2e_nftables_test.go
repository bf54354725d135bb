package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// TestNFTables: with "EnableNFTables": true, three nodes pass ping and TCP for vxlan, udp
// and host-gw with weft's rules in the nftables table "ip weft" and none in iptables; a
// deleted rule and a deleted table are back within the resync period, counted as repairs.
func TestNFTables(t *testing.T) {
	for _, backend := range []string{"vxlan", "udp", "host-gw"} {
		t.Run(backend, func(t *testing.T) {
			c := cluster.New(t, cluster.Options{Nodes: 3})
			c.PutConfig(`{"Network":"10.244.0.0/16","EnableNFTables":true,"Backend":{"Type":"` + backend + `"}}`)
			_, pods, _ := startNodes(t, c, []int{0, 1, 2}, "--ip-masq", "--iptables-resync", "1", "--healthz-port", healthPort)
			pingAll(t, pods, 10*time.Second)
			if err := cluster.TCPTransfer(pods[0], pods[2], 1<<20, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			for n := range 3 {
				eventually(t, 5*time.Second, fmt.Sprintf("node %d's weft table", n), func() error {
					table, err := c.Exec(c.NodeNS(n), "nft", "list", "table", "ip", "weft")
					if err != nil {
						return err
					}
					if !strings.Contains(table, "masquerade fully-random") {
						return fmt.Errorf("no masquerade:\n%s", table)
					}
					if backend != "host-gw" {
						for p := range 3 {
							if p != n && !strings.Contains(table, c.NodeIP(p).String()) {
								return fmt.Errorf("peer %s not in the set:\n%s", c.NodeIP(p), table)
							}
						}
						if !strings.Contains(table, "ip saddr @peers") {
							return fmt.Errorf("no tunnel rule:\n%s", table)
						}
					} else if strings.Contains(table, "chain input") {
						return fmt.Errorf("host-gw has no tunnel, but:\n%s", table)
					}
					return nil
				})
				if save, _ := c.Exec(c.NodeNS(n), "iptables-save"); strings.Contains(save, "WEFT") {
					t.Errorf("node %d has weft rules in iptables in nftables mode:\n%s", n, save)
				}
			}
			if backend != "vxlan" {
				return
			}

			// A deleted rule, then the deleted table, are back within the 1 s period.
			list, _ := c.Exec(c.NodeNS(0), "nft", "-a", "list", "chain", "ip", "weft", "postrouting")
			m := regexp.MustCompile(`masq outside to network" # handle (\d+)`).FindStringSubmatch(list)
			if m == nil {
				t.Fatalf("no masquerade rule handle in:\n%s", list)
			}
			if out, err := c.Exec(c.NodeNS(0), "nft", "delete", "rule", "ip", "weft", "postrouting", "handle", m[1]); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			start := time.Now()
			eventually(t, 3*time.Second, "deleted rule restored", func() error {
				if out, _ := c.Exec(c.NodeNS(0), "nft", "list", "chain", "ip", "weft", "postrouting"); !strings.Contains(out, "masq outside to network") {
					return fmt.Errorf("missing:\n%s", out)
				}
				return nil
			})
			t.Logf("rule restored after %s", time.Since(start).Round(10*time.Millisecond))
			if out, err := c.Exec(c.NodeNS(0), "nft", "delete", "table", "ip", "weft"); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			start = time.Now()
			eventually(t, 3*time.Second, "deleted table restored", func() error {
				out, err := c.Exec(c.NodeNS(0), "nft", "list", "table", "ip", "weft")
				if err != nil || !strings.Contains(out, c.NodeIP(1).String()) || !strings.Contains(out, "masquerade") {
					return fmt.Errorf("table: %v\n%s", err, out)
				}
				return nil
			})
			t.Logf("table restored after %s", time.Since(start).Round(10*time.Millisecond))
			pingAll(t, pods, 10*time.Second)
			eventually(t, 3*time.Second, "repairs counted", func() error {
				// One for the rule; the table: its three chains and the set.
				if v := metric(t, c, 0, "weft_dataplane_repairs_total", "kind", "nftables"); v != 5 {
					return fmt.Errorf("nftables repairs = %v, want 5", v)
				}
				return nil
			})
		})
	}
}
