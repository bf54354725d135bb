package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/kubetest"
)

// apiCluster is a real kube-apiserver with the rights flanneld's ClusterRole grants given to
// a ServiceAccount, as weftd runs in a DaemonSet.
type apiCluster struct {
	t     *testing.T
	admin kubernetes.Interface
	api   API // as the ServiceAccount
}

func startAPIServer(t *testing.T, ctx context.Context) *apiCluster {
	s := kubetest.Start(t, kubetest.Options{})
	admin, err := s.AdminClient()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.ServiceAccountToken(ctx, "kube-system", "weft")
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "weft"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
	}}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "weft"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "weft"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "weft", Namespace: "kube-system"}}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	api, err := NewAPI(s.RESTConfig(tok))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		_, err := api.ListNodes(ctx, metav1.ListOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the role never took effect: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &apiCluster{t: t, admin: admin, api: api}
}

// node creates a node with pod CIDRs and annotations, as kube-controller-manager and a
// flanneld would have left it.
func (c *apiCluster) node(ctx context.Context, name string, cidrs []string, ann map[string]string) {
	c.t.Helper()
	n := dualNode(name, cidrs, ann)
	if _, err := c.admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create node %s: %v", name, err)
	}
}

// registry runs the Registry of node name under the net-conf conf.
func (c *apiCluster) registry(name, conf string) *Registry {
	c.t.Helper()
	path := filepath.Join(c.t.TempDir(), "net-conf.json")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		c.t.Fatal(err)
	}
	r, err := New(Config{API: c.api, NodeName: name, NetConfPath: path, Log: klog.Background()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { r.Close() })
	return r
}

// annotations returns node name's annotations as the API server stores them.
func (c *apiCluster) annotations(ctx context.Context, name string) map[string]string {
	c.t.Helper()
	n, err := c.admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return n.Annotations
}

// acquire claims the node's subnets through the Manager, as weftd does.
func acquire(t *testing.T, ctx context.Context, r *Registry, conf string, attrs subnet.LeaseAttrs) subnet.Lease {
	t.Helper()
	cfg, err := subnet.ParseConfig([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	m := subnet.NewManager(subnet.ManagerConfig{Registry: r, Network: cfg, Log: klog.Background(),
		Peers: subnet.PeerRule{BackendType: cfg.BackendType}})
	l, err := m.Acquire(ctx, attrs, subnet.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestIPv6AgainstAPIServer runs dual-stack and IPv6-only nodes on a real kube-apiserver:
// the annotations weftd writes through nodes/status are byte for byte flanneld's, the
// leases of flanneld's nodes of every family carry the right subnets and attributes (a
// malformed IPv6 side ignored with its reason), a node without the pod CIDR the config
// needs is waited for with the reason, and a node that no longer runs IPv6 stops
// publishing it.
func TestIPv6AgainstAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startAPIServer(t, ctx)
	c.node(ctx, "dual", dual, nil)
	c.node(ctx, "v6", []string{"fd00:0:0:2::/64"}, nil)
	c.node(ctx, "hg6", []string{"fd00:0:0:3::/64"}, nil)
	c.node(ctx, "v4only", []string{"10.244.4.0/24"}, nil)
	c.node(ctx, "late", nil, nil)
	c.node(ctx, "f-dual", []string{"10.244.10.0/24", "fd00:0:0:10::/64"},
		with(flannelDual, "public-ip", "192.0.2.10", "public-ipv6", "2001:db8::10"))
	c.node(ctx, "f-v6", []string{"fd00:0:0:11::/64"}, with(flannelV6VXLAN, "public-ipv6", "2001:db8::11"))
	c.node(ctx, "f-hg6", []string{"fd00:0:0:12::/64"}, with(flannelV6HostGW, "public-ipv6", "2001:db8::12"))
	c.node(ctx, "f-bad6", []string{"10.244.13.0/24", "fd00:0:0:13::/64"}, with(flannelDual, "public-ip", "192.0.2.13", "public-ipv6", "2001:db8::zz"))

	// A dual-stack vxlan node.
	vx := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.1"), PublicIPv6: netip.MustParseAddr("2001:db8::1"),
		BackendType: "vxlan", BackendData: json.RawMessage(macV4), BackendV6Data: json.RawMessage(macV6)}
	regDual := c.registry("dual", netConfDual)
	l := acquire(t, ctx, regDual, netConfDual, vx)
	if l.Subnet != v4cidr || l.IPv6Subnet != v6cidr || !l.Attrs.Equal(vx) {
		t.Fatalf("dual-stack lease %s %+v", l.Key(), l.Attrs)
	}
	if got := c.annotations(ctx, "dual"); !equalMaps(got, flannelDual) {
		t.Fatalf("dual-stack node's annotations\n got %v\nwant %v (flanneld's)", got, flannelDual)
	}

	// An IPv6-only vxlan node: no public-ip, no backend-data.
	vx6 := subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8::1"), BackendType: "vxlan", BackendV6Data: json.RawMessage(macV6)}
	l = acquire(t, ctx, c.registry("v6", netConfV6), netConfV6, vx6)
	if l.Subnet.IsValid() || l.IPv6Subnet != netip.MustParsePrefix("fd00:0:0:2::/64") || !l.Attrs.Equal(vx6) || l.Key() != "0.0.0.0-0&fd00:0:0:2::-64" {
		t.Fatalf("IPv6-only lease %s %+v", l.Key(), l.Attrs)
	}
	if got := c.annotations(ctx, "v6"); !equalMaps(got, flannelV6VXLAN) {
		t.Fatalf("IPv6-only vxlan node's annotations\n got %v\nwant %v (flanneld's)", got, flannelV6VXLAN)
	}

	// An IPv6-only host-gw node: public-ip "0.0.0.0", data "null".
	hgConf := strings.Replace(netConfV6, `"vxlan"`, `"host-gw"`, 1)
	hg := subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8::2"), BackendType: "host-gw"}
	acquire(t, ctx, c.registry("hg6", hgConf), hgConf, hg)
	if got := c.annotations(ctx, "hg6"); !equalMaps(got, flannelV6HostGW) {
		t.Fatalf("IPv6-only host-gw node's annotations\n got %v\nwant %v (flanneld's)", got, flannelV6HostGW)
	}

	// The peers, as the dual-stack node's Registry reads them, once its informer has seen
	// the last node written (hg6's annotations come through the watch a moment later).
	var list subnet.LeaseList
	var leases map[string]subnet.Lease
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if list, err = regDual.ListLeases(ctx); err != nil {
			t.Fatal(err)
		}
		leases = map[string]subnet.Lease{}
		for _, l := range list.Leases {
			leases[l.Key()] = l
		}
		if l, ok := leases["0.0.0.0-0&fd00:0:0:3::-64"]; ok && l.Attrs.Equal(hg) || time.Now().After(deadline) {
			break
		}
	}
	for key, want := range map[string]subnet.LeaseAttrs{
		"10.244.10.0-24&fd00:0:0:10::-64": {PublicIP: netip.MustParseAddr("192.0.2.10"), PublicIPv6: netip.MustParseAddr("2001:db8::10"),
			BackendType: "vxlan", BackendData: json.RawMessage(macV4), BackendV6Data: json.RawMessage(macV6)},
		"0.0.0.0-0&fd00:0:0:11::-64": {PublicIPv6: netip.MustParseAddr("2001:db8::11"), BackendType: "vxlan", BackendV6Data: json.RawMessage(macV6)},
		"0.0.0.0-0&fd00:0:0:12::-64": {PublicIPv6: netip.MustParseAddr("2001:db8::12"), BackendType: "host-gw"},
		"0.0.0.0-0&fd00:0:0:2::-64":  vx6,
		"0.0.0.0-0&fd00:0:0:3::-64":  hg,
		// The node with a garbage public-ipv6 keeps its IPv4 side.
		"10.244.13.0-24": {PublicIP: netip.MustParseAddr("192.0.2.13"), BackendType: "vxlan", BackendData: json.RawMessage(macV4)},
	} {
		if got, ok := leases[key]; !ok || !got.Attrs.Equal(want) {
			t.Errorf("lease %s: %+v (present %v), want %+v", key, got.Attrs, ok, want)
		}
	}
	if len(list.Leases) != 7 { // the six above and the dual-stack node's own
		t.Errorf("%d leases, want 7: %v", len(list.Leases), leases)
	}
	var bad []string
	for _, m := range list.Malformed {
		bad = append(bad, m.Key+": "+m.Err.Error())
	}
	if !slicesContain(bad, "nodes/f-bad6/10.244.13.0-24&fd00:0:0:13::-64: ", `public-ipv6 "2001:db8::zz" is not an IPv6 address`) {
		t.Errorf("malformed %q: want f-bad6's IPv6 side with the reason", bad)
	}

	// A new IPv6-only flanneld node comes and goes through the watch.
	watch := regDual.WatchLeases(ctx, list.Revision)
	c.node(ctx, "f-new", []string{"fd00:0:0:20::/64"}, with(flannelV6VXLAN, "public-ipv6", "2001:db8::20"))
	if ev := nextEvent(t, watch); ev.Type != subnet.Added || ev.Lease.IPv6Subnet != netip.MustParsePrefix("fd00:0:0:20::/64") ||
		ev.Lease.Subnet.IsValid() || ev.Lease.Attrs.PublicIPv6 != netip.MustParseAddr("2001:db8::20") {
		t.Fatalf("IPv6-only node added: %+v", ev)
	}
	if err := c.admin.CoreV1().Nodes().Delete(ctx, "f-new", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, watch); ev.Type != subnet.Removed || ev.Lease.Key() != "0.0.0.0-0&fd00:0:0:20::-64" {
		t.Fatalf("IPv6-only node deleted: %+v", ev)
	}

	// A dual-stack network on a node with only an IPv4 pod CIDR: waited for, with the reason.
	reasons := make(chan error, 4)
	regV4 := c.registry("v4only", netConfDual)
	regV4.waiting = func(err error) { reasons <- err }
	// The informer's first sync first, under the long context: the short one below is for
	// the wait under test only (a sync cut short says "context deadline exceeded").
	if _, err := regV4.ListLeases(ctx); err != nil {
		t.Fatal(err)
	}
	short, scancel := context.WithTimeout(ctx, time.Second)
	_, _, err := regV4.AssignedSubnets(short, parseNetConf(t, netConfDual))
	scancel()
	if !errors.Is(err, subnet.ErrNotAssigned) || !strings.Contains(err.Error(), "has no IPv6 pod CIDR") || len(reasons) == 0 {
		t.Fatalf("dual-stack config, IPv4-only node: %v (reasons told: %d)", err, len(reasons))
	}
	t.Logf("reason: %v", err)

	// A node without pod CIDRs is waited for until kube-controller-manager assigns both.
	regLate := c.registry("late", netConfDual)
	type assigned struct {
		sn, sn6 netip.Prefix
		err     error
	}
	got := make(chan assigned, 1)
	dualCfg := parseNetConf(t, netConfDual)
	go func() { sn, sn6, err := regLate.AssignedSubnets(ctx, dualCfg); got <- assigned{sn, sn6, err} }()
	time.Sleep(300 * time.Millisecond)
	n, err := c.admin.CoreV1().Nodes().Get(ctx, "late", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.5.0/24", []string{"10.244.5.0/24", "fd00:0:0:5::/64"}
	if _, err := c.admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.err != nil || a.sn != netip.MustParsePrefix("10.244.5.0/24") || a.sn6 != netip.MustParsePrefix("fd00:0:0:5::/64") {
			t.Fatalf("assigned %v %v %v", a.sn, a.sn6, a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pod CIDRs did not arrive")
	}

	// The dual-stack node restarts under an IPv4-only config: its IPv6 annotations go
	// (through nodes/status), so that it publishes exactly its IPv4 lease.
	regDual.Close()
	l = acquire(t, ctx, c.registry("dual", netConfV4), netConfV4, vx)
	want := with(flannelDual, "public-ipv6", "<delete>", "backend-v6-data", "<delete>")
	if got := c.annotations(ctx, "dual"); l.Key() != "10.244.1.0-24" || !equalMaps(got, want) {
		t.Fatalf("IPv4-only again: lease %s, annotations %v; want %v", l.Key(), got, want)
	}
}

func nextEvent(t *testing.T, ch <-chan subnet.WatchBatch) subnet.Event {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok || b.Err != nil || len(b.Events) != 1 {
			t.Fatalf("watch batch %+v (open %v): want one event", b, ok)
		}
		return b.Events[0]
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
		return subnet.Event{}
	}
}

// slicesContain reports whether one of list starts with prefix and contains part.
func slicesContain(list []string, prefix, part string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) && strings.Contains(s, part) {
			return true
		}
	}
	return false
}
