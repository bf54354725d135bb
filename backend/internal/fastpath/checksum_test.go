package fastpath

import (
	"math/rand/v2"
	"testing"
)

// TestSumBytesMatchesReference checks the word-at-a-time sum against refChecksum for
// every length up to 300 bytes and some large ones, at every alignment, over random data
// and over all-0xff data (the carry-heavy case).
func TestSumBytesMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{1000, 1452, 4095, 65535, 65536}
	for l := 0; l <= 300; l++ {
		lengths = append(lengths, l)
	}
	for _, fill := range []string{"random", "ones"} {
		for _, l := range lengths {
			buf := make([]byte, l+8)
			for i := range buf {
				if fill == "ones" {
					buf[i] = 0xff
				} else {
					buf[i] = byte(rng.Uint32())
				}
			}
			for align := 0; align < 8; align++ {
				b := buf[align : align+l]
				want := refChecksum(b)
				if got := checksum(b, 0); got != want && !(got == 0 && want == 0xffff) && !(got == 0xffff && want == 0) {
					t.Fatalf("%s, length %d, offset %d: checksum %#04x, reference %#04x", fill, l, align, got, want)
				}
			}
		}
	}
}

// TestChecksumInitial checks that an initial sum is folded in like a leading word.
func TestChecksumInitial(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		b := make([]byte, rng.IntN(100)*2)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		init := uint16(rng.Uint32())
		withWord := append([]byte{byte(init >> 8), byte(init)}, b...)
		if got, want := checksum(b, uint32(init)), checksum(withWord, 0); got != want {
			t.Fatalf("initial %#04x: %#04x, want %#04x", init, got, want)
		}
	}
}

func BenchmarkChecksum64K(b *testing.B) {
	buf := make([]byte, 65536)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		checksum(buf, 0)
	}
}
