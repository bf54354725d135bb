package packettest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// icmpMaxLen bounds an ICMP error: RFC 1812 4.3.2.3 quotes as much of the offending
// packet as fits in 576 bytes.
const icmpMaxLen = 576

// CheckICMPError says what is wrong with msg as the ICMP error of type typ and code that
// a router sends from src to dst about the packet orig, or nil: an IPv4 header without
// options and with a correct checksum, TTL 64, not a fragment; a correct ICMP checksum;
// the type, the code and 4 unused bytes of zero; then orig, quoted up to 576 bytes in
// all. It reads msg byte by byte, apart from the code that built it.
func CheckICMPError(msg, orig []byte, src, dst string, typ, code uint8) error {
	if len(msg) < 28 || msg[0] != 0x45 || int(binary.BigEndian.Uint16(msg[2:])) != len(msg) {
		return fmt.Errorf("ICMP error is not an IPv4 packet of its length without options: % x", msg[:min(len(msg), 20)])
	}
	if len(msg) > icmpMaxLen {
		return fmt.Errorf("ICMP error of %d bytes exceeds %d", len(msg), icmpMaxLen)
	}
	if !HeaderValid(msg) {
		return errors.New("ICMP error header checksum wrong")
	}
	if msg[9] != ProtoICMP || msg[8] != 64 || binary.BigEndian.Uint16(msg[6:])&0x1fff != 0 ||
		binary.BigEndian.Uint32(msg[12:]) != Addr4(src) || binary.BigEndian.Uint32(msg[16:]) != Addr4(dst) {
		return fmt.Errorf("ICMP error header wrong: % x, want protocol 1, TTL 64, from %s to %s", msg[:20], src, dst)
	}
	m := msg[20:]
	if RefChecksum(m) != 0 {
		return errors.New("ICMP checksum wrong")
	}
	if m[0] != typ || m[1] != code || binary.BigEndian.Uint32(m[4:]) != 0 {
		return fmt.Errorf("ICMP header % x, want type %d code %d", m[:8], typ, code)
	}
	wantQuote := orig[:min(len(orig), icmpMaxLen-28)]
	if !bytes.Equal(m[8:], wantQuote) {
		return fmt.Errorf("quoted packet differs: got %d bytes, want %d", len(m[8:]), len(wantQuote))
	}
	return nil
}
