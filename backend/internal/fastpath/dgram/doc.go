// Package dgram is the fast path's underlay side: Conn, a fastpath.Conn over an IPv4 or
// IPv6 datagram socket (UDP for the udp backend, a raw IPv4 or IPv6 socket for userspace
// GRE), moving
// batches of datagrams with recvmmsg(2) and sendmmsg(2) and, on a UDP socket, using UDP
// GSO and GRO (IPv4 UDP only) where the kernel takes them (falling back for good, logged once, where it
// refuses). EnlargeBuffers sizes a socket's buffers for bursts.
//
// It owns the system calls on the socket and nothing else: the backend opens and binds
// the socket, and the Forwarder decides what each datagram means. It must not look inside
// the datagrams (the wire format is one inner packet per datagram, whatever the
// offloads), log per packet, or allocate per batch. Its reads and writes are raw system
// calls on a non-blocking descriptor (see the fastpath package documentation).
package dgram
