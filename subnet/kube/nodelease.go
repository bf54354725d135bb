package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// errNoPodCIDR: the node has no pod CIDR (yet).
var errNoPodCIDR = errors.New("no spec.podCIDRs")

// podCIDRs returns the node's pod subnets: the IPv4 and the IPv6 entry of spec.podCIDRs
// (else spec.podCIDR alone), either zero when the node has none of that family. Each must be
// a network address, and there is at most one of each family (Kubernetes' own rule).
func podCIDRs(n *corev1.Node) (sn, sn6 netip.Prefix, err error) {
	cidrs := specCIDRs(n)
	if len(cidrs) == 0 {
		return sn, sn6, errNoPodCIDR
	}
	if len(cidrs) > 2 {
		return sn, sn6, fmt.Errorf("spec.podCIDRs %v: at most one IPv4 and one IPv6 CIDR", cidrs)
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("spec.podCIDR %q is not a CIDR", s)
		}
		if !ip.IsNetworkAddress(p) {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("spec.podCIDR %s is not a network address", p)
		}
		dst := &sn
		if p.Addr().Is6() {
			dst = &sn6
		}
		if dst.IsValid() {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("spec.podCIDRs %v: two CIDRs of one family", cidrs)
		}
		*dst = p
	}
	return sn, sn6, nil
}

// specCIDRs returns the node's spec.podCIDRs, else its spec.podCIDR alone.
func specCIDRs(n *corev1.Node) []string {
	if len(n.Spec.PodCIDRs) == 0 && n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return n.Spec.PodCIDRs
}

// nodeLease reads a node as a lease: its pod CIDRs and the annotations the node's flanneld
// or weftd published. A family is in the lease when the node has a pod CIDR of that family
// and publishes a public address of it: public-ip for IPv4, public-ipv6 for IPv6. A family
// the node does not run publishes none (flanneld writes nothing, or "0.0.0.0" for IPv4 in
// an IPv6-only network): it is left out, silently.
//
// bad says what is wrong with the node, or nil: nothing usable published (then l has no
// subnet), or a family whose annotations do not parse (then l has the other family, if it
// is good: a node's garbage IPv6 annotations do not cost its working IPv4 peering). cidrs
// is the lease of all the node's pod CIDRs, which names the node in a subnet.Malformed.
func (a annotations) nodeLease(n *corev1.Node) (l, cidrs subnet.Lease, bad error) {
	sn, sn6, err := podCIDRs(n)
	if err != nil {
		return l, cidrs, err
	}
	cidrs = subnet.Lease{Subnet: sn, IPv6Subnet: sn6}
	ann := n.Annotations // reading a nil map is fine
	if len(ann) == 0 {
		return l, cidrs, errors.New("no annotations at all (no weftd or flanneld has run on it)")
	}
	if v := ann[a.managed]; v != "true" {
		return l, cidrs, fmt.Errorf("annotation %s is %q, not \"true\" (no weftd or flanneld in kube mode has run on it)", a.managed, v)
	}
	l.Attrs.BackendType = ann[a.backendType]
	var errs []error
	if sn.IsValid() {
		pub, data, err := a.family(ann, a.publicIP, a.backendData, false)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("IPv4 pod CIDR %s: %w", sn, err))
		case pub.IsValid():
			l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData = sn, pub, data
		}
	}
	if sn6.IsValid() {
		pub, data, err := a.family(ann, a.publicIPv6, a.backendV6Data, true)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("IPv6 pod CIDR %s: %w", sn6, err))
		case pub.IsValid():
			l.IPv6Subnet, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data = sn6, pub, data
		}
	}
	if len(errs) > 0 {
		return l, cidrs, errors.Join(errs...)
	}
	if !l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() {
		return l, cidrs, fmt.Errorf("publishes no public address for its pod CIDRs %s (annotations %s and %s)",
			subnet.DescribeSubnets(sn, sn6), a.publicIP, a.publicIPv6)
	}
	return l, cidrs, nil
}

// family reads one family's public address and backend data annotations. A missing or
// unspecified address means the node does not run the family (zero pub, no error).
func (a annotations) family(ann map[string]string, pubKey, dataKey string, v6 bool) (pub netip.Addr, data json.RawMessage, err error) {
	s, ok := ann[pubKey]
	if !ok || s == "" {
		return pub, nil, nil
	}
	pub, err = netip.ParseAddr(s)
	if err != nil || pub.Is6() != v6 || pub.Is4In6() || pub.Zone() != "" {
		fam := "IPv4"
		if v6 {
			fam = "IPv6"
		}
		return netip.Addr{}, nil, fmt.Errorf("annotation %s %q is not an %s address", pubKey, s, fam)
	}
	if pub.IsUnspecified() {
		return netip.Addr{}, nil, nil
	}
	if d := strings.TrimSpace(ann[dataKey]); d != "" && d != "null" {
		if !json.Valid([]byte(d)) {
			return netip.Addr{}, nil, fmt.Errorf("annotation %s is not JSON: %.80q", dataKey, d)
		}
		data = json.RawMessage(d)
	}
	return pub, data, nil
}
