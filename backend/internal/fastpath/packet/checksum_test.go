package packet

import (
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// TestSumBytesMatchesReference checks the word-at-a-time sum against refChecksum for
// every length up to 300 bytes and some large ones, at every alignment, over random data
// and over all-0xff data (the carry-heavy case).
func TestSumBytesMatchesReference(t *testing.T) {
	forEachSum(t, testSumBytesMatchesReference)
}

// forEachSum runs test with the vector sum on (where the CPU has one) and off.
func forEachSum(t *testing.T, test func(*testing.T)) {
	t.Helper()
	saved := useVector
	t.Cleanup(func() { useVector = saved })
	for _, vector := range []bool{true, false} {
		if vector && !saved {
			continue // no vector sum on this CPU: sumBytes never calls it
		}
		useVector = vector
		t.Run(map[bool]string{true: "vector", false: "words"}[vector], test)
	}
}

func testSumBytesMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{511, 512, 513, 1000, 1452, 4095, 65535, 65536}
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
				want := packettest.RefChecksum(b)
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

// TestSumVectorCarries feeds the vector sum the inputs that fill its lanes fastest
// (all 0xff) at its largest length, and at the length where sumBytes splits a call, and
// compares with the word sum.
func TestSumVectorCarries(t *testing.T) {
	if !useVector {
		t.Skip("this CPU has no vector sum (AVX2 on amd64): sumBytes uses the word sum only")
	}
	for _, l := range []int{64, 128, vectorMaxLen, vectorMaxLen + 64, 2*vectorMaxLen + 130} {
		b := make([]byte, l)
		for i := range b {
			b[i] = 0xff
		}
		if got, want := sumBytes(b), bits.ReverseBytes16(fold64(sumWords(b))); got != want {
			t.Errorf("%d bytes of 0xff: vector %#04x, words %#04x", l, got, want)
		}
		n := min(l&^63, vectorMaxLen)
		if got, want := fold64(sumVector(b[:n])), fold64(sumWords(b[:n])); got != want {
			t.Errorf("sumVector of %d bytes of 0xff: %#04x, words %#04x", n, got, want)
		}
	}
}

// FuzzSumBytes checks sumBytes (the vector sum where there is one) and checksum (with its
// IPv4 header case) against the word sum on any input at any alignment.
func FuzzSumBytes(f *testing.F) {
	f.Add(make([]byte, 300), uint8(0))
	f.Add([]byte{0xff, 0xff, 0x01}, uint8(3))
	f.Add([]byte("\x45\x00\x00\x54\x12\x34\x40\x00\x40\x01\x00\x00\x0a\xf4\x01\x02\x0a\xf4\x02\x02"), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, skip uint8) {
		b = b[min(int(skip)%8, len(b)):]
		want := bits.ReverseBytes16(fold64(sumWords(b)))
		if got := sumBytes(b); got != want {
			t.Fatalf("%d bytes: sumBytes %#04x, words %#04x", len(b), got, want)
		}
		if got := checksum(b, 0); got != ^want {
			t.Fatalf("%d bytes: checksum %#04x, complemented word sum %#04x", len(b), got, ^want)
		}
	})
}

func BenchmarkChecksum1452(b *testing.B) {
	buf := make([]byte, 1452)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		checksum(buf, 0)
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
