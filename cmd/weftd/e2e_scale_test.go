package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/cluster"
)

const (
	scalePeers   = 2000
	scaleNetwork = "10.128.0.0/9" // 2 000 /24 subnets do not fit in a /16
	scaleWait    = 90 * time.Second
	scalePoll    = 20 * time.Millisecond
	scaleWriters = 16
)

// TestScaleVXLAN2000 runs one real weftd (vxlan) against 2 000 fake peer leases in etcd and
// checks that it programs every route, neighbour and FDB entry: leases written while it
// runs, one more peer joining and one leaving at that size, and a restart that finds all
// 2 000 leases already there (flannel.1 deleted, as after a reboot). It asserts only
// correctness; the timings and weftd's RSS are logged (run with -v to see them):
//
//	go test -race -run TestScaleVXLAN2000 -v ./cmd/weftd
//
// The cluster builds weftd with a plain `go build`; for the RSS of the shipped binary (static,
// stripped: make build) pass it as WEFT_SCALE_WEFTD=bin/weftd. WEFT_SCALE_DIR=dir keeps the
// logs there; WEFT_SCALE_ENV=K=V,K=V adds to weftd's environment (GODEBUG=gctrace=1,
// GOMEMLIMIT=...).
//
// The fake peers' PublicIPs are in 198.18.0.0/15; nothing is ever sent to them (an FDB
// entry's dst needs no route), and their leases share one etcd TTL lease.
func TestScaleVXLAN2000(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test: 2 000 leases (-short)")
	}
	var weftdEnv []string
	if e := os.Getenv("WEFT_SCALE_ENV"); e != "" {
		weftdEnv = strings.Split(e, ",")
	}
	c := cluster.New(t, cluster.Options{Nodes: 1, Dir: os.Getenv("WEFT_SCALE_DIR"), WeftdPath: os.Getenv("WEFT_SCALE_WEFTD"), WeftdEnv: weftdEnv})
	c.PutConfig(`{"Network":"` + scaleNetwork + `","Backend":{"Type":"vxlan"}}`)
	start := time.Now()
	w := c.StartNode(0, "--healthz-port", healthPort)
	env, err := c.WaitSubnetEnv(0, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("subnet file after %v; RSS with no peers %d KiB", time.Since(start).Round(time.Millisecond), rssKiB(t, w.PID()))
	ns := c.NodeNS(0)
	leases := scaleLeases(t, env.Subnet.Masked(), scalePeers+1)
	extra, leases := leases[scalePeers], leases[:scalePeers]

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	grant, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	prefix := c.Prefix() + "/subnets/"

	// 1. 2 000 leases written while weftd runs.
	first := time.Now()
	putScaleLeases(t, ctx, cli, prefix, grant.ID, leases)
	written := time.Since(first)
	programmed := waitProgrammed(t, ns, leases, first)
	t.Logf("%d leases written in %v; all programmed %v after the first write (%v after the last); RSS %d KiB",
		scalePeers, written.Round(time.Millisecond), programmed.Round(time.Millisecond),
		(programmed - written).Round(time.Millisecond), rssKiB(t, w.PID()))
	checkProgrammed(t, ns, leases, nil)
	time.Sleep(3 * time.Second)
	t.Logf("RSS 3 s later, settled: %d KiB (%s)", rssKiB(t, w.PID()), rssParts(w.PID()))
	eventually(t, 10*time.Second, "weft_peers", func() error {
		if v := metric(t, c, 0, "weft_peers", "", ""); v != scalePeers {
			return fmt.Errorf("weft_peers = %v, want %d", v, scalePeers)
		}
		return nil
	})
	var inputRules, setSize int
	eventually(t, 10*time.Second, "WEFT-INPUT admits every peer", func() (err error) {
		inputRules, setSize, err = checkInputChain(c, ns, leases)
		return err
	})
	t.Logf("iptables mode: WEFT-INPUT admits the %d peers with %d rule(s) and an ipset of %d, and ends with the DROP",
		scalePeers, inputRules, setSize)

	// 2. One join and one leave at that size.
	rw := watchRouteChanges(t, ns)
	key := prefix + extra.Key()
	value, err := json.Marshal(extra.Attrs)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := cli.Put(ctx, key, string(value), clientv3.WithLease(grant.ID)); err != nil {
		t.Fatal(err)
	}
	join := rw.wait(t, extra.Subnet, true) - t0.Sub(rw.start)
	eventually(t, 5*time.Second, "joined peer programmed", func() error {
		return checkState(ns, append(leases[:len(leases):len(leases)], extra), nil)
	})
	t0 = time.Now()
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	leave := rw.wait(t, extra.Subnet, false) - t0.Sub(rw.start)
	eventually(t, 5*time.Second, "left peer removed", func() error { return checkState(ns, leases, &extra) })
	t.Logf("at %d peers: one join programmed (route) %v after its etcd put, one leave %v after its delete",
		scalePeers, join.Round(10*time.Microsecond), leave.Round(10*time.Microsecond))

	// 3. A restart that finds 2 000 leases and no flannel.1, and a config switched to
	// nftables: the set of 2 000 moves there, nothing is left in iptables.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	c.PutConfig(`{"Network":"` + scaleNetwork + `","EnableNFTables":true,"Backend":{"Type":"vxlan"}}`)
	if _, err := c.Exec(ns, "ip", "link", "del", "flannel.1"); err != nil {
		t.Fatal(err)
	}
	first = time.Now()
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	programmed = waitProgrammed(t, ns, leases, first)
	t.Logf("restart with %d leases and no flannel.1: all programmed %v after the start; RSS %d KiB",
		scalePeers, programmed.Round(time.Millisecond), rssKiB(t, w.PID()))
	checkProgrammed(t, ns, leases, nil)
	eventually(t, 10*time.Second, "the nftables input chain admits every peer", func() (err error) {
		inputRules, setSize, err = checkNFTInput(c, ns, leases)
		return err
	})
	t.Logf("nftables mode: chain input admits the %d peers with %d rule(s) and a set of %d, and ends with the drop",
		scalePeers, inputRules, setSize)
	eventually(t, 10*time.Second, "nothing of iptables mode left", func() error {
		save, _ := c.Exec(ns, "iptables-save")
		sets, _ := c.Exec(ns, "ipset", "list", "-n")
		if strings.Contains(save, "WEFT") || strings.Contains(sets, "weft-peers") {
			return fmt.Errorf("iptables-save:\n%s\nipsets: %s", save, sets)
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	t.Logf("RSS 3 s later, settled: %d KiB (%s)", rssKiB(t, w.PID()), rssParts(w.PID()))
}

// checkNFTInput checks that table ip weft's input chain accepts vxlan from a set holding
// exactly the leases' PublicIPs and ends with the drop, and returns its rule count and
// the set's size.
func checkNFTInput(c *cluster.Cluster, ns string, leases []subnet.Lease) (rules, members int, err error) {
	chain, err := c.Exec(ns, "nft", "list", "chain", "ip", "weft", "input")
	if err != nil {
		return 0, 0, err
	}
	var last string
	for _, l := range strings.Split(chain, "\n") {
		if strings.Contains(l, `comment "weft: `) {
			rules++
			last = l
		}
	}
	if !strings.Contains(chain, "udp dport 8472 ip saddr @peers") || !strings.Contains(last, " drop ") {
		return 0, 0, fmt.Errorf("input chain:\n%s", chain)
	}
	set, err := c.Exec(ns, "nft", "-j", "list", "set", "ip", "weft", "peers")
	if err != nil {
		return 0, 0, err
	}
	if err := sameMembers(set, leases); err != nil {
		return 0, 0, err
	}
	return rules, len(leases), nil
}

// sameMembers checks that a listing of a set (ipset list, nft -j list set) holds exactly
// the leases' PublicIPs: each once, and no other 198.18.0.0/15 address.
func sameMembers(listing string, leases []subnet.Lease) error {
	n := 0
	for _, f := range strings.FieldsFunc(listing, func(r rune) bool { return r == '"' || r == ' ' || r == '\n' || r == ',' || r == '[' || r == ']' }) {
		if a, err := netip.ParseAddr(f); err == nil && netip.MustParsePrefix("198.18.0.0/15").Contains(a) {
			n++
		}
	}
	for _, l := range leases {
		if !strings.Contains(listing, l.Attrs.PublicIP.String()) {
			return fmt.Errorf("no set member for peer %s (%d members)", l.Attrs.PublicIP, n)
		}
	}
	if n != len(leases) {
		return fmt.Errorf("the set has %d members for %d peers", n, len(leases))
	}
	return nil
}

// scaleLeases returns n vxlan leases for /24 subnets of scaleNetwork other than own,
// PublicIPs 198.18.0.1 + i and made-up VtepMACs.
func scaleLeases(t *testing.T, own netip.Prefix, n int) []subnet.Lease {
	t.Helper()
	network := netip.MustParsePrefix(scaleNetwork)
	base := network.Addr().As4()
	var out []subnet.Lease
	for i := 1; len(out) < n; i++ {
		sn := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1] + byte(i>>8), byte(i), 0}), 24)
		if !network.Contains(sn.Addr()) {
			t.Fatalf("%s has no %d free /24 subnets", network, n)
		}
		if sn == own {
			continue
		}
		k := len(out) + 1
		pub := netip.AddrFrom4([4]byte{198, 18 + byte(k>>16), byte(k >> 8), byte(k)})
		mac := net.HardwareAddr{0x0a, 0xfe, byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}
		out = append(out, subnet.Lease{Subnet: sn, Attrs: subnet.LeaseAttrs{PublicIP: pub, BackendType: "vxlan",
			BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, mac))}})
	}
	return out
}

// putScaleLeases writes the leases with scaleWriters concurrent writers, all attached to
// the etcd lease ttl.
func putScaleLeases(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, ttl clientv3.LeaseID, leases []subnet.Lease) {
	t.Helper()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(scaleWriters)
	for _, l := range leases {
		value, err := json.Marshal(l.Attrs)
		if err != nil {
			t.Fatal(err)
		}
		key := prefix + l.Key()
		g.Go(func() error {
			_, err := cli.Put(gctx, key, string(value), clientv3.WithLease(ttl))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// waitProgrammed polls the node until flannel.1 has a route for every lease and returns
// the time since from.
func waitProgrammed(t *testing.T, ns string, leases []subnet.Lease, from time.Time) time.Duration {
	t.Helper()
	want := map[netip.Prefix]bool{}
	for _, l := range leases {
		want[l.Subnet] = true
	}
	deadline := from.Add(scaleWait)
	for {
		now := time.Now()
		got := 0
		if rs, err := flannelRoutes(ns); err == nil {
			for _, r := range rs {
				if p, ok := netip.AddrFromSlice(r.Dst.IP); ok && want[netip.PrefixFrom(p.Unmap(), 24)] {
					got++
				}
			}
		}
		if got == len(leases) {
			return now.Sub(from)
		}
		if now.After(deadline) {
			t.Fatalf("%d of %d routes on flannel.1 after %v", got, len(leases), scaleWait)
		}
		time.Sleep(scalePoll)
	}
}

// nodeNetlink opens a netlink handle in namespace ns.
func nodeNetlink(ns string) (*netlink.Handle, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return netlink.NewHandleAt(h)
}

func flannelRoutes(ns string) ([]netlink.Route, error) {
	nl, err := nodeNetlink(ns)
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	link, err := nl.LinkByName("flannel.1")
	if err != nil {
		return nil, err
	}
	return nl.RouteListFiltered(unix.AF_INET, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
}

// checkProgrammed fails the test unless checkState passes.
func checkProgrammed(t *testing.T, ns string, leases []subnet.Lease, absent *subnet.Lease) {
	t.Helper()
	if err := checkState(ns, leases, absent); err != nil {
		t.Fatal(err)
	}
}

// checkState reports whether flannel.1 in ns holds exactly flanneld's entries for each
// lease ("<subnet> via <subnet>.0 onlink", permanent neighbour "<subnet>.0 lladdr <mac>",
// permanent fdb "<mac> dst <PublicIP>") and none for absent.
func checkState(ns string, leases []subnet.Lease, absent *subnet.Lease) error {
	nl, err := nodeNetlink(ns)
	if err != nil {
		return err
	}
	defer nl.Close()
	link, err := nl.LinkByName("flannel.1")
	if err != nil {
		return err
	}
	idx := link.Attrs().Index
	rs, err := nl.RouteListFiltered(unix.AF_INET, &netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	neighs, err := nl.NeighList(idx, unix.AF_INET)
	if err != nil {
		return err
	}
	fdb, err := nl.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return err
	}
	routes := map[string]bool{}
	for _, r := range rs {
		if r.Dst != nil && r.Gw != nil && r.Flags&unix.RTNH_F_ONLINK != 0 {
			routes[r.Dst.String()+" via "+r.Gw.String()] = true
		}
	}
	nb := map[string]bool{}
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT != 0 {
			nb[n.IP.String()+" "+n.HardwareAddr.String()] = true
		}
	}
	fd := map[string]bool{}
	for _, n := range fdb {
		if n.State&netlink.NUD_PERMANENT != 0 && n.IP != nil {
			fd[n.HardwareAddr.String()+" "+n.IP.String()] = true
		}
	}
	var missing []string
	entries := func(l subnet.Lease) []string {
		var d struct{ VtepMAC string }
		_ = json.Unmarshal(l.Attrs.BackendData, &d)
		vtep := l.Subnet.Addr().String()
		return []string{"route " + l.Subnet.String() + " via " + vtep, "neigh " + vtep + " " + d.VtepMAC,
			"fdb " + d.VtepMAC + " " + l.Attrs.PublicIP.String()}
	}
	has := func(e string) bool {
		kind, rest, _ := strings.Cut(e, " ")
		return map[string]map[string]bool{"route": routes, "neigh": nb, "fdb": fd}[kind][rest]
	}
	for _, l := range leases {
		for _, e := range entries(l) {
			if !has(e) {
				missing = append(missing, e)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d entries missing on flannel.1, e.g. %s (have %d routes, %d neighbours, %d fdb)",
			len(missing), missing[0], len(routes), len(nb), len(fd))
	}
	if absent != nil {
		for _, e := range entries(*absent) {
			if has(e) {
				return fmt.Errorf("%s still present", e)
			}
		}
	}
	if len(routes) != len(leases) || len(nb) != len(leases) || len(fd) != len(leases) {
		return fmt.Errorf("flannel.1 has %d routes, %d neighbours, %d fdb entries; want %d each",
			len(routes), len(nb), len(fd), len(leases))
	}
	return nil
}

// routeWatch records when routes appear and vanish in a namespace.
type routeWatch struct {
	start time.Time
	ch    chan timedRoute
}

type timedRoute struct {
	u  netlink.RouteUpdate
	at time.Duration // since start
}

func watchRouteChanges(t *testing.T, ns string) *routeWatch {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	updates := make(chan netlink.RouteUpdate, 4096)
	rw := &routeWatch{start: time.Now(), ch: make(chan timedRoute, 4096)}
	if err := netlink.RouteSubscribeWithOptions(updates, done, netlink.RouteSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	go func() { // timestamp each update as it arrives
		defer close(rw.ch)
		for u := range updates {
			select {
			case rw.ch <- timedRoute{u: u, at: time.Since(rw.start)}:
			case <-done:
				return
			}
		}
	}()
	return rw
}

// wait returns when (since rw.start) the route to dst was added (or deleted), as the
// kernel announced it.
func (rw *routeWatch) wait(t *testing.T, dst netip.Prefix, add bool) time.Duration {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case tu, ok := <-rw.ch:
			if !ok {
				t.Fatal("route subscription ended")
			}
			u := tu.u
			if u.Dst == nil {
				continue
			}
			p, ok := netip.AddrFromSlice(u.Dst.IP)
			ones, _ := u.Dst.Mask.Size()
			if ok && netip.PrefixFrom(p.Unmap(), ones) == dst && (u.Type == unix.RTM_NEWROUTE) == add {
				return tu.at
			}
		case <-timeout:
			t.Fatalf("route to %s: no change (add %v) within 10 s", dst, add)
		}
	}
}

// checkInputChain checks that the node's WEFT-INPUT accepts vxlan from an ipset holding
// exactly the leases' PublicIPs and ends with the DROP, and returns its rule count and the
// set's size.
func checkInputChain(c *cluster.Cluster, ns string, leases []subnet.Lease) (rules, members int, err error) {
	out, err := c.Exec(ns, "iptables", "-w", "-S", "WEFT-INPUT")
	if err != nil {
		return 0, 0, err
	}
	var last string
	matchesSet := false
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "-A WEFT-INPUT ") {
			continue
		}
		rules++
		last = l
		matchesSet = matchesSet || strings.Contains(l, "--match-set weft-peers src") && strings.HasSuffix(l, "-j ACCEPT")
	}
	if !matchesSet || !strings.HasSuffix(last, "-j DROP") {
		return 0, 0, fmt.Errorf("WEFT-INPUT does not accept the set and end with the DROP:\n%s", out)
	}
	set, err := c.Exec(ns, "ipset", "list", "weft-peers")
	if err != nil {
		return 0, 0, err
	}
	if err := sameMembers(set, leases); err != nil {
		return 0, 0, err
	}
	return rules, len(leases), nil
}

// rssParts returns the anonymous, file-backed and shared parts of a process's RSS.
func rssParts(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range []string{"RssAnon:", "RssFile:", "RssShmem:"} {
			if v, ok := strings.CutPrefix(l, k); ok {
				parts = append(parts, k+" "+strings.TrimSpace(v))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// rssKiB returns VmRSS of process pid.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal(errors.New("no VmRSS"))
	return 0
}
