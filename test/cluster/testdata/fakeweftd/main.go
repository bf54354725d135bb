// Command fakeweftd is a stand-in for weftd used only by test/cluster's own tests: it accepts
// weftd's flags, reads the network config from etcd, takes the subnet 10.x.<node octet>.0/24
// (host-gw style lease), writes the subnet file and keeps host-gw routes to its peers until
// SIGTERM. It refuses to run in the root network namespace or off the 192.0.2.0/24 underlay.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftnet/weft/pkg/subnetenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakeweftd:", err)
		os.Exit(1)
	}
	fmt.Println("fakeweftd: stopped")
}

func run() error {
	endpoints := flag.String("etcd-endpoints", "http://127.0.0.1:2379", "")
	prefix := flag.String("etcd-prefix", "/coreos.com/network", "")
	ifaceName := flag.String("iface", "", "")
	subnetFile := flag.String("subnet-file", "/run/flannel/subnet.env", "")
	ipMasq := flag.Bool("ip-masq", false, "")
	flag.String("healthz-ip", "0.0.0.0", "")
	flag.Int("healthz-port", 0, "")
	flag.Duration("subnet-lease-ttl", 24*time.Hour, "")
	flag.Parse()

	if self, err := os.Readlink("/proc/self/ns/net"); err != nil {
		return err
	} else if init, err := os.Readlink("/proc/1/ns/net"); err == nil && init == self {
		return fmt.Errorf("refusing to run in the root network namespace")
	}
	link, err := netlink.LinkByName(*ifaceName)
	if err != nil {
		return fmt.Errorf("iface %q: %w", *ifaceName, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("iface %q has no IPv4 address (%v)", *ifaceName, err)
	}
	public, _ := netip.AddrFromSlice(addrs[0].IP.To4())
	if !netip.MustParsePrefix("192.0.2.0/24").Contains(public) {
		return fmt.Errorf("iface address %s is not on the test underlay", public)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		return err
	}
	defer cli.Close()

	var network netip.Prefix
	for deadline := time.Now().Add(30 * time.Second); ; {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cli.Get(cctx, *prefix+"/config")
		cancel()
		if err == nil && len(resp.Kvs) == 1 {
			var cfg struct{ Network string }
			if err := json.Unmarshal(resp.Kvs[0].Value, &cfg); err != nil {
				return fmt.Errorf("config: %w", err)
			}
			if network, err = netip.ParsePrefix(cfg.Network); err != nil {
				return fmt.Errorf("config: %w", err)
			}
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no config at %s/config (%v)", *prefix, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	nb := network.Addr().As4()
	own := netip.PrefixFrom(netip.AddrFrom4([4]byte{nb[0], nb[1], public.As4()[3], 0}), 24)
	key := fmt.Sprintf("%s/subnets/%s-24", *prefix, own.Addr())
	val := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"host-gw"}`, public)
	if _, err := cli.Put(ctx, key, val); err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	env := subnetenv.Env{
		Network: network, MTU: link.Attrs().MTU, IPMasq: *ipMasq,
		Subnet: netip.PrefixFrom(own.Addr().Next(), 24),
	}
	if err := subnetenv.Write(*subnetFile, env); err != nil {
		return err
	}
	fmt.Printf("fakeweftd: ready, subnet %s, public ip %s\n", own, public)

	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := syncRoutes(ctx, cli, *prefix, own, link); err != nil {
			fmt.Println("fakeweftd: routes:", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func syncRoutes(ctx context.Context, cli *clientv3.Client, prefix string, own netip.Prefix, link netlink.Link) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cli.Get(cctx, prefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), prefix+"/subnets/")
		sn, err := netip.ParsePrefix(strings.Replace(name, "-", "/", 1))
		if err != nil || sn == own {
			continue
		}
		var lease struct{ PublicIP string }
		if json.Unmarshal(kv.Value, &lease) != nil {
			continue
		}
		gw := net.ParseIP(lease.PublicIP)
		_, dst, _ := net.ParseCIDR(sn.String())
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw}); err != nil {
			return fmt.Errorf("route %s via %s: %w", sn, gw, err)
		}
	}
	return nil
}
