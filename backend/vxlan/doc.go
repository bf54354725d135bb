// Package vxlan is weft's vxlan backend, flannel's default, wire- and state-compatible with
// flanneld: the same device, lease data and per-peer kernel entries, so weft and flanneld
// nodes can share a network and replace each other in place.
//
// # How it works
//
// One VXLAN device, flannel.<VNI> ("vxlan id <VNI> local <source> dev <iface> dstport
// <Port or 8472> nolearning"), carries the own subnet's network address as a /32, which is
// only a source address for host-to-pod traffic. For each remote node ("peer") whose lease
// says BackendType "vxlan", three entries are programmed and nothing is learned or looked
// up at run time (no L2/L3 miss callbacks):
//
//	route      <peer subnet> via <peer subnet>.0 dev flannel.<VNI> onlink
//	neighbour  <peer subnet>.0 lladdr <peer VtepMAC> permanent
//	fdb        <peer VtepMAC> dst <peer PublicIP> self permanent
//
// The route sends the packet to the peer's VTEP as next hop, the neighbour entry gives its
// MAC without ARP, and the FDB entry tells the device which underlay address owns that MAC.
// The local <source> is the interface address, as flanneld's, unless --public-ip is another
// address that an interface of the node holds: then it is the public IP
// (backend.ExternalInterface.TunnelSource), so that peers restricting the tunnel port to
// lease public IPs accept the traffic. Receivers, flanneld's included, do not look at the
// outer source (nolearning), and the lease is unchanged.
// With DirectRouting, a peer that the external interface reaches without a gateway gets
// "<peer subnet> via <peer PublicIP> dev <iface>" instead, and no tunnel entries.
//
// # IPv6
//
// Each address family the network config runs has its own data plane (family.go). With
// EnableIPv6 a second device, flannel-v6.<VNI> (flanneld's name), has the same VNI and
// port, the IPv6 tunnel source (ExternalInterface.TunnelSourceV6) as local address, a MAC
// derived from PublicIPv6, MTU = underlay − 70, and the own IPv6 subnet's network address
// as a /128. Peers with an IPv6 subnet get the same three entries on it, from their
// PublicIPv6 and the VtepMAC of their BackendV6Data; IPv6 routes carry the kernel's
// default IPv6 metric, 1024, explicitly. An IPv6-only network has no flannel.<VNI>. Each
// family keys its peers by its own subnet of the lease, so dual-stack and IPv6-only
// peers (whose IPv4 subnet is zero) mix. Both families go through the kernel package: a
// kernel.Batch of the family's per pass, Handle.EnsureSoleAddr (nodad for IPv6) and one
// subscription to the families the network runs.
//
// # Beyond flanneld
//
//   - The VTEP MAC is derived from the public IP and the VNI, so it survives restarts and
//     device re-creation and peers need no update; it is re-set if udev changes it.
//   - Run repairs drift (device, MAC, MTU, up state, address, per-peer entries) within a
//     few tens of milliseconds: it subscribes to the kernel's change notifications and
//     runs one reconcile function, which writes nothing when nothing is wrong, on every
//     relevant change, and every 30 s anyway. Each repair is counted by kind. (flanneld
//     never puts back a deleted vxlan route, neighbour or FDB entry.)
//   - Transmit checksum offload is switched off on kernels before 5.7, which corrupt
//     VXLAN checksums when the outer packet is SNATed with --random-fully.
//   - Apply and the reconcile pass each use one kernel.Batch: at most one dump of the
//     routes, neighbours and FDB entries per call, and only the entries that differ are
//     written, so N peers cost O(N) (2 000 peers in one Apply: tens of milliseconds; see
//     BenchmarkApplyPeers), where checking each entry with its own dump costs O(N²).
//   - Entries no admitted peer needs are removed: routes, permanent neighbours and FDB
//     entries on flannel.<VNI>, and with DirectRouting routes of the direct shape on the
//     external interface (sweep.go). They are left by peers that went away while weftd
//     was down (or during a re-acquire gap) and by peers that moved; the first Apply after
//     Activate (the complete peer list) and every reconcile pass after it sweep them.
//     flanneld keeps them until the node reboots.
//
// # What it must not do
//
// It never talks to the subnet store and does not judge leases (it gets admitted peers
// only; its Type's CheckPeerData is the parse of the BackendData and BackendV6Data). It touches only
// entries on its own device and, with DirectRouting, routes of the shape it writes on the
// external interface (inside the Network, via a gateway, metric 0); never the default
// route or anything outside the Network. It leaves all kernel state in place on Close so
// pods keep talking across a restart.
package vxlan
