// Package gre is weft's gre backend: pods' packets travel between nodes inside plain GRE
// (RFC 2784, IP protocol 47), either through the kernel's GRE driver or, where the kernel
// has none, through a userspace forwarder. Both put the same bytes on the wire, so nodes in
// different modes share one network.
//
// # Kernel mode
//
// One point-to-multipoint GRE device per node, weft.gre ("ip link add weft.gre type gre
// local <source> ttl 64": no remote, no key, checksum or sequence numbers), carrying the
// own subnet's network address as a /32. For each peer whose lease says BackendType "gre":
//
//	route      <peer subnet> via <peer PublicIP> dev weft.gre onlink
//	neighbour  <peer PublicIP> lladdr <peer PublicIP> dev weft.gre permanent
//
// The route's next hop is the tunnel's outer destination. The neighbour entry pins that:
// Linux gives a neighbour on a NOARP GRE device the device's own (local) address, which the
// GRE header code would copy into the outer destination. There is never a device per peer.
// <source> is backend.ExternalInterface.TunnelSource: the public IP when an interface of the
// node holds it, else the interface address.
//
// # Userspace mode
//
// A persistent TUN device, weft-gre0, with the own subnet's network address as a /32 and
// one route, the whole Network; a raw IPv4 socket for protocol 47 bound to the same
// <source>; and a fastpath.Forwarder between them (batched recvmmsg/sendmmsg, no
// allocation per packet). A weft-gre0 deleted by someone else is re-created in place,
// with its address and route, as soon as the forwarder's queue reports it gone. The
// socket receives the outer IPv4 header, which is skipped with the 4-byte GRE header;
// datagrams with GRE flags, another version or another protocol type are counted as
// malformed. Writes prepend the GRE header in the packet's headroom and let the kernel
// add the outer IPv4 header. Like the udp backend, a datagram is accepted only from a
// current peer's PublicIP, with an inner source in that peer's subnet and an inner
// destination in the own subnet; everything else is dropped and counted (Stats). It needs
// CAP_NET_RAW.
//
// # IPv6
//
// In a dual-stack network (EnableIPv6) IPv6 inner packets travel in GRE with protocol type
// 0x86DD over the same IPv4 underlay, to the peer's PublicIP, through the same TUN and
// socket (userspace mode only: the kernel-mode data plane carries IPv4 only, so auto runs
// such a network in userspace and Mode "kernel" is refused). weft-gre0 also gets the own
// IPv6 subnet's network address as a /128 and a route to the IPv6 Network, kept and
// healed with the IPv4 side by the same tundev.Device and Plane. The userspace peers are
// keyed by subnet.Lease.Key(); the forwarder's table holds both subnets of a peer behind
// its one endpoint.
//
// In an IPv6-only network (EnableIPv4=false) IPv6 travels in GRE (0x86DD) over the IPv6
// underlay, always in userspace mode (there is no ip6gre kernel mode; Mode "kernel" is
// refused): the raw socket is an IPv6 one bound to ExternalInterface.TunnelSourceV6,
// which receives datagrams without the outer header (only the GRE header is skipped);
// peers' endpoints are the leases' PublicIPv6; weft-gre0 has no IPv4 address or route
// (tundev.Device without Own, with Own6) and its IPv6 side is kept as in dual stack; the
// lease has no PublicIP. GRE over IPv6 costs 44 bytes (outer IPv6 40 + GRE 4).
//
// # Choosing the mode
//
// Mode "auto" (the default) creates the kernel device (with EnableIPv6 it runs userspace
// without trying); if the kernel answers that it does not know the "gre" link type (no
// ip_gre, no module loading), it logs once that gre runs in userspace and why, and does.
// Mode "kernel" fails instead, with an error matching ErrNoKernelGRE that names ip_gre;
// Mode "userspace" never touches the kernel driver. The decision and that error are
// package kernelmode's, shared with wireguard's Implementation key. When the mode changes
// between runs, the other mode's device is deleted.
//
// # MTU
//
// GRE over IPv4 costs 24 bytes (outer IPv4 20 + GRE 4), so the device and pod MTU is the
// external interface's MTU − 24 (− 44 over IPv6, in an IPv6-only network), or the MTU key
// when set (not larger than that).
//
// # What it must not do
//
// It never talks to the subnet store and does not judge leases: the daemon hands it only
// admitted peers (gre leases; see backend.Network). It leaves its devices, routes and
// neighbours in place on Close so pods keep talking across a restart. In kernel mode the
// device accepts GRE from any sender; weftd's --restrict-tunnel-port admits protocol 47
// from current peers only.
package gre
