package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/subnet"
)

// AssignedSubnets returns this node's pod CIDRs of the families the network runs: the IPv4
// one when the config's EnableIPv4 is set, the IPv6 one when EnableIPv6 is (the other
// zero), as flanneld takes them. It waits (until ctx ends) for the node to exist and have a
// pod CIDR of each of those families; the error then wraps subnet.ErrNotAssigned and says
// what is missing (a dual-stack network on a node with only an IPv4 pod CIDR, say: the
// cluster must assign dual-stack pod CIDRs). Each new reason is also told to
// Config.Waiting and logged.
//
// The families are cfg's, the config the Manager runs; with a nil cfg it returns what the
// node has, waiting for at least one pod CIDR.
func (r *Registry) AssignedSubnets(ctx context.Context, cfg *subnet.Config) (netip.Prefix, netip.Prefix, error) {
	if err := r.waitSynced(ctx); err != nil {
		return netip.Prefix{}, netip.Prefix{}, err
	}
	var lastWhy string
	for {
		r.mu.Lock()
		node, wake, closed := r.ownNode, r.wake, r.closed
		r.mu.Unlock()
		var why error
		switch {
		case closed:
			return netip.Prefix{}, netip.Prefix{}, errors.New("kube registry closed")
		case node == nil:
			why = fmt.Errorf("node %q does not exist in the Kubernetes API (is NODE_NAME right?)", r.nodeName)
		default:
			sn, sn6, err := podCIDRs(node)
			if err == nil {
				if sn, sn6, err = r.families(cfg, sn, sn6, specCIDRs(node)); err == nil {
					return sn, sn6, nil
				}
			}
			if errors.Is(err, errNoPodCIDR) {
				err = fmt.Errorf("node %q has no spec.podCIDRs yet (kube-controller-manager assigns them with --allocate-node-cidrs)", r.nodeName)
			}
			why = err
		}
		if msg := why.Error(); msg != lastWhy {
			r.waiting(fmt.Errorf("%w: %w", subnet.ErrNotAssigned, why))
			r.log.Info("Waiting for this node's pod CIDRs", "reason", msg)
			lastWhy = msg
		}
		if r.waitChange(ctx, wake) != nil {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("%w: %w", subnet.ErrNotAssigned, why)
		}
	}
}

// families keeps the node's pod CIDRs sn and sn6 of the families cfg runs (all of them when
// cfg is nil), or says which one the node lacks.
func (r *Registry) families(cfg *subnet.Config, sn, sn6 netip.Prefix, cidrs []string) (netip.Prefix, netip.Prefix, error) {
	if cfg == nil {
		return sn, sn6, nil
	}
	lacks := func(fam, key string) error {
		return fmt.Errorf("node %q has no %s pod CIDR (spec.podCIDRs %q) but the network config runs %s (%s): the cluster must assign the node one (kube-controller-manager --cluster-cidr with an %s range)",
			r.nodeName, fam, cidrs, cfg.Families(), key, fam)
	}
	switch {
	case cfg.EnableIPv4 && !sn.IsValid():
		return sn, sn6, lacks("IPv4", "EnableIPv4")
	case cfg.EnableIPv6 && !sn6.IsValid():
		return sn, sn6, lacks("IPv6", "EnableIPv6")
	}
	if !cfg.EnableIPv4 {
		sn = netip.Prefix{}
	}
	if !cfg.EnableIPv6 {
		sn6 = netip.Prefix{}
	}
	return sn, sn6, nil
}
