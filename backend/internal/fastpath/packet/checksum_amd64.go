package packet

import "golang.org/x/sys/cpu"

// useVector says whether sumBytes may call sumVector: the AVX2 sum in checksum_amd64.s.
var useVector = cpu.X86.HasAVX2

// vectorMinLen is the shortest input sumBytes hands to sumVector: below it, setting up
// and reducing the vector registers costs more than the words it saves.
const vectorMinLen = 256

// vectorMaxLen is the most bytes one sumVector call takes: its 32-bit lanes take at
// most 0xffff per 64 bytes, so a little over 4 MiB could overflow them; 1 MiB keeps a
// wide margin.
const vectorMaxLen = 1 << 20

// sumVector returns the sum of b's little-endian 16-bit words as a plain 64-bit integer
// (at most 2^37, no carries lost). len(b) must be a positive multiple of 64, at most
// vectorMaxLen; the CPU must have AVX2.
//
//go:noescape
func sumVector(b []byte) uint64
