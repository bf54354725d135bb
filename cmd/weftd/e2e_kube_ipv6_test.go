package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/test/cluster"
)

// TestKubeIPv6 runs two weftd in Kubernetes mode against a real kube-apiserver, with nodes
// whose spec.podCIDRs hold both families (dual stack, vxlan) or IPv6 only (host-gw): each
// takes its pod CIDRs, publishes flanneld's IPv6 annotations, and pods ping over each
// family the network runs and carry TCP over IPv6.
func TestKubeIPv6(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		v4         bool
		backend    string
	}{
		{"dual-stack vxlan", `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`, true, "vxlan"},
		{"ipv6-only host-gw", `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`, false, "host-gw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKubeClusterWith(t, cluster.Options{Nodes: 2, IPv6: true}, tc.conf)
			cidrs := func(i int) []string {
				v6 := fmt.Sprintf("fd00:10:244:%x::/64", i+1)
				if tc.v4 {
					return []string{podCIDRFor(i), v6}
				}
				return []string{v6}
			}
			for i := range 2 {
				k.createNode(t, i, cidrs(i)...)
			}
			ds := map[int]*cluster.Weftd{}
			for i := range 2 {
				ds[i] = k.startWeftd(t, i)
			}
			pods := map[int]*cluster.Pod{}
			for i := range 2 {
				env, err := k.WaitSubnetEnv(i, 30*time.Second)
				if err != nil {
					t.Fatalf("node %d: %v", i, err)
				}
				want := cidrs(i)
				if got := env.IPv6Subnet.Masked().String(); got != want[len(want)-1] {
					t.Fatalf("node %d took IPv6 subnet %s, want its pod CIDR %s", i, got, want[len(want)-1])
				}
				if tc.v4 && env.Subnet.Masked().String() != want[0] {
					t.Fatalf("node %d took %s, want its pod CIDR %s", i, env.Subnet.Masked(), want[0])
				}
				pods[i] = k.AddPod(i)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := k.admin.CoreV1().Nodes().Get(ctx, nodeName(0), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			const prefix = "flannel.alpha.coreos.com/"
			if got := n.Annotations[prefix+"public-ipv6"]; got != k.NodeIPv6(0).String() {
				t.Errorf("annotation public-ipv6 = %q, want %s (annotations %v)", got, k.NodeIPv6(0), n.Annotations)
			}
			if got := n.Annotations[prefix+"backend-type"]; got != tc.backend {
				t.Errorf("annotation backend-type = %q, want %s", got, tc.backend)
			}
			if _, ok := n.Annotations[prefix+"backend-v6-data"]; !ok {
				t.Errorf("no backend-v6-data annotation: %v", n.Annotations)
			}
			t.Logf("node 0 annotations: %v", n.Annotations)
			for i, from := range pods {
				to := pods[1-i]
				eventually(t, 15*time.Second, fmt.Sprintf("pod %d pings pod %d over IPv6", i, 1-i), func() error {
					return from.V6().Ping(to.IPv6, 1, 2*time.Second)
				})
				if tc.v4 {
					eventually(t, 10*time.Second, fmt.Sprintf("pod %d pings pod %d over IPv4", i, 1-i), func() error {
						return from.Ping(to.IP, 1, 2*time.Second)
					})
				}
			}
			if err := cluster.TCPTransfer(pods[0].V6(), pods[1].V6(), 4<<20, 30*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}
