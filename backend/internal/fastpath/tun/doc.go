// Package tun is the fast path's overlay side: Device, a fastpath.Device over one queue of
// a Linux TUN device (IFF_TUN|IFF_NO_PI), read and written in batches through the Go
// netpoller. With offloads (IFF_VNET_HDR, TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6) it cuts the kernel's TCP
// superpackets into segments on Read, completes partial checksums, and writes
// consecutive segments of a flow as one superpacket on Write, falling back (logged once)
// where the kernel refuses. Check tells whether the kernel has a TUN driver at all.
//
// It owns the TUN file descriptor and the virtio-net framing around each read and write;
// the packet work itself (TSO cutting, GRO planning, checksums) is fastpath's, called
// here. It must not configure the device (addresses, routes, MTU, link state: that is
// tundev's), decide anything about a packet's route, log per packet, or allocate per
// batch. Its reads and writes are raw system calls on a non-blocking descriptor (see the
// fastpath package documentation).
package tun
