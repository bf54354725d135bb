package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/subnet"
)

// DefaultAnnotationPrefix is flanneld's --kube-annotation-prefix default.
const DefaultAnnotationPrefix = "flannel.alpha.coreos.com"

// annotations are the names of the node annotations flanneld reads and writes, each
// <prefix>/<name> (or <prefix>-<name> for a prefix that already has its slash).
type annotations struct {
	managed             string // "true" on a node whose subnet manager is flanneld's (or weft's) kube one
	backendType         string
	backendData         string // the lease's BackendData JSON; "null" when the backend has none
	backendV6Data       string // the lease's BackendV6Data JSON (the IPv6 side's)
	publicIP            string // "0.0.0.0" (or absent) on a node that runs no IPv4
	publicIPv6          string // absent on a node that runs no IPv6
	publicIPOverwrite   string // set by an operator: publish this address instead of the interface's
	publicIPv6Overwrite string // the same for IPv6
	// nodePublicIP and nodePublicIPv6 are set by an operator and only read (by flanneld
	// as its --public-ip and --public-ipv6): see Registry.NodePublicIPs.
	nodePublicIP   string
	nodePublicIPv6 string
}

// prefixPattern is what flanneld accepts as a prefix, once completed: a DNS-like name, one
// slash, and an optional name part ending in a dash.
var prefixPattern = regexp.MustCompile(`^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$`)

// newAnnotations completes prefix as flanneld does ("example.com" -> "example.com/",
// "example.com/weft" -> "example.com/weft-") and returns the annotation names.
func newAnnotations(prefix string) (annotations, error) {
	switch strings.Count(prefix, "/") {
	case 0:
		prefix += "/"
	case 1:
	default:
		return annotations{}, fmt.Errorf("annotation prefix %q: at most one slash", prefix)
	}
	if !strings.HasSuffix(prefix, "/") && !strings.HasSuffix(prefix, "-") {
		prefix += "-"
	}
	if !prefixPattern.MatchString(prefix) {
		return annotations{}, fmt.Errorf("annotation prefix %q: must be a DNS name with an optional /name part (lower case, digits, '-', '_', '.')", prefix)
	}
	return annotations{
		managed:             prefix + "kube-subnet-manager",
		backendType:         prefix + "backend-type",
		backendData:         prefix + "backend-data",
		backendV6Data:       prefix + "backend-v6-data",
		publicIP:            prefix + "public-ip",
		publicIPv6:          prefix + "public-ipv6",
		publicIPOverwrite:   prefix + "public-ip-overwrite",
		publicIPv6Overwrite: prefix + "public-ipv6-overwrite",
		nodePublicIP:        prefix + "node-public-ip",
		nodePublicIPv6:      prefix + "node-public-ipv6",
	}, nil
}

// published returns the annotation patch that publishes a lease of sn and sn6 (either may
// be zero) with attrs, in flanneld's bytes, and attrs as published:
//   - kube-subnet-manager "true" and backend-type, always;
//   - with an IPv4 subnet, backend-data (compact JSON; "null" when the backend has none) and
//     public-ip: attrs.PublicIP, or the address the node's public-ip-overwrite names;
//   - with an IPv6 subnet, backend-v6-data and public-ipv6 alike (public-ipv6-overwrite);
//   - without an IPv4 subnet, flanneld's vxlan writes no public-ip and backend-data, its
//     other backends public-ip "0.0.0.0" and backend-data "null": so does this.
//
// A family the lease does not carry is not published: its annotations left by an earlier
// run (a public-ipv6 on a node now IPv4-only) are removed (nil values in the patch), so that
// the node publishes exactly this lease. On a node that never ran that family nothing is
// removed. The attrs of a family the lease lacks are dropped (zero address, no data).
func (a annotations) published(n *corev1.Node, sn, sn6 netip.Prefix, attrs subnet.LeaseAttrs) (map[string]any, subnet.LeaseAttrs, error) {
	patch := map[string]any{a.managed: "true", a.backendType: attrs.BackendType}
	drop := func(keys ...string) {
		for _, k := range keys {
			if _, ok := n.Annotations[k]; ok {
				patch[k] = nil
			}
		}
	}
	var err error
	switch {
	case sn.IsValid():
		if attrs.PublicIP, err = a.publicAddr(n, attrs.PublicIP, a.publicIPOverwrite, false); err != nil {
			return nil, attrs, err
		}
		if patch[a.backendData], err = compact(attrs.BackendData); err != nil {
			return nil, attrs, fmt.Errorf("backend data: %w", err)
		}
		patch[a.publicIP] = attrs.PublicIP.String()
	case attrs.BackendType == "vxlan":
		attrs.PublicIP, attrs.BackendData = netip.Addr{}, nil
		drop(a.publicIP, a.backendData)
	default:
		attrs.PublicIP, attrs.BackendData = netip.Addr{}, nil
		patch[a.publicIP], patch[a.backendData] = netip.IPv4Unspecified().String(), "null"
	}
	if sn6.IsValid() {
		if attrs.PublicIPv6, err = a.publicAddr(n, attrs.PublicIPv6, a.publicIPv6Overwrite, true); err != nil {
			return nil, attrs, err
		}
		if patch[a.backendV6Data], err = compact(attrs.BackendV6Data); err != nil {
			return nil, attrs, fmt.Errorf("backend IPv6 data: %w", err)
		}
		patch[a.publicIPv6] = attrs.PublicIPv6.String()
	} else {
		attrs.PublicIPv6, attrs.BackendV6Data = netip.Addr{}, nil
		drop(a.publicIPv6, a.backendV6Data)
	}
	return patch, attrs, nil
}

// publicAddr returns the address to publish for one family: the one the node's overwrite
// annotation names, else pub; an error names a value that is not of the family.
func (a annotations) publicAddr(n *corev1.Node, pub netip.Addr, overwrite string, v6 bool) (netip.Addr, error) {
	fam := "IPv4"
	if v6 {
		fam = "IPv6"
	}
	if ov := n.Annotations[overwrite]; ov != "" {
		addr, err := netip.ParseAddr(ov)
		if err != nil || addr.Is6() != v6 || addr.Is4In6() || addr.Zone() != "" || addr.IsUnspecified() {
			return pub, fmt.Errorf("annotation %s %q is not an %s address", overwrite, ov, fam)
		}
		return addr, nil
	}
	if !pub.IsValid() {
		return pub, fmt.Errorf("the lease has an %s subnet but no public %s address", fam, fam)
	}
	if pub.Is6() != v6 || pub.Is4In6() || pub.IsUnspecified() {
		return pub, fmt.Errorf("public %s address %s is not a unicast %s address", fam, pub, fam)
	}
	return pub, nil
}

// compact returns data as flanneld writes it: compact JSON, "null" when there is none.
func compact(data json.RawMessage) (string, error) {
	if len(data) == 0 {
		return "null", nil
	}
	var c bytes.Buffer
	if err := json.Compact(&c, data); err != nil {
		return "", fmt.Errorf("not JSON: %w", err)
	}
	return c.String(), nil
}

// differ reports whether the node's annotations differ from what patch sets (a nil value:
// the annotation must be absent).
func differ(n *corev1.Node, patch map[string]any) bool {
	for k, v := range patch {
		got, ok := n.Annotations[k]
		if s, set := v.(string); ok != set || got != s {
			return true
		}
	}
	return false
}
