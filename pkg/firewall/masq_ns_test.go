package firewall_test

import (
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/firewall/iptables"
	"github.com/weftnet/weft/pkg/firewall/nftables"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// TestNSIPv6PodTrafficMasqueraded sends real IPv6 packets from a pod namespace through a
// node namespace, where weft's firewall runs, to an outside namespace that has no route
// back to the pod network: a ping gets its answer only if the node masqueraded it to its
// own address. Without the firewall the same ping fails; with it, it succeeds and the
// masquerade rule counted the packet. In iptables mode and in nftables mode. Every
// address, route and rule is inside the test's three namespaces.
//
//	pod  fd00:10:244:3::2/64 --veth-- fd00:10:244:3::1/64  node  2001:db8:1::1/64 --veth-- 2001:db8:1::2/64  outside
func TestNSIPv6PodTrafficMasqueraded(t *testing.T) {
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	for _, bin := range []string{"ping", "sysctl", "ip6tables", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed: %v", bin, err)
		}
	}
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) {
			pod, node, outside := nstest.Temp(t, "pod6"), nstest.Temp(t, "node6"), nstest.Temp(t, "out6")
			run := func(ns string, args ...string) string {
				t.Helper()
				out, err := nstest.Run(ns, args...)
				if err != nil {
					t.Fatalf("%s: %v", strings.Join(args, " "), err)
				}
				return out
			}
			// The veths are made inside the node namespace, their peers moved straight to
			// the other two: nothing is ever in the root namespace.
			run(node, "ip", "link", "add", "n0", "type", "veth", "peer", "name", "p0", "netns", pod)
			run(node, "ip", "link", "add", "n1", "type", "veth", "peer", "name", "o0", "netns", outside)
			run(node, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
			run(node, "ip", "addr", "add", "fd00:10:244:3::1/64", "dev", "n0", "nodad")
			run(node, "ip", "addr", "add", "2001:db8:1::1/64", "dev", "n1", "nodad")
			run(node, "ip", "link", "set", "n0", "up")
			run(node, "ip", "link", "set", "n1", "up")
			run(pod, "ip", "addr", "add", "fd00:10:244:3::2/64", "dev", "p0", "nodad")
			run(pod, "ip", "link", "set", "p0", "up")
			run(pod, "ip", "-6", "route", "add", "default", "via", "fd00:10:244:3::1")
			run(outside, "ip", "addr", "add", "2001:db8:1::2/64", "dev", "o0", "nodad")
			run(outside, "ip", "link", "set", "o0", "up")
			if routes := run(outside, "ip", "-6", "route", "show"); strings.Contains(routes, "fd00") || strings.Contains(routes, "default") {
				t.Fatalf("the outside namespace must have no route to the pods:\n%s", routes)
			}
			ping := func() bool {
				_, err := nstest.Run(pod, "ping", "-6", "-n", "-c", "1", "-W", "1", "2001:db8:1::2")
				return err == nil
			}
			// The path works up to the node (so a failure below is the missing route back).
			if _, err := nstest.Run(pod, "ping", "-6", "-n", "-c", "1", "-W", "2", "fd00:10:244:3::1"); err != nil {
				t.Fatalf("pod cannot reach its node: %v", err)
			}
			if ping() {
				t.Fatal("the outside answered an unmasqueraded pod address: the test proves nothing")
			}

			opts := firewall.Options{IPMasq: true, ForwardRules: true, Resync: time.Hour}
			var fw firewall.Firewall
			if mode == "iptables" {
				var tool *iptables.Tool
				if err := nsutil.Do(node, func() (err error) { tool, err = iptables.Find(testr.New(t)); return err }); err != nil {
					t.Fatal(err)
				}
				fw = iptables.New(tool, opts, testr.New(t))
			} else {
				fw = nftables.New(opts, testr.New(t))
			}
			fw.SetNetwork(firewall.Overlay{
				Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24"),
				IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"), IPv6Subnet: netip.MustParsePrefix("fd00:10:244:3::/64"),
			})
			fw.SetTunnelPort("", 0)
			defer runIn(t, node, fw)()
			ok := false
			for start := time.Now(); time.Since(start) < 10*time.Second; {
				if ok = ping(); ok {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !ok {
				t.Fatalf("the pod's ping was not masqueraded\n%s", masqState(t, mode, node))
			}
			if n := masqCount(t, mode, node); n < 1 {
				t.Fatalf("the masquerade rule counted %d packets\n%s", n, masqState(t, mode, node))
			}
		})
	}
}

// masqState is the node's IPv6 nat rules, for a failure message.
func masqState(t *testing.T, mode, node string) string {
	var out string
	if mode == "iptables" {
		out, _ = nstest.Run(node, "ip6tables-save", "-c")
	} else {
		out, _ = nstest.Run(node, "nft", "list", "table", "ip6", nftables.TableName)
	}
	return out
}

var (
	iptCounter = regexp.MustCompile(`^\[(\d+):\d+\] -A WEFT-POSTRTG .*weft: masq network to outside`)
	nftCounter = regexp.MustCompile(`counter packets (\d+) bytes \d+ masquerade.*weft: masq network to outside`)
)

// masqCount is how many packets the node's IPv6 "masq network to outside" rule counted.
func masqCount(t *testing.T, mode, node string) int {
	t.Helper()
	re := nftCounter
	if mode == "iptables" {
		re = iptCounter
	}
	for _, l := range strings.Split(masqState(t, mode, node), "\n") {
		if m := re.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return -1
}
