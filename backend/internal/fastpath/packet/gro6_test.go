package packet

import (
	"encoding/binary"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// segments6 returns n consecutive IPv6 segments of mss bytes of one flow (fd00::2:3 to
// fd00::1:2), each changed by mod (if not nil), with correct TCP checksums.
func segments6(n, mss int, mod func(i int, b []byte)) [][]byte {
	out := make([][]byte, n)
	for i, v4 := range segments(n, mss, nil) {
		out[i] = tcp6(v4, "fd00::2:3", "fd00::1:2")
		if mod != nil {
			mod(i, out[i])
		}
		// The TCP checksum covers the IPv6 pseudo header.
		t := out[i][IPv6HeaderLen:]
		t[tcpOffCsum], t[tcpOffCsum+1] = 0, 0
		binary.BigEndian.PutUint16(t[tcpOffCsum:], checksum(t, pseudoSum6(out[i], protoTCP, len(t))))
	}
	return out
}

// TestGROCoalescesIPv6: consecutive IPv6 segments of one flow are written as one TCPv6
// superpacket: payload length of the whole, the segments' payloads in order, a partial
// checksum that completes to a correct one, and the virtio-net header the kernel expects.
func TestGROCoalescesIPv6(t *testing.T) {
	const mss = 1200
	segs := segments6(10, mss, nil)
	for _, s := range segs {
		if !refTCP6Valid(s) {
			t.Fatal("test segment with a wrong checksum")
		}
	}
	ws := planWrites(t, segs)
	if len(ws) != 1 {
		t.Fatalf("%d writes, want 1", len(ws))
	}
	w := ws[0]
	thl := packettest.THL(segments(1, mss, nil)[0])
	want := VirtioHdr{Flags: VnetNeedsCsum, GSOType: GSOTCPv6, HdrLen: uint16(IPv6HeaderLen + thl),
		GSOSize: mss, CsumStart: IPv6HeaderLen, CsumOffset: 16}
	if w.hdr != want || w.pkts != len(segs) {
		t.Fatalf("virtio-net header %+v for %d packets, want %+v for %d", w.hdr, w.pkts, want, len(segs))
	}
	b := w.data
	if pl := int(binary.BigEndian.Uint16(b[offPayloadLen:])); pl != len(b)-IPv6HeaderLen {
		t.Fatalf("payload length %d, superpacket is %d", pl, len(b))
	}
	mustEqualBytes(t, "IPv6 header but the payload length", append(b[:4:4], b[6:IPv6HeaderLen]...),
		append(segs[0][:4:4], segs[0][6:IPv6HeaderLen]...))
	var payload []byte
	for _, s := range segs {
		payload = append(payload, s[IPv6HeaderLen+thl:]...)
	}
	mustEqualBytes(t, "payload", b[IPv6HeaderLen+thl:], payload)
	if !CompleteChecksum(b, IPv6HeaderLen, tcpOffCsum) || !refTCP6Valid(b) {
		t.Fatal("the partial checksum does not complete to a correct one")
	}
}

// TestGROIPv6KeepsApart: IPv6 segments that the kernel's GRO would not merge are not
// merged, and an IPv4 flow with the same ports is another flow.
func TestGROIPv6KeepsApart(t *testing.T) {
	for name, c := range map[string]struct {
		mod    func(i int, b []byte)
		writes int
	}{
		"flow label changes":    {func(i int, b []byte) { b[3] = byte(i / 2) }, 2},
		"traffic class changes": {func(i int, b []byte) { b[1] = byte(i/2) << 4 }, 2},
		"hop limit changes":     {func(i int, b []byte) { b[offHopLimit] = 64 - byte(i/2) }, 2},
		"extension header":      {func(i int, b []byte) { b[offNextHeader] = 0 }, 4},
	} {
		t.Run(name, func(t *testing.T) {
			if ws := planWrites(t, segments6(4, 1000, c.mod)); len(ws) != c.writes {
				t.Errorf("%d writes, want %d", len(ws), c.writes)
			}
		})
	}
	t.Run("IPv4 and IPv6 interleaved", func(t *testing.T) {
		v4, v6 := segments(4, 1000, nil), segments6(4, 1000, nil)
		var mixed [][]byte
		for i := range v4 {
			mixed = append(mixed, v4[i], v6[i])
		}
		ws := planWrites(t, mixed)
		if len(ws) != 2 || ws[0].hdr.GSOType != GSOTCPv4 || ws[1].hdr.GSOType != GSOTCPv6 || ws[0].pkts != 4 || ws[1].pkts != 4 {
			for _, w := range ws {
				t.Logf("write: GSO type %d, %d packets", w.hdr.GSOType, w.pkts)
			}
			t.Fatalf("%d writes, want a TCPv4 and a TCPv6 superpacket of 4 each", len(ws))
		}
	})
	t.Run("corrupted segment", func(t *testing.T) {
		segs := segments6(4, 1000, nil)
		segs[2][len(segs[2])-1] ^= 0xff
		if ws := planWrites(t, segs); len(ws) != 3 || ws[1].pkts != 1 {
			t.Fatalf("%d writes, want the two good ones merged, the bad one alone, the last alone", len(ws))
		}
	})
}
