package packet

import "encoding/binary"

// TCP header layout and the IPv4 fields the offloads touch.
const (
	protoTCP = 6
	protoUDP = 17

	offID = 4 // IPv4 identification

	tcpMinHeader = 20
	tcpOffSeq    = 4
	tcpOffAck    = 8
	tcpOffDoff   = 12 // data offset (high nibble), reserved bits, AE
	tcpOffFlags  = 13
	tcpOffCsum   = 16

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80

	ipFlagDF = 0x4000
	ipFlagMF = 0x2000
	fragMask = 0x1fff // fragment offset bits of the flags/offset field
)

// setIPv4Checksum recomputes the header checksum of the IPv4 header at b[:hlen].
func setIPv4Checksum(b []byte, hlen int) {
	b[offChecksum], b[offChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(b[offChecksum:], checksum(b[:hlen], 0))
}

// tcpChecksumValid reports whether the TCP segment in the IPv4 packet b, whose header is
// hlen bytes long and which is exactly len(b) long, carries a correct checksum.
func tcpChecksumValid(b []byte, hlen int) bool {
	return checksum(b[hlen:], pseudoSum(b, protoTCP, len(b)-hlen)) == 0
}
