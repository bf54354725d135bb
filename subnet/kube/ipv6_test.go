package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/subnet"
)

// Fixtures: the annotations flanneld writes on a node of each kind (pkg/subnet/kube's
// AcquireLease, for the vxlan and host-gw backends).
var (
	macV4 = `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}`
	macV6 = `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:61"}`
	// A dual-stack vxlan node: both families' address and data.
	flannelDual = map[string]string{pfx + "kube-subnet-manager": "true", pfx + "backend-type": "vxlan",
		pfx + "backend-data": macV4, pfx + "public-ip": "192.0.2.1",
		pfx + "backend-v6-data": macV6, pfx + "public-ipv6": "2001:db8::1"}
	// An IPv6-only vxlan node: flanneld writes no public-ip and no backend-data (its
	// BackendData is null, and for vxlan it then skips the IPv4 pair).
	flannelV6VXLAN = map[string]string{pfx + "kube-subnet-manager": "true", pfx + "backend-type": "vxlan",
		pfx + "backend-v6-data": macV6, pfx + "public-ipv6": "2001:db8::1"}
	// An IPv6-only host-gw node: public-ip "0.0.0.0" (its zero ip.IP4) and "null" data.
	flannelV6HostGW = map[string]string{pfx + "kube-subnet-manager": "true", pfx + "backend-type": "host-gw",
		pfx + "backend-data": "null", pfx + "public-ip": "0.0.0.0",
		pfx + "backend-v6-data": "null", pfx + "public-ipv6": "2001:db8::2"}
)

func dualNode(name string, cidrs []string, ann map[string]string) *corev1.Node {
	n := node(name, "", ann)
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	return n
}

func with(base map[string]string, kv ...string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<delete>" {
			delete(m, pfx+kv[i])
		} else {
			m[pfx+kv[i]] = kv[i+1]
		}
	}
	return m
}

var (
	v4cidr = netip.MustParsePrefix("10.244.1.0/24")
	v6cidr = netip.MustParsePrefix("fd00:0:0:1::/64")
	dual   = []string{"10.244.1.0/24", "fd00:0:0:1::/64"}
	v6only = []string{"fd00:0:0:1::/64"}
)

// TestNodeLeaseIPv6 reads flanneld's nodes of every family as leases: the families a node
// publishes are in its lease, those it does not run are left out, and a malformed family is
// reported while the node's good family stays usable.
func TestNodeLeaseIPv6(t *testing.T) {
	ann, err := newAnnotations(DefaultAnnotationPrefix)
	if err != nil {
		t.Fatal(err)
	}
	pub4, pub6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		name        string
		n           *corev1.Node
		sn, sn6     netip.Prefix // the lease's subnets (both zero: no lease)
		pub, pub6   netip.Addr
		data, data6 string
		bad         string // part of the fault, "" for none
	}{
		{name: "dual-stack vxlan", n: dualNode("x", dual, flannelDual), sn: v4cidr, sn6: v6cidr, pub: pub4, pub6: pub6, data: macV4, data6: macV6},
		{name: "dual-stack, IPv6 first in podCIDRs", n: dualNode("x", []string{"fd00:0:0:1::/64", "10.244.1.0/24"}, flannelDual),
			sn: v4cidr, sn6: v6cidr, pub: pub4, pub6: pub6, data: macV4, data6: macV6},
		{name: "IPv6-only vxlan", n: dualNode("x", v6only, flannelV6VXLAN), sn6: v6cidr, pub6: pub6, data6: macV6},
		{name: "IPv6-only host-gw", n: dualNode("x", v6only, flannelV6HostGW), sn6: v6cidr, pub6: netip.MustParseAddr("2001:db8::2")},
		{name: "IPv6-only spec.podCIDR alone", n: node("x", "fd00:0:0:1::/64", flannelV6VXLAN), sn6: v6cidr, pub6: pub6, data6: macV6},
		{name: "IPv4-only flanneld on dual-stack pod CIDRs", n: dualNode("x", dual, flannelNode("x", "", "192.0.2.1", "aa:bb:cc:dd:ee:01").Annotations),
			sn: v4cidr, pub: pub4, data: macV4},
		{name: "IPv6-only host-gw on dual-stack pod CIDRs", n: dualNode("x", dual, flannelV6HostGW), sn6: v6cidr, pub6: netip.MustParseAddr("2001:db8::2")},
		{name: "v6 annotations without a v6 pod CIDR", n: dualNode("x", []string{"10.244.1.0/24"}, flannelDual), sn: v4cidr, pub: pub4, data: macV4},
		{name: "garbage public-ipv6, good IPv4", n: dualNode("x", dual, with(flannelDual, "public-ipv6", "fd00::zz")),
			sn: v4cidr, pub: pub4, data: macV4, bad: `public-ipv6 "fd00::zz" is not an IPv6 address`},
		{name: "IPv4 in public-ipv6", n: dualNode("x", dual, with(flannelDual, "public-ipv6", "192.0.2.9")),
			sn: v4cidr, pub: pub4, data: macV4, bad: "is not an IPv6 address"},
		{name: "bad backend-v6-data, good IPv4", n: dualNode("x", dual, with(flannelDual, "backend-v6-data", "{nope")),
			sn: v4cidr, pub: pub4, data: macV4, bad: "backend-v6-data is not JSON"},
		{name: "garbage public-ip, good IPv6", n: dualNode("x", dual, with(flannelDual, "public-ip", "300.1.1.1")),
			sn6: v6cidr, pub6: pub6, data6: macV6, bad: `public-ip "300.1.1.1" is not an IPv4 address`},
		{name: "IPv6-only, garbage public-ipv6", n: dualNode("x", v6only, with(flannelV6VXLAN, "public-ipv6", "nope")), bad: "public-ipv6"},
		{name: "IPv6-only, no public-ipv6", n: dualNode("x", v6only, with(flannelV6VXLAN, "public-ipv6", "<delete>")), bad: "publishes no public address"},
		{name: "IPv6-only, not managed", n: dualNode("x", v6only, with(flannelV6VXLAN, "kube-subnet-manager", "false")), bad: "not \"true\""},
		{name: "two IPv6 pod CIDRs", n: dualNode("x", []string{"fd00:0:0:1::/64", "fd00:0:0:2::/64"}, flannelDual), bad: "two CIDRs of one family"},
		{name: "three pod CIDRs", n: dualNode("x", []string{"10.244.1.0/24", "fd00:0:0:1::/64", "fd00:0:0:2::/64"}, flannelDual), bad: "at most one"},
		{name: "IPv6 host bits", n: dualNode("x", []string{"10.244.1.0/24", "fd00:0:0:1::1/64"}, flannelDual), bad: "not a network address"},
		{name: "IPv4-mapped pod CIDR", n: dualNode("x", []string{"::ffff:10.244.1.0/120"}, flannelDual), bad: "not a CIDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _, err := ann.nodeLease(tc.n)
			if (err != nil) != (tc.bad != "") || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
				t.Fatalf("fault %v, want one saying %q", err, tc.bad)
			}
			if err != nil {
				t.Logf("reason: %v", err)
			}
			a := l.Attrs
			if l.Subnet != tc.sn || l.IPv6Subnet != tc.sn6 || a.PublicIP != tc.pub || a.PublicIPv6 != tc.pub6 ||
				string(a.BackendData) != tc.data || string(a.BackendV6Data) != tc.data6 {
				t.Fatalf("lease %s %+v, want %s/%s %v %v %s %s", l.Key(), a, tc.sn, tc.sn6, tc.pub, tc.pub6, tc.data, tc.data6)
			}
		})
	}
}

// TestPublishedBytes: the annotations written for each kind of lease are flanneld's, and
// those of a family the lease no longer has are removed.
func TestPublishedBytes(t *testing.T) {
	ann, _ := newAnnotations(DefaultAnnotationPrefix)
	pub4, pub6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	vx := subnet.LeaseAttrs{PublicIP: pub4, PublicIPv6: pub6, BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:01"}`), BackendV6Data: json.RawMessage(macV6)}
	hg := subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8::2"), BackendType: "host-gw"}
	for _, tc := range []struct {
		name    string
		n       *corev1.Node
		sn, sn6 netip.Prefix
		attrs   subnet.LeaseAttrs
		want    map[string]string // the node's annotations once patched
	}{
		{"dual-stack vxlan", dualNode("x", dual, nil), v4cidr, v6cidr, vx, flannelDual},
		{"IPv6-only vxlan", dualNode("x", v6only, nil), netip.Prefix{}, v6cidr, vx, flannelV6VXLAN},
		{"IPv6-only host-gw", dualNode("x", v6only, nil), netip.Prefix{}, v6cidr, hg, flannelV6HostGW},
		{"IPv4-only on a node that ran dual-stack", dualNode("x", dual, flannelDual), v4cidr, netip.Prefix{}, vx,
			with(flannelDual, "public-ipv6", "<delete>", "backend-v6-data", "<delete>")},
		{"IPv6-only vxlan on a node that ran IPv4", dualNode("x", dual, flannelDual), netip.Prefix{}, v6cidr, vx, flannelV6VXLAN},
		{"overwrites", dualNode("x", dual, with(nil, "public-ip-overwrite", "198.51.100.7", "public-ipv6-overwrite", "2001:db8::77")),
			v4cidr, v6cidr, vx, with(flannelDual, "public-ip", "198.51.100.7", "public-ipv6", "2001:db8::77",
				"public-ip-overwrite", "198.51.100.7", "public-ipv6-overwrite", "2001:db8::77")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patch, attrs, err := ann.published(tc.n, tc.sn, tc.sn6, tc.attrs)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, v := range tc.n.Annotations {
				got[k] = v
			}
			for k, v := range patch {
				if s, ok := v.(string); ok {
					got[k] = s
				} else {
					delete(got, k)
				}
			}
			if !equalMaps(got, tc.want) {
				t.Fatalf("annotations\n got %v\nwant %v", got, tc.want)
			}
			// What is published reads back as the same lease.
			n := tc.n.DeepCopy()
			n.Annotations = got
			l, _, err := ann.nodeLease(n)
			if err != nil || l.Key() != subnet.LeaseKey(tc.sn, tc.sn6) || !l.Attrs.Equal(attrs) {
				t.Fatalf("read back %s %+v (%v), want %s %+v", l.Key(), l.Attrs, err, subnet.LeaseKey(tc.sn, tc.sn6), attrs)
			}
			n2 := tc.n.DeepCopy()
			n2.Annotations = got
			if differ(n2, patch) {
				t.Fatal("the patched node still differs: it would be patched at every start")
			}
		})
	}
	for name, bad := range map[string]struct {
		n     *corev1.Node
		attrs subnet.LeaseAttrs
	}{
		"no IPv6 public address":  {dualNode("x", dual, nil), subnet.LeaseAttrs{PublicIP: pub4, BackendType: "vxlan"}},
		"IPv4 as PublicIPv6":      {dualNode("x", dual, nil), subnet.LeaseAttrs{PublicIP: pub4, PublicIPv6: pub4}},
		"bad ipv6 overwrite":      {dualNode("x", dual, with(nil, "public-ipv6-overwrite", "192.0.2.1")), vx},
		"backend v6 data garbage": {dualNode("x", dual, nil), subnet.LeaseAttrs{PublicIP: pub4, PublicIPv6: pub6, BackendV6Data: json.RawMessage("{")}},
	} {
		if _, _, err := ann.published(bad.n, v4cidr, v6cidr, bad.attrs); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

const (
	netConfDual = `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}`
	netConfV6   = `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}`
	netConfV4   = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`
)

// TestAssignedSubnetsFamilies: AssignedSubnets returns the node's pod CIDRs of the families
// the net-conf runs, and waits, with the reason, for a family the node lacks.
func TestAssignedSubnetsFamilies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		conf    string
		cidrs   []string
		sn, sn6 netip.Prefix
		why     string // the reason it waits, "" when it does not
	}{
		{netConfDual, dual, v4cidr, v6cidr, ""},
		{netConfV6, dual, netip.Prefix{}, v6cidr, ""},
		{netConfV6, v6only, netip.Prefix{}, v6cidr, ""},
		{netConfV4, dual, v4cidr, netip.Prefix{}, ""},
		{"", dual, v4cidr, v6cidr, ""}, // no net-conf: what the node has
		{netConfDual, []string{"10.244.1.0/24"}, netip.Prefix{}, netip.Prefix{}, "has no IPv6 pod CIDR"},
		{netConfV4, v6only, netip.Prefix{}, netip.Prefix{}, "has no IPv4 pod CIDR"},
	} {
		reasons := make(chan error, 4)
		cs := dualNode("me", tc.cidrs, nil)
		reg, _ := newTestRegistry(t, "me", cs)
		reg.waiting = func(err error) { reasons <- err }
		var cfg *subnet.Config // no config: what the node has
		if tc.conf != "" {
			cfg = parseNetConf(t, tc.conf)
		}
		// The informer's first sync under the long context; the short one is for the wait.
		if _, err := reg.ListLeases(ctx); err != nil {
			t.Fatal(err)
		}
		short, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
		sn, sn6, err := reg.AssignedSubnets(short, cfg)
		scancel()
		if tc.why == "" {
			if err != nil || sn != tc.sn || sn6 != tc.sn6 {
				t.Errorf("%v under %s: %s, %s, %v; want %s, %s", tc.cidrs, tc.conf, sn, sn6, err, tc.sn, tc.sn6)
			}
			continue
		}
		if !errors.Is(err, subnet.ErrNotAssigned) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%v under %s: %v; want ErrNotAssigned saying %q", tc.cidrs, tc.conf, err, tc.why)
		}
		select {
		case r := <-reasons:
			if !strings.Contains(r.Error(), tc.why) {
				t.Errorf("told %v", r)
			}
			t.Logf("reason: %v", r)
		default:
			t.Error("Waiting was not told the reason")
		}
	}
}

// TestDualStackLease: CreateLease publishes both families; the lease comes back with both
// subnets, RenewLease finds it by its key, and UpdateLease republishes it.
func TestDualStackLease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, cs := newTestRegistry(t, "me", dualNode("me", dual, nil), dualNode("peer", []string{"10.244.2.0/24", "fd00:0:0:2::/64"}, flannelDual))
	attrs := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.3"), PublicIPv6: netip.MustParseAddr("2001:db8::3"),
		BackendType: "vxlan", BackendData: json.RawMessage(macV4), BackendV6Data: json.RawMessage(macV6)}
	if _, err := reg.CreateLease(ctx, v4cidr, netip.MustParsePrefix("fd00:0:0:9::/64"), attrs, 0); !errors.Is(err, ErrNotPodCIDR) {
		t.Fatalf("another IPv6 subnet: %v", err)
	}
	l, err := reg.CreateLease(ctx, v4cidr, v6cidr, attrs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != v4cidr || l.IPv6Subnet != v6cidr || !l.Attrs.Equal(attrs) || !l.Reserved() {
		t.Fatalf("lease %s %+v", l.Key(), l.Attrs)
	}
	if r, err := reg.RenewLease(ctx, l); err != nil || r.Key() != l.Key() {
		t.Fatalf("renew: %+v, %v", r, err)
	}
	if _, err := reg.RenewLease(ctx, subnet.Lease{Subnet: v4cidr}); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("renewing the IPv4 half: %v, want ErrNotFound (the key differs)", err)
	}
	attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::33")
	if l, err = reg.UpdateLease(ctx, l, attrs, 0); err != nil || l.Attrs.PublicIPv6 != attrs.PublicIPv6 {
		t.Fatalf("update: %+v, %v", l, err)
	}
	me, _ := cs.CoreV1().Nodes().Get(ctx, "me", metav1.GetOptions{})
	if me.Annotations[pfx+"public-ipv6"] != "2001:db8::33" || me.Annotations[pfx+"backend-v6-data"] != macV6 {
		t.Fatalf("annotations %v", me.Annotations)
	}
	list, err := reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]subnet.Lease{}
	for _, l := range list.Leases {
		keys[l.Key()] = l
	}
	if p, ok := keys["10.244.2.0-24&fd00:0:0:2::-64"]; !ok || p.Attrs.PublicIPv6 != netip.MustParseAddr("2001:db8::1") || string(p.Attrs.BackendV6Data) != macV6 {
		t.Fatalf("leases %v: want the dual-stack peer with its IPv6 attributes", keys)
	}
}

// FuzzNodeLeaseDualStack: whatever a node carries, a lease read from it is a valid lease
// (subnets and addresses of their families), and publishing it again reads back the same.
func FuzzNodeLeaseDualStack(f *testing.F) {
	f.Add("10.244.1.0/24", "fd00:0:0:1::/64", "192.0.2.1", "2001:db8::1", macV4, macV6, "vxlan")
	f.Add("", "fd00:0:0:1::/64", "0.0.0.0", "2001:db8::1", "null", "null", "host-gw")
	f.Add("fd00::/64", "fd00:1::/64", "", "::", "", "{", "")
	ann, _ := newAnnotations(DefaultAnnotationPrefix)
	f.Fuzz(func(t *testing.T, cidr, cidr6, ip, ip6, data, data6, btype string) {
		n := dualNode("x", []string{cidr, cidr6}, map[string]string{ann.managed: "true", ann.backendType: btype,
			ann.publicIP: ip, ann.publicIPv6: ip6, ann.backendData: data, ann.backendV6Data: data6})
		l, _, _ := ann.nodeLease(n)
		if !l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() {
			return
		}
		if err := subnet.CheckLeaseSubnets(l.Subnet, l.IPv6Subnet); err != nil {
			t.Fatalf("lease %s: %v", l.Key(), err)
		}
		if err := subnet.CheckLeaseAttrs(l.Subnet, l.IPv6Subnet, l.Attrs); err != nil {
			t.Fatalf("lease %s %+v: %v", l.Key(), l.Attrs, err)
		}
		patch, attrs, err := ann.published(dualNode("x", n.Spec.PodCIDRs, nil), l.Subnet, l.IPv6Subnet, l.Attrs)
		if err != nil {
			t.Fatalf("cannot publish the lease %s %+v read: %v", l.Key(), l.Attrs, err)
		}
		back := map[string]string{}
		for k, v := range patch {
			if s, ok := v.(string); ok {
				back[k] = s
			}
		}
		l2, _, err := ann.nodeLease(dualNode("x", n.Spec.PodCIDRs, back))
		if err != nil || l2.Key() != l.Key() || !l2.Attrs.Equal(attrs) || !attrs.Equal(l.Attrs) {
			t.Fatalf("read %s %+v, published and read back %s %+v (%v)", l.Key(), l.Attrs, l2.Key(), l2.Attrs, err)
		}
	})
}

// TestWatchIPv6SideTurnsMalformed: a dual-stack peer whose IPv6 annotations turn to garbage
// is, through the watch, replaced by its IPv4 side with the IPv6 fault reported; once they
// are fixed it is dual-stack again.
func TestWatchIPv6SideTurnsMalformed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peer := dualNode("peer", dual, flannelDual)
	reg, cs := newTestRegistry(t, "me", dualNode("me", []string{"10.244.9.0/24"}, nil), peer)
	list, err := reg.ListLeases(ctx)
	if err != nil || len(list.Leases) != 1 || list.Leases[0].Key() != "10.244.1.0-24&fd00:0:0:1::-64" {
		t.Fatalf("list %+v, %v", list, err)
	}
	watch := reg.WatchLeases(ctx, list.Revision)
	next := func() subnet.WatchBatch {
		t.Helper()
		select {
		case b := <-watch:
			return b
		case <-time.After(15 * time.Second):
			t.Fatal("no watch batch within 15s")
			return subnet.WatchBatch{}
		}
	}
	broken := peer.DeepCopy()
	broken.Annotations = with(flannelDual, "public-ipv6", "bogus")
	if _, err := cs.CoreV1().Nodes().Update(ctx, broken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := next()
	if len(b.Events) != 2 || b.Events[0].Type != subnet.Removed || b.Events[0].Lease.Key() != "10.244.1.0-24&fd00:0:0:1::-64" ||
		b.Events[1].Type != subnet.Added || b.Events[1].Lease.Key() != "10.244.1.0-24" ||
		len(b.Malformed) != 1 || b.Malformed[0].Key != "nodes/peer/10.244.1.0-24&fd00:0:0:1::-64" ||
		!strings.Contains(b.Malformed[0].Err.Error(), `public-ipv6 "bogus"`) {
		t.Fatalf("IPv6 side broken: %+v", b)
	}
	if _, err := cs.CoreV1().Nodes().Update(ctx, peer, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b = next()
	if len(b.Events) != 2 || b.Events[0].Type != subnet.Removed || b.Events[0].Lease.Key() != "10.244.1.0-24" ||
		b.Events[1].Type != subnet.Added || b.Events[1].Lease.Key() != "10.244.1.0-24&fd00:0:0:1::-64" || len(b.Malformed) != 0 {
		t.Fatalf("IPv6 side fixed: %+v", b)
	}
	list, _ = reg.ListLeases(ctx)
	if len(list.Malformed) != 1 { // "me" has no annotations
		t.Fatalf("malformed after the fix: %+v", list.Malformed)
	}
}

// TestNodePublicIPs reads the operator's node-public-ip and node-public-ipv6.
func TestNodePublicIPs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, _ := newTestRegistry(t, "me", dualNode("me", dual, with(nil, "node-public-ip", "192.0.2.7", "node-public-ipv6", "2001:db8::7")),
		dualNode("bad", dual, with(nil, "node-public-ipv6", "192.0.2.7")))
	v4, v6, err := reg.NodePublicIPs(ctx)
	if err != nil || v4 != netip.MustParseAddr("192.0.2.7") || v6 != netip.MustParseAddr("2001:db8::7") {
		t.Fatalf("%v %v %v", v4, v6, err)
	}
	bad, _ := newTestRegistry(t, "bad", dualNode("bad", dual, with(nil, "node-public-ipv6", "192.0.2.7")))
	if _, _, err := bad.NodePublicIPs(ctx); err == nil || !strings.Contains(err.Error(), "node-public-ipv6") {
		t.Fatalf("an IPv4 address as node-public-ipv6: %v", err)
	}
	none, _ := newTestRegistry(t, "none", dualNode("other", dual, nil))
	if _, _, err := none.NodePublicIPs(ctx); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("no node: %v", err)
	}
}

// parseNetConf parses a net-conf.json the test hands to AssignedSubnets.
func parseNetConf(t *testing.T, js string) *subnet.Config {
	t.Helper()
	cfg, err := subnet.ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
