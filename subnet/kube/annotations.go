package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// DefaultAnnotationPrefix is flanneld's --kube-annotation-prefix default.
const DefaultAnnotationPrefix = "flannel.alpha.coreos.com"

// annotations are the names of the node annotations flanneld reads and writes, each
// <prefix>/<name> (or <prefix>-<name> for a prefix that already has its slash).
type annotations struct {
	managed           string // "true" on a node whose subnet manager is flanneld's (or weft's) kube one
	backendType       string
	backendData       string // the lease's BackendData JSON; "null" when the backend has none
	publicIP          string
	publicIPOverwrite string // set by an operator: publish this address instead of the interface's
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
		managed:           prefix + "kube-subnet-manager",
		backendType:       prefix + "backend-type",
		backendData:       prefix + "backend-data",
		publicIP:          prefix + "public-ip",
		publicIPOverwrite: prefix + "public-ip-overwrite",
	}, nil
}

// errNoPodCIDR: the node has no IPv4 pod CIDR (yet).
var errNoPodCIDR = errors.New("no IPv4 spec.podCIDR")

// podCIDR returns the node's IPv4 pod subnet: the IPv4 entry of spec.podCIDRs, else
// spec.podCIDR. It must be a network address.
func podCIDR(n *corev1.Node) (netip.Prefix, error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("spec.podCIDR %q is not a CIDR", s)
		}
		if !p.Addr().Is4() {
			continue
		}
		if !ip.IsNetworkAddress(p) {
			return netip.Prefix{}, fmt.Errorf("spec.podCIDR %s is not a network address", p)
		}
		return p, nil
	}
	return netip.Prefix{}, errNoPodCIDR
}

// nodeLease reads a node as a lease: its pod CIDR and the annotations the node's
// flanneld or weftd published. A node whose manager annotation is not "true" has published
// nothing usable: it is an error too, as is anything that does not parse.
func (a annotations) nodeLease(n *corev1.Node) (subnet.Lease, error) {
	sn, err := podCIDR(n)
	if err != nil {
		return subnet.Lease{}, err
	}
	ann := n.Annotations // reading a nil map is fine
	if len(ann) == 0 {
		return subnet.Lease{Subnet: sn}, errors.New("no annotations at all (no weftd or flanneld has run on it)")
	}
	if v := ann[a.managed]; v != "true" {
		return subnet.Lease{Subnet: sn}, fmt.Errorf("annotation %s is %q, not \"true\" (no weftd or flanneld in kube mode has run on it)", a.managed, v)
	}
	attrs := subnet.LeaseAttrs{BackendType: ann[a.backendType]}
	pub := ann[a.publicIP]
	if attrs.PublicIP, err = netip.ParseAddr(pub); err != nil || !attrs.PublicIP.Is4() {
		return subnet.Lease{Subnet: sn}, fmt.Errorf("annotation %s %q is not an IPv4 address", a.publicIP, pub)
	}
	if data := strings.TrimSpace(ann[a.backendData]); data != "" && data != "null" {
		if !json.Valid([]byte(data)) {
			return subnet.Lease{Subnet: sn}, fmt.Errorf("annotation %s is not JSON: %.80q", a.backendData, data)
		}
		attrs.BackendData = json.RawMessage(data)
	}
	return subnet.Lease{Subnet: sn, Attrs: attrs}, nil
}

// published returns the annotations that publish attrs, with the bytes flanneld writes:
// BackendData compact ("null" when the backend has none), and the public IP the node's
// public-ip-overwrite names, if it names one.
func (a annotations) published(n *corev1.Node, attrs subnet.LeaseAttrs) (map[string]string, subnet.LeaseAttrs, error) {
	data := []byte("null")
	if len(attrs.BackendData) > 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, attrs.BackendData); err != nil {
			return nil, attrs, fmt.Errorf("backend data is not JSON: %w", err)
		}
		data = c.Bytes()
	}
	if ov := n.Annotations[a.publicIPOverwrite]; ov != "" {
		addr, err := netip.ParseAddr(ov)
		if err != nil || !addr.Is4() {
			return nil, attrs, fmt.Errorf("annotation %s %q is not an IPv4 address", a.publicIPOverwrite, ov)
		}
		attrs.PublicIP = addr
	}
	return map[string]string{
		a.managed:     "true",
		a.backendType: attrs.BackendType,
		a.backendData: string(data),
		a.publicIP:    attrs.PublicIP.String(),
	}, attrs, nil
}

// differ reports whether the node lacks one of want's annotations or has another value.
func differ(n *corev1.Node, want map[string]string) bool {
	for k, v := range want {
		if got, ok := n.Annotations[k]; !ok || got != v {
			return true
		}
	}
	return false
}
