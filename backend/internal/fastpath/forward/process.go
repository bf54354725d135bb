package forward

import (
	"github.com/weftnet/weft/backend/internal/fastpath"

	"github.com/weftnet/weft/backend/internal/fastpath/packet"
)

// The per-packet decisions. They run on the hot path: no allocation, no logging, no
// locks. They are methods on Forwarder only to read its immutable configuration.

// fromDevice decides what happens to the packet p read from the device, with peer table
// t. It returns DropNone when the packet is to be sent: its TTL is decremented, p.Len is
// trimmed to the IPv4 total length and p.Addr is the peer's endpoint. Otherwise it returns
// why the packet is dropped, and, when it wrote an ICMP error for the device into icmp
// (which must hold ICMPMaxLen bytes), that error's length.
func (f *Forwarder) fromDevice(t *PeerTable, p *fastpath.Packet, icmp []byte) (fastpath.DropReason, int) {
	b := p.Bytes()
	if len(b) > 0 && b[0]>>4 == 6 && f.subnet6.has {
		return f.fromDevice6(t, p), 0
	}
	h, r := packet.ParseIPv4(b)
	if r != fastpath.DropNone {
		return r, 0
	}
	p.Len = h.Total
	b = b[:h.Total]
	if !f.has4 {
		return fastpath.DropNoRoute, 0 // an IPv6-only node: no IPv4 peers, no ICMP source
	}
	i, ok := t.lookup(h.Dst)
	if !ok {
		if f.inSubnet(h.Dst) {
			return fastpath.DropOwnSubnet, 0
		}
		return fastpath.DropNoRoute, f.icmpError(icmp, b, h, packet.ICMPDestUnreachable, packet.ICMPNetUnreachable)
	}
	if h.TTL <= 1 {
		return fastpath.DropTTLExceeded, f.icmpError(icmp, b, h, packet.ICMPTimeExceeded, packet.ICMPTTLExceeded)
	}
	packet.DecrementTTL(b)
	p.Addr = t.peers[i].Endpoint
	return fastpath.DropNone, 0
}

// fromConn decides what happens to the datagram p received from the underlay, with peer
// table t. It returns DropNone when the packet is to be written to the device: the sender
// is a peer's endpoint, the inner packet is well-formed IPv4, its source lies in a subnet
// of that same peer, its destination in the own subnet; its TTL is then decremented and
// p.Len trimmed to the total length. Otherwise it returns why the packet is dropped, and,
// when it wrote an ICMP error into icmp to be sent back to p.Addr, that error's length.
func (f *Forwarder) fromConn(t *PeerTable, p *fastpath.Packet, icmp []byte) (fastpath.DropReason, int) {
	if !t.isEndpoint(p.Addr) {
		return fastpath.DropNotPeer, 0
	}
	b := p.Bytes()
	if len(b) > 0 && b[0]>>4 == 6 && f.subnet6.has {
		return f.fromConn6(t, p), 0
	}
	h, r := packet.ParseIPv4(b)
	if r != fastpath.DropNone {
		return r, 0
	}
	p.Len = h.Total
	b = b[:h.Total]
	if !f.has4 {
		return fastpath.DropSpoofedSource, 0 // an IPv6-only node: no peer holds IPv4
	}
	i, ok := t.lookup(h.Src)
	if !ok || endpointKey(t.peers[i].Endpoint) != endpointKey(p.Addr) {
		return fastpath.DropSpoofedSource, 0
	}
	if !f.inSubnet(h.Dst) {
		return fastpath.DropWrongDestination, 0
	}
	if h.TTL <= 1 {
		return fastpath.DropTTLExceeded, f.icmpError(icmp, b, h, packet.ICMPTimeExceeded, packet.ICMPTTLExceeded)
	}
	packet.DecrementTTL(b)
	return fastpath.DropNone, 0
}

// inSubnet reports whether a lies in the own subnet.
func (f *Forwarder) inSubnet(a uint32) bool { return a&f.subnetMask == f.subnetAddr }

// icmpError writes an ICMP error about b from Config.Self into icmp when RFC 1812 allows
// one, and returns its length (0 when none is sent).
func (f *Forwarder) icmpError(icmp, b []byte, h packet.Header, typ, code uint8) int {
	if !packet.ICMPErrorAllowed(b, h) {
		return 0
	}
	return packet.BuildICMPError(icmp, b, h, f.self, typ, code)
}
