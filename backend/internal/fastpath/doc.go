// Package fastpath is weft's userspace forwarding core: it moves IPv4 (and, for userspace
// GRE, IPv6) packets between an
// overlay Device (a TUN) and an underlay Conn (a UDP socket for the udp backend, a raw
// IPv4 or IPv6 protocol 47 socket for userspace GRE), and decides per packet where it goes.
//
// The work lives in four sub-packages, one job each:
//
//	forward  the Forwarder: the two loops between a Device and a Conn, the per-packet
//	         decisions, the PeerTable, the counters, replacing a deleted device
//	packet   pure work on packet bytes: IPv4 parsing and TTL, the Internet checksum,
//	         ICMP errors, the virtio-net header, TCP segmentation (TSO) and coalescing (GRO)
//	tun      the Device over a Linux TUN queue, with virtio-net offloads
//	dgram    the Conn over an IPv4 or IPv6 datagram socket: recvmmsg/sendmmsg, UDP GSO and GRO
//
// This package holds only the contract they share: the Packet slot, its Headroom and the
// batch for offloads, the Device and Conn interfaces with their rules, ErrDeviceGone, why
// packets are dropped (DropReason) and the counters (Stats). It must not grow behaviour:
// code that does something belongs in one of the four. Imports point one way: packet,
// tun, dgram and forward use fastpath; tun and forward use packet; forward sees tun and
// dgram only through Device and Conn. fastpathtest (fakes of Device and Conn) and
// packettest (test packets, reference checksums) are for tests only.
//
// The fast path owns the per-packet work and nothing else: the backend creates the device
// and the socket, turns peer leases into a forward.PeerTable, and hands both to a
// forward.Forwarder. It never logs per packet, never allocates per packet (buffers are
// allocated once per loop), and never touches kernel state beyond reading and writing
// the two file descriptors.
//
// Not allocating matters more than it looks. weftd runs under a soft memory limit (16 MiB
// with few peers, daemon/pace.go) and userspace GRE's slots take about 9 MB of it, so
// the heap sits near the limit: a closure allocated per TUN read once made the collector
// run at almost every packet and gre's idle round trip 4-9 times longer. The tests of
// tun and dgram check that Read and Write do not allocate.
//
// # Batching and offloads
//
// Device and Conn read and write slices of Packet. A Packet carries Headroom bytes before
// the data, so a TUN with IFF_VNET_HDR reads its virtio-net header there and a GRE Conn
// prepends its header without copying. Per-packet decisions always see single inner
// IPv4 packets; the offloads live entirely in the Device and the Conn:
//
//   - tun.Device (tun.OpenWith, Offload): IFF_VNET_HDR with TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6. The
//     kernel hands over TCP superpackets of up to 64 KiB with a partial checksum; Read
//     cuts them into MTU-sized segments in the slots (packet.TSOSplitter: IPv4 id,
//     length and checksum or IPv6 payload length, TCP sequence number, FIN/PSH on the last segment only, CWR on
//     the first only, full TCP checksum per segment) and completes the checksum of
//     packets handed over with a partial one. Write coalesces consecutive segments of a
//     TCP flow, verified, into one superpacket written with writev(2) straight from the
//     packets' buffers (packet.GROPlanner, following the kernel's GRO rules); everything
//     else goes through unmodified.
//   - dgram.Conn (dgram.NewWith, Offload, UDP sockets only): UDP_SEGMENT sends a run
//     of equal-sized datagrams to one peer as one message, and UDP_GRO receives such runs
//     as one message, which Read hands out one datagram per Packet from its own buffers.
//
// The wire format does not change: every datagram (or GRE packet) carries exactly one
// inner packet, as flanneld sends and expects. Each offload is tried at run time and
// falls back when the kernel refuses it (logged once; forward.Forwarder.Offloads says
// what is in use). A raw GRE socket has no GSO or GRO, so userspace GRE gets the TUN
// offloads only.
//
// # System calls
//
// The reads and writes of packets are raw system calls (unix.RawSyscall), not the
// runtime's wrapped ones. Every descriptor is non-blocking (O_NONBLOCK, MSG_DONTWAIT), so
// no call sleeps: an empty queue returns EAGAIN and the loop waits in the netpoller as
// usual. What the wrapper would add is the scheduler's bookkeeping: a GSO send or a
// superpacket write runs for tens of microseconds (the kernel delivers the packet to the
// other side within the call), long enough for the runtime's monitor thread to take the
// P away, hand it over and keep itself on a 20 µs wake-up. Measured in the bench's udp
// path: nanosleep calls from about 13 000 to under 100 a second, context switches down by
// a third, futex calls by three quarters. The cost: a stop-the-world pause of the garbage
// collector waits for a running call, tens of microseconds at most, and the race detector
// does not see the buffers the kernel reads and writes.
//
// A multi-queue TUN (one reader per core) is deliberately not used: IFF_MULTI_QUEUE is a
// property of the device, so flanneld (single queue) could no longer attach to a
// flannel0 weft created, and a single TCP stream hashes to one queue anyway.
package fastpath
