package packet

import "encoding/binary"

// The virtio-net header a TUN opened with IFF_VNET_HDR puts before every packet it hands
// out and expects before every packet written to it (include/uapi/linux/virtio_net.h,
// struct virtio_net_hdr: 10 bytes, fields in the host's byte order for a legacy header).
const VirtioHdrLen = 10

// Virtio-net header flags and GSO types the fast path reads and writes.
const (
	VnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum at CsumStart+CsumOffset is partial
	VnetDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: the checksum was verified

	GSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN: the segments carry ECN (CWR on the first only)
)

// VirtioHdr is a decoded virtio-net header.
type VirtioHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // length of the headers to repeat in front of every segment
	GSOSize    uint16 // payload bytes per segment (the MSS)
	CsumStart  uint16 // where the checksummed part starts (the transport header)
	CsumOffset uint16 // where, from CsumStart, the checksum field lies
}

// DecodeVirtioHdr decodes the header at the start of b. It reports false when b is
// shorter than a header; it checks nothing else (see TSOSplitter and CompleteChecksum).
func DecodeVirtioHdr(b []byte) (VirtioHdr, bool) {
	if len(b) < VirtioHdrLen {
		return VirtioHdr{}, false
	}
	e := binary.NativeEndian
	return VirtioHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     e.Uint16(b[2:]),
		GSOSize:    e.Uint16(b[4:]),
		CsumStart:  e.Uint16(b[6:]),
		CsumOffset: e.Uint16(b[8:]),
	}, true
}

// Encode writes h into b[:VirtioHdrLen].
func (h VirtioHdr) Encode(b []byte) {
	_ = b[VirtioHdrLen-1]
	e := binary.NativeEndian
	b[0], b[1] = h.Flags, h.GSOType
	e.PutUint16(b[2:], h.HdrLen)
	e.PutUint16(b[4:], h.GSOSize)
	e.PutUint16(b[6:], h.CsumStart)
	e.PutUint16(b[8:], h.CsumOffset)
}
