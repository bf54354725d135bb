// Package forward is the fast path's Forwarder: two loops that move batches of packets
// between a fastpath.Device and a fastpath.Conn, the per-packet decisions on the way
// (which peer a packet goes to, whether a datagram is a peer's, when to answer with an
// ICMP error), the immutable PeerTable the loops read without a lock, the counters, and
// the replacement of a device someone deleted.
//
// It owns the loops and the decisions, not the I/O: it never opens a device or a socket
// (the backend hands them over and the Forwarder closes them), knows them only through
// fastpath.Device, fastpath.Conn and two optional methods (Offloads, OwnsReadBuffers),
// and never logs, allocates or takes a lock per packet.
//
// # Design notes
//
// Two loops run per Forwarder, each on its own goroutine:
//
//	device loop:  Device.Read (batch) -> parse IPv4 -> PeerTable.lookup(dst) -> TTL-1
//	              -> Conn.Write (batch);  no peer / TTL expired -> ICMP error -> Device.Write
//	conn loop:    Conn.Read (batch) -> sender is a peer endpoint? -> parse IPv4
//	              -> inner source inside that peer's subnet? -> destination in own subnet?
//	              -> TTL-1 -> Device.Write (batch);  TTL expired -> ICMP error -> Conn.Write
//	              back to the sending peer
//
// Both loops read the peer table through an atomic.Pointer: Apply builds a new immutable
// PeerTable and swaps it in, so the fast path takes no lock. Counters are kept per batch on
// the loop's stack and added to shared atomics once per batch.
//
// The Device is read through an atomic.Pointer too. When someone deletes the TUN, its
// queue is detached and Read fails with fastpath.ErrDeviceGone; the device loop then calls
// Config.Reopen (the backend re-creates and configures the device), swaps the new Device
// in and closes the old one, while the conn loop counts its writes into the old one as
// drops. Without Reopen the error ends Run.
//
// IPv6 packets (Config.Subnet6 set) take the same two paths with the IPv6 half of the
// PeerTable, a binary search over 128-bit subnet bounds: the hop limit is decremented
// (IPv6 has no header checksum), and where an IPv4 packet would get an ICMP error an IPv6
// one is dropped and counted only (no ICMPv6 errors are generated). The underlay is IPv4
// for both families: a node's IPv4 and IPv6 subnets share its endpoint.
//
// TTL is decremented on both sides, as flanneld's proxy does, so pods see the same hop
// counts through weft and flanneld. The IPv4 header checksum is updated incrementally
// (RFC 1624, eqn. 3). ICMP errors follow RFC 1812: none about ICMP errors, non-initial
// fragments, or packets from or to broadcast, multicast, loopback or unspecified
// addresses; they quote up to 576 bytes in total and come from Config.Self, the own
// subnet's network address (the TUN's /32), as if a router behind the TUN had sent them.
// Errors about packets from the device are written back into the device (the kernel must
// accept a local source address there: the udp backend sets accept_local on the TUN);
// errors about packets from a peer go back to that peer over the Conn.
package forward
