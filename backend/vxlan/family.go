package vxlan

import (
	"encoding/json"
	"net/netip"
	"sync/atomic"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/subnet"
)

// family is the data plane of one address family: its VXLAN device (flannel.<VNI> for
// IPv4, flannel-v6.<VNI> for IPv6, as flanneld names them) and the entries of the peers
// that have a subnet of that family. A dual-stack network has two, which share nothing but
// the network's lock and kernel handle.
type family struct {
	v6      bool
	spec    deviceSpec
	cidr    netip.Prefix // the Network (IPv4) or IPv6Network, which holds every peer subnet
	ownAddr netip.Prefix // <own subnet network address>/32 or /128 on the device
	// metric is the metric the kernel lists for the routes weft writes without one: 0
	// for IPv4, 1024 for IPv6 (IP6_RT_PRIO_USER). Routes are written with it explicitly.
	metric int
	direct bool // DirectRouting

	// Guarded by network.mu.
	devIndex int                    // current ifindex of the device; changes if re-created
	peers    map[netip.Prefix]*peer // admitted peers by their subnet of this family
	gone     map[netip.Prefix]*peer // removed peers whose entries could not all be deleted yet

	devIdx atomic.Int64 // devIndex, also readable without the lock (by relevant)
}

// IPv6 constants: the overhead of VXLAN over an IPv6 underlay (outer IPv6 40 + UDP 8 +
// VXLAN 8 + inner Ethernet 14), the smallest MTU IPv6 allows (RFC 8200; the kernel drops
// a device's IPv6 addresses below it) and the metric of IPv6 routes written without one.
const (
	encapOverheadV6 = 70
	minPodMTUv6     = 1280
	routeMetricV6   = 1024
)

func newFamily(v6 bool, spec deviceSpec, cidr netip.Prefix, direct bool) *family {
	f := &family{v6: v6, spec: spec, cidr: cidr, direct: direct,
		peers: map[netip.Prefix]*peer{}, gone: map[netip.Prefix]*peer{}}
	if v6 {
		f.metric = routeMetricV6
	}
	return f
}

// String names the family in logs.
func (f *family) String() string {
	if f.v6 {
		return "IPv6"
	}
	return "IPv4"
}

// setOwn sets the device address from the own subnet of this family.
func (f *family) setOwn(sn netip.Prefix) {
	bits := 32
	if f.v6 {
		bits = 128
	}
	f.ownAddr = netip.PrefixFrom(sn.Masked().Addr(), bits)
}

// subnetOf is l's subnet of this family (the zero Prefix when l has none).
func (f *family) subnetOf(l subnet.Lease) netip.Prefix {
	if f.v6 {
		return l.IPv6Subnet.Masked()
	}
	return l.Subnet.Masked()
}

// publicOf is the underlay address of attrs for this family.
func (f *family) publicOf(a subnet.LeaseAttrs) netip.Addr {
	if f.v6 {
		return a.PublicIPv6
	}
	return a.PublicIP
}

// dataOf is the backend data of attrs for this family.
func (f *family) dataOf(a subnet.LeaseAttrs) json.RawMessage {
	if f.v6 {
		return a.BackendV6Data
	}
	return a.BackendData
}

// setDevIndex records the device's current index.
func (f *family) setDevIndex(idx int) {
	f.devIndex = idx
	f.devIdx.Store(int64(idx))
}

// kernelFamily is f's address family for the kernel package.
func (f *family) kernelFamily() kernel.Family {
	if f.v6 {
		return kernel.IPv6
	}
	return kernel.IPv4
}

// newTables returns an empty kernel.Batch of the family on h: one dump of each kind per
// pass, only differences written.
func (f *family) newTables(h *kernel.Handle) *kernel.Batch {
	return h.NewFamilyBatch(f.kernelFamily())
}
