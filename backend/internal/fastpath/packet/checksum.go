package packet

import (
	"encoding/binary"
	"math/bits"
)

// The Internet checksum (RFC 1071) on the hot path. TCP segmentation and coalescing sum
// every payload byte once, so the sum runs 64 bytes per iteration: over 64-bit words in
// Go, or over 256-bit vectors where the CPU has them (checksum_amd64.s). It adds
// little-endian words: the ones' complement sum is byte order independent (RFC 1071,
// section 2(B)), so the folded little-endian sum, byte swapped, is the big-endian sum.
// Carries out of a 64-bit add are worth 1 (2^64 = 1 modulo 2^16-1) and are added back.

// sumBytes returns the ones' complement sum of b's 16-bit big-endian words (an odd last
// byte padded with zero), folded to 16 bits, not complemented. Where the CPU has a vector
// sum (sumVector, amd64 with AVX2), it takes the whole 64-byte blocks of a long b and
// sumWords the rest.
func sumBytes(b []byte) uint16 {
	var s uint64
	if useVector && len(b) >= vectorMinLen {
		for len(b) >= 64 {
			n := min(len(b)&^63, vectorMaxLen)
			v, c := bits.Add64(s, sumVector(b[:n]), 0)
			s = v + c // cannot carry again: a carry leaves v at most 2^64-2
			b = b[n:]
		}
	}
	t, c := bits.Add64(sumWords(b), s, 0)
	t += c
	return bits.ReverseBytes16(fold64(t))
}

// sumWords returns the ones' complement sum of b's little-endian 16-bit words (an odd
// last byte padded with zero) in a 64-bit accumulator with end-around carries; fold64
// folds it. Two accumulators each add without carry-in and count their carries apart,
// so the additions do not wait on one carry flag: about five times the speed of a single
// ADC chain.
func sumWords(b []byte) uint64 {
	var s0, s1, c0, c1, c uint64
	for len(b) >= 64 {
		s0, c = bits.Add64(s0, binary.LittleEndian.Uint64(b), 0)
		c0 += c
		s1, c = bits.Add64(s1, binary.LittleEndian.Uint64(b[8:]), 0)
		c1 += c
		s0, c = bits.Add64(s0, binary.LittleEndian.Uint64(b[16:]), 0)
		c0 += c
		s1, c = bits.Add64(s1, binary.LittleEndian.Uint64(b[24:]), 0)
		c1 += c
		s0, c = bits.Add64(s0, binary.LittleEndian.Uint64(b[32:]), 0)
		c0 += c
		s1, c = bits.Add64(s1, binary.LittleEndian.Uint64(b[40:]), 0)
		c1 += c
		s0, c = bits.Add64(s0, binary.LittleEndian.Uint64(b[48:]), 0)
		c0 += c
		s1, c = bits.Add64(s1, binary.LittleEndian.Uint64(b[56:]), 0)
		c1 += c
		b = b[64:]
	}
	for len(b) >= 16 {
		s0, c = bits.Add64(s0, binary.LittleEndian.Uint64(b), 0)
		c0 += c
		s1, c = bits.Add64(s1, binary.LittleEndian.Uint64(b[8:]), 0)
		c1 += c
		b = b[16:]
	}
	s, c := bits.Add64(s0, s1, 0)
	cs := c0 + c1 + c // each counts at most one carry per 8 bytes: no overflow
	if len(b) >= 8 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), 0)
		cs += c
		b = b[8:]
	}
	var t uint64 // the last 0..7 bytes, at most 0xffffffff+0xffff+0xff
	if len(b) >= 4 {
		t += uint64(binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		t += uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		t += uint64(b[0])
	}
	s, c = bits.Add64(s, t, 0)
	cs += c
	s, c = bits.Add64(s, cs, 0)
	return s + c // cannot carry again: s is at most 2^64-2 when c is 1
}

// fold64 folds a 64-bit ones' complement accumulator to 16 bits with end-around carries.
func fold64(s uint64) uint16 {
	s = (s & 0xffffffff) + (s >> 32)
	s = (s & 0xffffffff) + (s >> 32)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return uint16(s)
}

// checksum returns the Internet checksum of b with initial added to the sum: the ones'
// complement of the ones' complement sum of b's 16-bit big-endian words, an odd last
// byte padded with zero. Over a header that holds its own correct checksum, the result is
// 0.
func checksum(b []byte, initial uint32) uint16 {
	if len(b) == ipv4HeaderLen {
		// An IPv4 header without options, summed for every packet: five 32-bit words in
		// straight-line code (their sum, folded, is the sum of the ten 16-bit words).
		s := uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:])) +
			uint64(binary.BigEndian.Uint32(b[8:])) + uint64(binary.BigEndian.Uint32(b[12:])) +
			uint64(binary.BigEndian.Uint32(b[16:]))
		return ^fold64(s + uint64(initial))
	}
	return ^fold64(uint64(sumBytes(b)) + uint64(initial))
}

// pseudoSum returns the folded, uncomplemented sum of the IPv4 pseudo header of a
// transport segment of length l: source and destination address (the 8 bytes at
// ip[12:20]), protocol and length.
func pseudoSum(ip []byte, proto uint8, l int) uint32 {
	_ = ip[19]
	s := uint64(binary.BigEndian.Uint16(ip[12:])) + uint64(binary.BigEndian.Uint16(ip[14:])) +
		uint64(binary.BigEndian.Uint16(ip[16:])) + uint64(binary.BigEndian.Uint16(ip[18:])) +
		uint64(proto) + uint64(l)
	return uint32(fold64(s))
}

// pseudoSum6 returns the folded, uncomplemented sum of the IPv6 pseudo header (RFC 8200,
// section 8.1) of a transport segment of length l: source and destination address (the
// 32 bytes at ip[8:40]), upper-layer length and next header.
func pseudoSum6(ip []byte, proto uint8, l int) uint32 {
	_ = ip[39]
	var s uint64
	for i := offSrc6; i < IPv6HeaderLen; i += 4 {
		s += uint64(binary.BigEndian.Uint32(ip[i:]))
	}
	return uint32(fold64(s + uint64(proto) + uint64(l)))
}
