package main

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/status"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/cluster"
)

// admissionBackend is one backend of TestBadLeasesIgnored.
type admissionBackend struct {
	name   string
	config string
	// value is a lease value naming pub as this backend's nodes write it (flanneld's
	// format); mac is the VTEP MAC, used by vxlan only.
	value func(pub netip.Addr, mac string) string
	// tunnel: the firewall admits the backend's encapsulation from peers (WEFT-INPUT).
	tunnel bool
	// vxlan: peers are also neighbour and FDB entries on flannel.1.
	vxlan bool
	// userspace: the peer table lives in the forwarder; a node answers "net unreachable"
	// for an address of the Network that no peer holds.
	userspace bool
}

var admissionBackends = []admissionBackend{
	{
		name:   "host-gw",
		config: `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`,
		value: func(pub netip.Addr, _ string) string {
			return fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"host-gw"}`, pub)
		},
	},
	{
		name:   "vxlan",
		config: `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`,
		value: func(pub netip.Addr, mac string) string {
			return fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"}}`, pub, mac)
		},
		tunnel: true, vxlan: true,
	},
	{
		name:   "udp",
		config: `{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`,
		value: func(pub netip.Addr, _ string) string {
			return fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null}`, pub) // flanneld's udp names no type
		},
		tunnel: true, userspace: true,
	},
	{
		name:   "gre",
		config: greConfig("userspace"), // this kernel may lack ip_gre; userspace runs anywhere
		value: func(pub netip.Addr, _ string) string {
			return fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"gre"}`, pub)
		},
		tunnel: true, userspace: true,
	},
}

// Addresses of the leases the test writes. They exist on no namespace: no packet is ever
// answered from them.
var (
	strangerIP  = netip.MustParseAddr("192.0.2.77") // the bad leases' PublicIP
	strangerMAC = "02:77:00:00:00:77"
	markerIP    = netip.MustParseAddr("192.0.2.78") // a valid peer written last, as a fence
	markerMAC   = "02:78:00:00:00:78"
	ownIPMAC    = "02:01:00:00:00:01" // the lease naming node 0's public IP
)

// plannedLease is a lease the test writes and what each of the two nodes must make of it.
type plannedLease struct {
	key    string
	subnet netip.Prefix // the IPv4 part of key
	pub    netip.Addr
	mac    string
	// reason is, per node, the reason it is ignored for; "" means the node admits it.
	reason [2]string
}

// planLeases returns the bad leases, for two nodes holding own[0] and own[1] (node 0 at
// node0IP), and the marker: a valid peer lease written after them.
func planLeases(t *testing.T, own [2]netip.Prefix, node0IP netip.Addr) (bad []plannedLease, marker plannedLease) {
	t.Helper()
	used := map[netip.Prefix]bool{own[0]: true, own[1]: true}
	free := func(from int) netip.Prefix { // a /24 that no node holds
		for k := from; k < from+10; k++ {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(k), 0}), 24)
			if !used[p] {
				used[p] = true
				return p
			}
		}
		t.Fatalf("no free /24 from 10.244.%d.0", from)
		return netip.Prefix{}
	}
	out, overlap := subnet.IgnoredOutside, subnet.IgnoredOverlap
	lease := func(v4, v6 netip.Prefix, pub netip.Addr, mac string, r0, r1 string) plannedLease {
		return plannedLease{key: subnet.LeaseKey(v4, v6), subnet: v4, pub: pub, mac: mac, reason: [2]string{r0, r1}}
	}
	half := func(p netip.Prefix) netip.Prefix { return netip.PrefixFrom(p.Addr(), 25) } // holds the pods
	bad = []plannedLease{
		lease(mustPrefix("10.244.0.0/16"), netip.Prefix{}, strangerIP, strangerMAC, out, out), // the whole network
		lease(mustPrefix("0.0.0.0/0"), netip.Prefix{}, strangerIP, strangerMAC, out, out),     // everything: a default route
		lease(half(free(50)), netip.Prefix{}, strangerIP, strangerMAC, out, out),              // another length
		lease(half(own[0]), netip.Prefix{}, strangerIP, strangerMAC, out, out),                // inside node 0's subnet
		lease(half(own[1]), netip.Prefix{}, strangerIP, strangerMAC, out, out),                // inside node 1's subnet
		// A node's own /24 again under a dual-stack key: for its node it is the own
		// subnet, for the other an admitted peer's.
		lease(own[0], mustPrefix("fd00:0:0:1::/64"), strangerIP, strangerMAC, overlap, overlap),
		lease(own[1], mustPrefix("fd00:0:0:2::/64"), strangerIP, strangerMAC, overlap, overlap),
		lease(mustPrefix("192.168.0.0/24"), netip.Prefix{}, strangerIP, strangerMAC, out, out), // outside the network
		// Node 0's public IP under another subnet: a stale lease of node 0 as node 0 sees
		// it. Node 1 cannot tell it from a real one and admits it, as flanneld does.
		lease(free(60), netip.Prefix{}, node0IP, ownIPMAC, subnet.IgnoredOwnIP, ""),
	}
	marker = lease(free(240), netip.Prefix{}, markerIP, markerMAC, "", "")
	return bad, marker
}

// TestBadLeasesIgnored: leases another etcd writer puts in the store that cannot be peers
// (the whole network, 0.0.0.0/0, another length, overlapping a node's own subnet, a
// dual-stack key repeating a node's subnet, outside the network, naming a node's own public
// IP) are ignored in the same way by every backend: no route, neighbour, FDB entry, peer
// table entry or firewall rule is made for them, the default route stays as it was, /status
// lists them as "ignored" with their reason, weft_leases_ignored counts them, each is logged
// once, no node lets go of its own lease, and pods keep talking. The same holds for a node
// that starts with them in the store, and deleting them leaves the kernel as it was.
func TestBadLeasesIgnored(t *testing.T) {
	for _, bc := range admissionBackends {
		t.Run(bc.name, func(t *testing.T) { runAdmission(t, bc) })
	}
}

// admissionRun is one backend's cluster and what TestBadLeasesIgnored knows about it.
type admissionRun struct {
	t        *testing.T
	c        *cluster.Cluster
	bc       admissionBackend
	ds       map[int]*cluster.Weftd
	pods     map[int]*cluster.Pod
	own      [2]netip.Prefix // the nodes' subnets
	ownValue [2]string       // the values of their leases
	bad      []plannedLease
	marker   plannedLease
	before   [2][]string // kernelState before the bad leases
	defaults [2]string   // defaultRoutes before the bad leases
}

func runAdmission(t *testing.T, bc admissionBackend) {
	start := time.Now()
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(bc.config)
	ds, pods, envs := startNodes(t, c, []int{0, 1}, "--healthz-port", healthPort)
	pingAll(t, pods, 10*time.Second)
	r := &admissionRun{t: t, c: c, bc: bc, ds: ds, pods: pods}
	for n := range 2 {
		r.own[n] = envs[n].Subnet.Masked()
		r.ownValue[n] = etcdGet(t, c, leaseKey(envs[n]))
	}
	r.bad, r.marker = planLeases(t, r.own, c.NodeIP(0))

	// The state before: the peer is in place, the firewall admits it, nothing moves.
	for n := range 2 {
		if bc.tunnel {
			waitTunnelSources(t, c, n, []netip.Addr{c.NodeIP(1 - n)})
		}
		r.before[n] = settledState(t, c, n, bc)
		r.defaults[n] = defaultRoutes(t, c, n)
		if !strings.Contains(r.defaults[n], "default via "+cluster.HubIP.String()) {
			t.Fatalf("node %d has no default route via the hub before the test:\n%s", n, r.defaults[n])
		}
	}

	// Another etcd writer puts the bad leases, then a valid one: once a node has
	// programmed that one, it has judged every bad lease before it. They carry a TTL, as
	// leases do (a key without one is a reservation, which pins the subnet to its PublicIP).
	cli, ctx := etcdClient(t, c)
	ttl, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(r.bad), r.marker)
	for _, l := range all {
		if _, err := cli.Put(ctx, c.Prefix()+"/subnets/"+l.key, bc.value(l.pub, l.mac), clientv3.WithLease(ttl.ID)); err != nil {
			t.Fatal(err)
		}
	}
	for n := range 2 {
		r.checkIgnored(n, "written while running")
	}
	checkTraffic(t, pods)

	// Node 1 starts again with the bad leases in the store: judged from the first list
	// (not from watch events) the same way.
	ds[1].Kill()
	if err := ds[1].Start(); err != nil {
		t.Fatal(err)
	}
	r.checkIgnored(1, "listed at start")
	checkTraffic(t, pods)

	// Deleting the bad leases leaves the kernel exactly as it was before they came.
	for _, l := range all {
		if _, err := cli.Delete(ctx, c.Prefix()+"/subnets/"+l.key); err != nil {
			t.Fatal(err)
		}
	}
	for n := range 2 {
		want := wantPeers(c, n, r.own, nil)
		eventually(t, 10*time.Second, fmt.Sprintf("node %d's /status forgets the deleted leases", n), func() error {
			return samePeers(c, n, want)
		})
		if bc.tunnel {
			waitTunnelSources(t, c, n, []netip.Addr{c.NodeIP(1 - n)})
		}
		eventually(t, 10*time.Second, fmt.Sprintf("node %d's kernel state is back to what it was", n), func() error {
			if added, removed := stateDiff(r.before[n], kernelState(t, c, n, bc), nil); len(added)+len(removed) > 0 {
				return fmt.Errorf("\nadded:\n  %s\nremoved:\n  %s", strings.Join(added, "\n  "), strings.Join(removed, "\n  "))
			}
			return nil
		})
		if got := ignoredMetric(t, c, n); len(got) > 0 {
			t.Errorf("node %d: weft_leases_ignored = %v after the bad leases were deleted, want none", n, got)
		}
		r.checkOwnLease(n)
	}
	checkTraffic(t, pods)
	t.Logf("%s: %d bad leases ignored by both nodes, written while running and listed at start; kernel untouched; %s",
		bc.name, len(r.bad), time.Since(start).Round(time.Millisecond))
}

// checkIgnored waits until node n has judged the leases written (its /status lists each as
// planned, and its firewall admits the marker), then checks that nothing of the bad leases
// reached the kernel, that they are counted and logged once, and that the node kept its own
// lease.
func (r *admissionRun) checkIgnored(n int, when string) {
	t, c := r.t, r.c
	t.Helper()
	want := wantPeers(c, n, r.own, append(slices.Clone(r.bad), r.marker))
	// On failure the checks below still run: they say what the node did make of the leases.
	if err := waitFor(10*time.Second, func() error { return samePeers(c, n, want) }); err != nil {
		t.Errorf("node %d's /status does not list the bad leases (%s) as planned within 10s: %v", n, when, err)
	} else if r.bc.tunnel {
		waitTunnelSources(t, c, n, []netip.Addr{c.NodeIP(1 - n), markerIP})
	}

	allowed := map[string]bool{r.marker.subnet.Addr().String(): true, markerIP.String(): true, markerMAC: true}
	if n == 1 {
		// Node 1 admits the lease naming node 0's public IP (see planLeases).
		allowed[r.bad[len(r.bad)-1].subnet.Addr().String()], allowed[ownIPMAC] = true, true
	}
	if added, removed := stateDiff(r.before[n], kernelState(t, c, n, r.bc), allowed); len(added)+len(removed) > 0 {
		t.Errorf("node %d: the bad leases (%s) changed the kernel state:\nadded:\n  %s\nremoved:\n  %s",
			n, when, strings.Join(added, "\n  "), strings.Join(removed, "\n  "))
	}
	if got := defaultRoutes(t, c, n); got != r.defaults[n] {
		t.Errorf("node %d: the default route changed (%s):\nbefore:\n%s\nafter:\n%s", n, when, r.defaults[n], got)
	}
	checkNoStrangerRules(t, c, n)
	if r.bc.userspace {
		checkUnreachable(t, c, n, r.bad[2].subnet.Addr().Next()) // inside the /16 and the /0 too
	}

	wantCount := map[string]float64{}
	for _, l := range r.bad {
		if reason := l.reason[n]; reason != "" {
			wantCount[reason]++
		}
	}
	if got := ignoredMetric(t, c, n); !maps.Equal(got, wantCount) {
		t.Errorf("node %d (%s): weft_leases_ignored = %v, want %v", n, when, got, wantCount)
	}
	log := r.ds[n].RunLog()
	for _, l := range r.bad {
		if l.reason[n] == "" {
			continue
		}
		if k := countLinesWith(log, "Ignoring a lease that cannot be a peer", fmt.Sprintf("key=%q", l.key)); k != 1 {
			t.Errorf("node %d (%s) logged the lease %s %d times, want once", n, when, l.key, k)
		}
	}
	r.checkOwnLease(n)
}

// checkOwnLease checks that node n never let go of its lease: no loss logged in this run,
// the lease's value as it was.
func (r *admissionRun) checkOwnLease(n int) {
	t := r.t
	t.Helper()
	log := r.ds[n].RunLog()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "MY LEASE IS GONE") || strings.Contains(line, "SUBNET CHANGED") {
			t.Errorf("node %d let go of its lease (%d such lines in this run); the first:\n%s", n,
				countLinesWith(log, "MY LEASE IS GONE")+countLinesWith(log, "SUBNET CHANGED"), line)
			break
		}
	}
	key := "subnets/" + subnet.LeaseKey(r.own[n], netip.Prefix{})
	if v := etcdGet(t, r.c, key); v != r.ownValue[n] {
		t.Errorf("node %d's own lease %s changed: %s -> %s", n, key, r.ownValue[n], v)
	}
}

// waitFor retries f every 100 ms until it succeeds or timeout passes, and returns its last
// error then.
func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countLinesWith counts the lines of log that contain every one of parts.
func countLinesWith(log string, parts ...string) int {
	k := 0
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			k++
		}
	}
	return k
}

// etcdClient returns a client for the cluster's etcd and a context bounding its use; both
// end with the test.
func etcdClient(t *testing.T, c *cluster.Cluster) (*clientv3.Client, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli, ctx
}

// wantPeers renders what node n's /status must list (see renderPeer): the other node and
// the given leases, admitted or ignored as planned.
func wantPeers(c *cluster.Cluster, n int, own [2]netip.Prefix, leases []plannedLease) []string {
	want := []string{renderPeer(own[1-n], c.NodeIP(1-n), status.PeerProgrammed, "")}
	for _, l := range leases {
		if r := l.reason[n]; r != "" {
			want = append(want, renderPeer(l.subnet, l.pub, status.PeerIgnored, r))
		} else {
			want = append(want, renderPeer(l.subnet, l.pub, status.PeerProgrammed, ""))
		}
	}
	slices.Sort(want)
	return want
}

// renderPeer is one /status peer as the test compares it: "10.244.5.0/24 via 192.0.2.2:
// programmed", or "... ignored (overlap)" with the reason's name.
func renderPeer(sn netip.Prefix, pub netip.Addr, state status.PeerState, reason string) string {
	s := fmt.Sprintf("%s via %s: %s", sn, pub, state)
	if reason != "" {
		s += " (" + reason + ")"
	}
	return s
}

// samePeers compares node n's /status peers with want (sorted renderPeer lines).
func samePeers(c *cluster.Cluster, n int, want []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := status.Fetch(ctx, nodeHTTP(c, n), "127.0.0.1:"+healthPort)
	if err != nil {
		return err
	}
	var got []string
	for _, p := range st.Peers {
		reason := ""
		if p.State == status.PeerIgnored {
			var detail string
			reason, detail, _ = strings.Cut(p.Reason, ": ")
			if detail == "" {
				return fmt.Errorf("ignored peer %s via %s has no detail in its reason %q", p.Subnet, p.PublicIP, p.Reason)
			}
		}
		got = append(got, renderPeer(p.Subnet, p.PublicIP, p.State, reason))
	}
	slices.Sort(got)
	if missing, extra := setDiff(want, got), setDiff(got, want); len(missing)+len(extra) > 0 {
		return fmt.Errorf("missing:\n  %s\nunexpected:\n  %s\n(the node's lease: %q, backend active: %v)",
			strings.Join(missing, "\n  "), strings.Join(extra, "\n  "), st.Lease.Subnet, st.Backend.Active)
	}
	return nil
}

// setDiff returns the lines of a that b lacks.
func setDiff(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	return out
}

// kernelState is node n's forwarding state, one fact a line, each prefixed with the
// command that showed it: routes of every table, policy rules, permanent neighbours, the
// FDB of flannel.1 (vxlan) and every iptables rule (without counters).
func kernelState(t *testing.T, c *cluster.Cluster, n int, bc admissionBackend) []string {
	t.Helper()
	cmds := [][]string{
		{"ip", "-4", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-4", "rule", "show"},
		{"ip", "-6", "rule", "show"},
		{"ip", "neigh", "show", "nud", "permanent"},
		{"iptables-save"},
	}
	if bc.vxlan {
		cmds = append(cmds, []string{"bridge", "fdb", "show", "dev", "flannel.1"})
	}
	var lines []string
	for _, argv := range cmds {
		out, err := c.Exec(c.NodeNS(n), argv...)
		if err != nil {
			t.Fatal(err)
		}
		label := strings.Join(argv[:min(len(argv), 3)], " ")
		for _, line := range strings.Split(out, "\n") {
			line = strings.TrimSpace(line)
			// iptables-save's comments carry the time; the kernel adds and drops IPv6
			// link-local routes of its own as addresses finish duplicate detection.
			if line == "" || strings.HasPrefix(line, "#") || strings.Contains(line, "fe80:") {
				continue
			}
			lines = append(lines, label+": "+iptablesCounters.ReplaceAllString(line, ""))
		}
	}
	return lines
}

// iptablesCounters matches the packet and byte counters of an iptables-save chain line.
var iptablesCounters = regexp.MustCompile(` \[\d+:\d+\]$`)

// settledState waits until node n's kernel state stops changing (the start-up's rules and
// routes are all in) and returns it.
func settledState(t *testing.T, c *cluster.Cluster, n int, bc admissionBackend) []string {
	t.Helper()
	var state []string
	eventually(t, 10*time.Second, fmt.Sprintf("node %d's kernel state settles", n), func() error {
		first := kernelState(t, c, n, bc)
		time.Sleep(300 * time.Millisecond)
		state = kernelState(t, c, n, bc)
		if added, removed := stateDiff(first, state, nil); len(added)+len(removed) > 0 {
			return fmt.Errorf("still changing: added %q, removed %q", added, removed)
		}
		return nil
	})
	return state
}

// stateDiff returns the lines after adds to before and those it removes, leaving out lines
// that name an allowed address or MAC (as a word, a prefix length aside).
func stateDiff(before, after []string, allowed map[string]bool) (added, removed []string) {
	names := func(line string) bool {
		for _, w := range strings.Fields(line) {
			w, _, _ = strings.Cut(w, "/")
			if allowed[strings.ToLower(w)] {
				return true
			}
		}
		return false
	}
	for _, l := range setDiff(after, before) {
		if !names(l) {
			added = append(added, l)
		}
	}
	for _, l := range setDiff(before, after) {
		if !names(l) {
			removed = append(removed, l)
		}
	}
	return added, removed
}

// defaultRoutes is node n's IPv4 and IPv6 default routes, as ip shows them.
func defaultRoutes(t *testing.T, c *cluster.Cluster, n int) string {
	t.Helper()
	return ipOut(t, c, n, "-4", "route", "show", "default") + "\n" + ipOut(t, c, n, "-6", "route", "show", "default")
}

// tunnelSources returns the sources WEFT-INPUT accepts tunnel traffic from on node n: the
// -s of its ACCEPT rules and the members of the ipsets they match.
func tunnelSources(c *cluster.Cluster, n int) ([]netip.Prefix, string, error) {
	out, err := c.Exec(c.NodeNS(n), "iptables", "-w", "-S", "WEFT-INPUT")
	if err != nil {
		return nil, out, err
	}
	var srcs []netip.Prefix
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "-A" || !strings.HasSuffix(line, "-j ACCEPT") {
			continue
		}
		switch i := slices.Index(f, "--match-set"); {
		case f[2] == "-s":
			p, err := netip.ParsePrefix(f[3])
			if err != nil {
				return nil, out, fmt.Errorf("WEFT-INPUT rule %q: %w", line, err)
			}
			srcs = append(srcs, p)
		case i > 0 && i+1 < len(f):
			set, err := c.Exec(c.NodeNS(n), "ipset", "list", f[i+1])
			if err != nil {
				return nil, out + set, err
			}
			out += set
			_, members, _ := strings.Cut(set, "Members:")
			for _, m := range strings.Fields(members) {
				a, err := netip.ParseAddr(m)
				if err != nil {
					return nil, out, fmt.Errorf("ipset %s member %q: %w", f[i+1], m, err)
				}
				srcs = append(srcs, netip.PrefixFrom(a, 32))
			}
		}
	}
	return srcs, out, nil
}

// waitTunnelSources waits until WEFT-INPUT on node n accepts tunnel traffic from exactly
// the addresses in want, each as a /32.
func waitTunnelSources(t *testing.T, c *cluster.Cluster, n int, want []netip.Addr) {
	t.Helper()
	var w []string
	for _, a := range want {
		w = append(w, netip.PrefixFrom(a, 32).String())
	}
	slices.Sort(w)
	eventually(t, 10*time.Second, fmt.Sprintf("node %d's WEFT-INPUT accepts tunnel traffic from %v only", n, w), func() error {
		srcs, out, err := tunnelSources(c, n)
		if err != nil {
			return err
		}
		var got []string
		for _, p := range srcs {
			got = append(got, p.String())
		}
		slices.Sort(got)
		if !slices.Equal(got, w) {
			return fmt.Errorf("it accepts %v:\n%s", got, out)
		}
		return nil
	})
}

// checkNoStrangerRules checks that no iptables rule on node n names or covers the bad
// leases' public IP.
func checkNoStrangerRules(t *testing.T, c *cluster.Cluster, n int) {
	t.Helper()
	out, err := c.Exec(c.NodeNS(n), "iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, strangerIP.String()) {
			t.Errorf("node %d has a rule naming %s: %s", n, strangerIP, line)
		}
	}
	if srcs, _, err := tunnelSources(c, n); err == nil {
		for _, p := range srcs {
			if p.Contains(strangerIP) {
				t.Errorf("node %d's WEFT-INPUT accepts tunnel traffic from %s, which holds %s", n, p, strangerIP)
			}
		}
	}
}

// checkUnreachable checks that node n's userspace peer table has no peer for dst: the
// forwarder answers "net unreachable" instead of sending it anywhere.
func checkUnreachable(t *testing.T, c *cluster.Cluster, n int, dst netip.Addr) {
	t.Helper()
	out, _ := c.Exec(c.NodeNS(n), "ping", "-n", "-c", "1", "-W", "1", dst.String())
	if !strings.Contains(out, "Unreachable") {
		t.Errorf("node %d has a peer for %s (ping, want \"Destination Net Unreachable\"):\n%s", n, dst, out)
	}
}

// ignoredMetric returns node n's weft_leases_ignored samples by reason, leaving out zeros.
func ignoredMetric(t *testing.T, c *cluster.Cluster, n int) map[string]float64 {
	t.Helper()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(get(t, c, n, "/metrics")))
	if err != nil {
		t.Fatalf("node %d: /metrics does not parse: %v", n, err)
	}
	got := map[string]float64{}
	if fam, ok := fams["weft_leases_ignored"]; ok {
		for _, m := range fam.Metric {
			for _, l := range m.Label {
				if l.GetName() == "reason" && m.GetGauge().GetValue() != 0 {
					got[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return got
}

// checkTraffic: the pods ping each other and move a megabyte each way, checked.
func checkTraffic(t *testing.T, pods map[int]*cluster.Pod) {
	t.Helper()
	pingAll(t, pods, 5*time.Second)
	for _, d := range [][2]int{{0, 1}, {1, 0}} {
		if err := cluster.TCPTransfer(pods[d[0]], pods[d[1]], 1<<20, 20*time.Second); err != nil {
			t.Error(err)
		}
	}
}
