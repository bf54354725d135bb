package fastpath

import (
	"github.com/weftnet/weft/backend"
)

// DropReason says why the fast path discarded a packet.
type DropReason uint8

// Drop reasons. DropNone means "not dropped" and is never counted.
const (
	DropNone DropReason = iota
	// DropMalformed: not a well-formed IPv4 packet (short, bad header length, total
	// length or header checksum).
	DropMalformed
	// DropNotIPv4: an IP version other than 4 (e.g. IPv6 the kernel sent into the TUN).
	DropNotIPv4
	// DropNotPeer: a datagram whose sender (address and port) is no current peer's
	// endpoint.
	DropNotPeer
	// DropSpoofedSource: the sender is a peer, but the inner source address lies outside
	// every subnet that peer holds.
	DropSpoofedSource
	// DropWrongDestination: a datagram from a peer whose inner destination is not in the
	// own subnet.
	DropWrongDestination
	// DropNoRoute: a packet from the device for a destination no peer holds; an ICMP
	// net-unreachable is sent back where RFC 1812 allows.
	DropNoRoute
	// DropOwnSubnet: a packet from the device addressed to the own subnet, which must not
	// be routed into the tunnel (a routing loop on this node).
	DropOwnSubnet
	// DropTTLExceeded: the TTL would reach 0; an ICMP time-exceeded is sent back where
	// RFC 1812 allows.
	DropTTLExceeded
	// DropSendError: the underlay socket refused the datagram.
	DropSendError
	// DropDeviceWriteError: the device refused the packet.
	DropDeviceWriteError

	// NumDropReasons is the number of reasons, for sizing arrays; it is not a reason.
	NumDropReasons
)

// String returns the reason's stable name, as used in logs and metrics.
func (r DropReason) String() string {
	switch r {
	case DropNone:
		return "none"
	case DropMalformed:
		return "malformed"
	case DropNotIPv4:
		return "not-ipv4"
	case DropNotPeer:
		return "not-peer"
	case DropSpoofedSource:
		return "spoofed-inner-source"
	case DropWrongDestination:
		return "wrong-destination"
	case DropNoRoute:
		return "no-route"
	case DropOwnSubnet:
		return "own-subnet"
	case DropTTLExceeded:
		return "ttl-exceeded"
	case DropSendError:
		return "send-error"
	case DropDeviceWriteError:
		return "device-write-error"
	}
	return "unknown"
}

// Counter counts packets and their bytes (IPv4 total length, without any encapsulation).
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Stats is a snapshot of a Forwarder's counters. Every counter only grows.
type Stats struct {
	DeviceIn  Counter // packets read from the device (bound for peers)
	ConnOut   Counter // packets sent to peers, including ICMP errors about their packets
	ConnIn    Counter // datagrams received from the underlay, before any check
	DeviceOut Counter // packets written to the device: from peers, and ICMP errors
	ICMPOut   uint64  // ICMP errors generated (also counted in DeviceOut or ConnOut)
	// ReadErrors counts failed Read calls on either side other than the final
	// net.ErrClosed.
	ReadErrors uint64
	// Drops counts discarded packets by reason; index with a DropReason.
	Drops [NumDropReasons]uint64
}

// Dropped returns the total of all drops.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, v := range s.Drops {
		n += v
	}
	return n
}

// StatsReporter is implemented by Networks built on a Forwarder, so the daemon can read
// their counters (for metrics and health) through a type assertion.
type StatsReporter interface {
	// Stats returns a snapshot of the counters. It is safe to call at any time from any
	// goroutine, also after Close.
	Stats() Stats
}

// Export converts the snapshot into the backend-neutral form the daemon reads.
func (s Stats) Export() backend.PacketStats {
	ps := backend.PacketStats{
		Packets: map[string]uint64{
			"device-in": s.DeviceIn.Packets, "tunnel-out": s.ConnOut.Packets,
			"tunnel-in": s.ConnIn.Packets, "device-out": s.DeviceOut.Packets,
		},
		Bytes: map[string]uint64{
			"device-in": s.DeviceIn.Bytes, "tunnel-out": s.ConnOut.Bytes,
			"tunnel-in": s.ConnIn.Bytes, "device-out": s.DeviceOut.Bytes,
		},
		Drops:      make(map[string]uint64, NumDropReasons),
		ICMPErrors: s.ICMPOut,
	}
	for r := DropReason(1); r < NumDropReasons; r++ {
		ps.Drops[r.String()] = s.Drops[r]
	}
	return ps
}
