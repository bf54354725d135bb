package fastpath

import (
	"errors"
	"net/netip"
)

// Headroom is the number of bytes the Forwarder leaves free before each packet it reads,
// for headers a Device or Conn adds or strips in place (a virtio-net header, a GRE
// header). A Conn's Write may overwrite Buf[:Off] of the packets it is given.
const Headroom = 32

// MaxPacket is the largest IPv4 packet (the total-length field is 16 bits).
const MaxPacket = 65535

// OffloadBatchSize is the batch to use with offloads: room for two TCP superpackets of 64
// KiB cut at an MTU of 1500 or more, so that each stays whole within one batch.
const OffloadBatchSize = 128

// Packet is one slot of a batch: a buffer, and where in it the packet lies.
type Packet struct {
	// Buf is the whole buffer, owned by the Forwarder loop that made it. A reader may fill
	// Buf[Off:]; len(Buf)-Off is the largest packet the slot holds.
	Buf []byte
	// Off is where the packet starts. Buf[:Off] is headroom. Read may advance it past
	// headers it read into the slot (a GRE Conn skipping the outer IPv4 and GRE headers);
	// the Forwarder sets it back to Headroom before each Read.
	Off int
	// Len is the length of the packet: the packet is Buf[Off : Off+Len].
	Len int
	// Addr is the underlay endpoint, for a Conn only: the source after Read, the
	// destination for Write. A Device ignores it.
	Addr netip.AddrPort
}

// Bytes returns the packet: Buf[Off : Off+Len].
func (p *Packet) Bytes() []byte { return p.Buf[p.Off : p.Off+p.Len] }

// Device is the overlay side: a TUN device carrying raw IPv4 packets, no packet-info
// header. It is implemented by *tun.Device and, in tests, by fastpathtest.Device.
//
// Rules:
//   - Read blocks until at least one packet is available, then returns n >= 1 packets in
//     pkts[:n] (setting Len, maybe advancing Off; Buf is left unchanged) without blocking
//     again. It may return fewer than len(pkts); it never returns more than len(pkts). A
//     Device with offloads may cut one superpacket into many packets, and continue it in
//     the next Read when pkts is full; a packet it cannot hand over comes out with Len 0.
//   - Write delivers each pkts[i].Bytes() as one packet, or, with offloads, merges
//     consecutive TCP segments of a flow into one superpacket the kernel takes as those
//     segments (it may rewrite the first segment's headers for that). It must not
//     write into Buf[:Off]: packets from a Conn may have less than Headroom bytes before
//     them. It returns how many packets the device accepted and the first error; a
//     packet the device refuses is skipped and the rest of the batch is still written. A
//     short count without error does not happen.
//   - BatchSize is the largest useful len(pkts) for Read; the Forwarder never passes more.
//   - Read, Write and Close may be called concurrently with each other; concurrent calls of
//     the same method are allowed and serialised.
//   - Close is idempotent. It makes blocked and later Reads and Writes return an error
//     that wraps net.ErrClosed; the loops end on it.
//   - When the device itself disappears under an open Device (a TUN deleted with ip link
//     del), Read (and Write) return an error that wraps ErrDeviceGone, at once and from
//     then on; such a Device is still to be closed.
type Device interface {
	Read(pkts []Packet) (n int, err error)
	Write(pkts []Packet) (n int, err error)
	BatchSize() int
	Close() error
}

// ErrDeviceGone is wrapped by a Device's Read or Write error when the device it was
// attached to no longer exists (someone deleted it). The Forwarder replaces such a Device
// through forward.Config.Reopen, or ends Run with the error when there is none.
var ErrDeviceGone = errors.New("device is gone")

// Conn is the underlay side: a datagram socket carrying one overlay packet per datagram
// (the UDP payload for the udp backend). It is implemented by *dgram.Conn and, in tests,
// by fastpathtest.Conn.
//
// Rules:
//   - Read blocks until at least one datagram is available, then returns n >= 1 of them in
//     pkts[:n], setting Len and Addr (the sender), maybe advancing Off. A datagram longer
//     than the slot is cut to the slot. A Conn may instead point Buf at memory of its own
//     (a run of datagrams the kernel coalesced, handed out one per Packet, continued in
//     the next Read when pkts is full); such packets stay valid until the next Read, and
//     the Forwarder gives every slot its own buffer back before each Read.
//   - Write sends each pkts[i].Bytes() to pkts[i].Addr. It returns how many were sent and
//     the first error; a packet the kernel refuses (EMSGSIZE, ENETUNREACH, ...) is skipped
//     and the rest of the batch is still sent. It may block while the send buffer is full.
//     It may overwrite Buf[:Off] (packets from a Device have Headroom bytes there).
//   - BatchSize is the largest useful len(pkts) for Read and Write.
//   - Read, Write and Close may be called concurrently with each other; concurrent calls of
//     the same method are allowed and serialised.
//   - Close is idempotent. It makes blocked and later Reads and Writes return an error
//     that wraps net.ErrClosed.
type Conn interface {
	Read(pkts []Packet) (n int, err error)
	Write(pkts []Packet) (n int, err error)
	BatchSize() int
	Close() error
}
