package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/subnet"
)

// ErrUnsupported is returned by the Registry methods that have no Kubernetes meaning here:
// deleting leases (delete the Node instead) and writing the config (edit the ConfigMap).
var ErrUnsupported = errors.New("not supported in Kubernetes mode")

// ErrNotPodCIDR: a lease was asked for other subnets than this node's pod CIDRs.
var ErrNotPodCIDR = errors.New("in Kubernetes mode a node can only hold its spec.podCIDRs")

// CreateLease claims this node's pod CIDRs: sn its IPv4 one and sn6 its IPv6 one, either
// zero for a family the network does not run (ErrNotPodCIDR when one is not the node's).
// It publishes attrs in the node's annotations (patching nodes/status, as flanneld does,
// only when they differ; see annotations.published for the bytes), waits until the informer
// shows them, and returns the lease (a reservation: ttl is ignored, nothing expires). With
// the node's public-ip-overwrite (public-ipv6-overwrite) annotation set, that address is
// published, and returned, as PublicIP (PublicIPv6).
func (r *Registry) CreateLease(ctx context.Context, sn, sn6 netip.Prefix, attrs subnet.LeaseAttrs, _ time.Duration) (subnet.Lease, error) {
	if err := subnet.CheckLeaseSubnets(sn, sn6); err != nil {
		return subnet.Lease{}, err
	}
	if err := r.waitSynced(ctx); err != nil {
		return subnet.Lease{}, err
	}
	r.mu.Lock()
	node := r.ownNode
	r.mu.Unlock()
	if node == nil {
		return subnet.Lease{}, fmt.Errorf("node %q does not exist: %w", r.nodeName, subnet.ErrNotFound)
	}
	cidr, cidr6, err := podCIDRs(node)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("node %q: %w", r.nodeName, err)
	}
	if (sn.IsValid() && sn != cidr) || (sn6.IsValid() && sn6 != cidr6) {
		return subnet.Lease{}, fmt.Errorf("node %q has pod CIDRs %v, asked for %s: %w", r.nodeName,
			node.Spec.PodCIDRs, subnet.DescribeSubnets(sn, sn6), ErrNotPodCIDR)
	}
	patch, attrs, err := r.ann.published(node, sn, sn6, attrs)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("node %q: %w", r.nodeName, err)
	}
	if differ(node, patch) {
		for _, ov := range []string{r.ann.publicIPOverwrite, r.ann.publicIPv6Overwrite} {
			if node.Annotations[ov] != "" {
				r.log.Info("Publishing the public address the node's annotation names", "annotation", ov, "address", node.Annotations[ov])
			}
		}
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": patch}})
		if err != nil {
			return subnet.Lease{}, err
		}
		// nodes/status, as flanneld: its ClusterRole grants patch there, not on nodes.
		if _, err := r.api.PatchNodeStatus(ctx, r.nodeName, types.StrategicMergePatchType, body); err != nil {
			return subnet.Lease{}, fmt.Errorf("annotate node %q: %w", r.nodeName, err)
		}
	}
	// Wait until the watch shows the lease, so that its revision orders it among the changes.
	key := subnet.LeaseKey(sn, sn6)
	for {
		r.mu.Lock()
		st, wake := r.nodes[r.nodeName], r.wake
		r.mu.Unlock()
		if st.lease != nil && st.lease.Key() == key && st.lease.Attrs.Equal(attrs) {
			return *st.lease, nil
		}
		if err := r.waitChange(ctx, wake); err != nil {
			return subnet.Lease{}, fmt.Errorf("node %q: the annotations did not come back through the watch: %w", r.nodeName, err)
		}
	}
}

// UpdateLease publishes attrs for this node's pod CIDRs, as CreateLease; old's subnets must
// be them.
func (r *Registry) UpdateLease(ctx context.Context, old subnet.Lease, attrs subnet.LeaseAttrs, ttl time.Duration) (subnet.Lease, error) {
	return r.CreateLease(ctx, old.Subnet, old.IPv6Subnet, attrs, ttl)
}

// RenewLease re-reads this node's lease from the cache: there is no TTL to extend. It
// returns subnet.ErrNotFound when the node no longer publishes l's subnets, l.Key() (deleted,
// other pod CIDRs, or its annotations of a family gone).
func (r *Registry) RenewLease(ctx context.Context, l subnet.Lease) (subnet.Lease, error) {
	if err := r.waitSynced(ctx); err != nil {
		return subnet.Lease{}, err
	}
	r.mu.Lock()
	st := r.nodes[r.nodeName]
	r.mu.Unlock()
	if st.lease == nil || st.lease.Key() != l.Key() {
		return subnet.Lease{}, fmt.Errorf("node %q no longer publishes %s: %w", r.nodeName, subnet.DescribeSubnets(l.Subnet, l.IPv6Subnet), subnet.ErrNotFound)
	}
	return *st.lease, nil
}

// DeleteLease is unsupported: a node's pod CIDR goes with the Node object.
func (r *Registry) DeleteLease(context.Context, netip.Prefix, netip.Prefix) error {
	return fmt.Errorf("delete a lease: %w (delete the Node; its pod CIDR goes with it)", ErrUnsupported)
}

// DeleteLeaseAt is unsupported, as DeleteLease.
func (r *Registry) DeleteLeaseAt(context.Context, netip.Prefix, netip.Prefix, int64) (int64, error) {
	return 0, fmt.Errorf("delete a lease: %w (delete the Node; its pod CIDR goes with it)", ErrUnsupported)
}

// TimeToLive is an error: Kubernetes leases have no TTL.
func (r *Registry) TimeToLive(context.Context, subnet.Lease) (time.Duration, error) {
	return 0, fmt.Errorf("time to live: %w (a node's pod CIDR has no TTL)", ErrUnsupported)
}

// SetNetworkAvailable sets this node's NetworkUnavailable condition to false, as flanneld
// does once its data plane is up (--set-node-network-unavailable).
func (r *Registry) SetNetworkAvailable(ctx context.Context) error {
	now := metav1.Now()
	cond := corev1.NodeCondition{
		Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse,
		Reason: "FlannelIsUp", Message: "Flannel is running on this node",
		LastTransitionTime: now, LastHeartbeatTime: now,
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	if _, err := r.api.PatchNodeStatus(ctx, r.nodeName, types.StrategicMergePatchType, patch); err != nil {
		return fmt.Errorf("set NetworkUnavailable=false on node %q: %w", r.nodeName, err)
	}
	return nil
}

// NodePublicIPs returns the addresses this node's node-public-ip and node-public-ipv6
// annotations name (zero when absent). An operator sets them; flanneld reads them at start,
// before it chooses its interface, and uses them instead of --public-ip and --public-ipv6
// (it never writes them). subnet.ErrNotFound when the node does not exist; an annotation
// that is not a unicast address of its family is an error naming it.
func (r *Registry) NodePublicIPs(ctx context.Context) (v4, v6 netip.Addr, err error) {
	if err := r.waitSynced(ctx); err != nil {
		return v4, v6, err
	}
	r.mu.Lock()
	node := r.ownNode
	r.mu.Unlock()
	if node == nil {
		return v4, v6, fmt.Errorf("node %q does not exist: %w", r.nodeName, subnet.ErrNotFound)
	}
	parse := func(key string, want6 bool) (netip.Addr, error) {
		s := node.Annotations[key]
		if s == "" {
			return netip.Addr{}, nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Is6() != want6 || a.Is4In6() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			fam := "IPv4"
			if want6 {
				fam = "IPv6"
			}
			return netip.Addr{}, fmt.Errorf("node %q: annotation %s %q is not a unicast %s address", r.nodeName, key, s, fam)
		}
		return a, nil
	}
	if v4, err = parse(r.ann.nodePublicIP, false); err != nil {
		return netip.Addr{}, netip.Addr{}, err
	}
	if v6, err = parse(r.ann.nodePublicIPv6, true); err != nil {
		return netip.Addr{}, netip.Addr{}, err
	}
	return v4, v6, nil
}
