package forward

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packet"
)

// FuzzIPv6 feeds arbitrary bytes to both IPv6 decisions of a dual-stack Forwarder: a
// forwarded packet parses, has its hop limit lowered by one, and goes to (or comes from)
// the peer whose IPv6 subnet holds its destination (source); no ICMP error is written.
func FuzzIPv6(f *testing.F) {
	f.Add(udp6("fd00:0:0:1::2", "fd00:0:0:2::3", 64, "out"), uint8(0))
	f.Add(udp6("fd00:0:0:2::3", "fd00:0:0:1::2", 64, "in"), uint8(0))
	f.Add(udp6("fd00:0:1:5::3", "fd00:0:0:1::2", 2, "in"), uint8(1))
	fw, tab := testForwarder6(f), testPeers6(f)
	senders := [...]netip.AddrPort{ap("192.0.2.2:0"), ap("192.0.2.3:0"), ap("192.0.2.9:0")}
	own := netip.MustParsePrefix("fd00:0:0:1::/64")
	f.Fuzz(func(t *testing.T, b []byte, sender uint8) {
		if len(b) > fastpath.MaxPacket || len(b) == 0 {
			return
		}
		b[0] = 0x60 | b[0]&0x0f
		icmp := make([]byte, packet.ICMPMaxLen)
		for _, fromConn := range []bool{false, true} {
			from := senders[int(sender)%len(senders)]
			p := packetOf(b, from)
			var r fastpath.DropReason
			var n int
			if fromConn {
				r, n = fw.fromConn(tab, &p, icmp)
			} else {
				r, n = fw.fromDevice(tab, &p, icmp)
			}
			if n != 0 {
				t.Fatalf("ICMP error of %d bytes for an IPv6 packet (%v)", n, r)
			}
			if r != fastpath.DropNone {
				continue
			}
			out := p.Bytes()
			h, pr := packet.ParseIPv6(out)
			if pr != fastpath.DropNone || h.Total != len(out) || h.HopLimit != b[7]-1 || b[7] < 2 {
				t.Fatalf("forwarded %v, hop limit %d -> %d", pr, b[7], h.HopLimit)
			}
			src, dst := netip.AddrFrom16([16]byte(out[8:24])), netip.AddrFrom16([16]byte(out[24:40]))
			if fromConn {
				peer, ok := tab.Lookup(src)
				if !ok || peer.Endpoint != from || !own.Contains(dst) {
					t.Fatalf("accepted %s -> %s from %s", src, dst, from)
				}
			} else if peer, ok := tab.Lookup(dst); !ok || peer.Endpoint != p.Addr {
				t.Fatalf("sent %s to %s", dst, p.Addr)
			}
		}
	})
}

func TestIPv6DecisionsDoNotAllocate(t *testing.T) {
	fw, tab := testForwarder6(t), testPeers6(t)
	out, in := udp6("fd00:0:0:1::2", "fd00:0:0:2::3", 64, "out"), udp6("fd00:0:0:2::3", "fd00:0:0:1::2", 64, "in")
	p := packetOf(out, netip.AddrPort{})
	icmp := make([]byte, packet.ICMPMaxLen)
	from := ap("192.0.2.2:0")
	if n := testing.AllocsPerRun(1000, func() {
		p.Off, p.Len = fastpath.Headroom, copy(p.Buf[fastpath.Headroom:], out)
		if r, _ := fw.fromDevice(tab, &p, icmp); r != fastpath.DropNone {
			t.Fatal(r)
		}
		p.Off, p.Len, p.Addr = fastpath.Headroom, copy(p.Buf[fastpath.Headroom:], in), from
		if r, _ := fw.fromConn(tab, &p, icmp); r != fastpath.DropNone {
			t.Fatal(r)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per packet pair", n)
	}
}
