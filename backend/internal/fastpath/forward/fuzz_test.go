package forward

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packet"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// The fuzz targets feed arbitrary bytes to the decoders that see untrusted input. Seeds
// live in testdata/fuzz/<Target>; run one with e.g.
//
//	go test -fuzz=FuzzFromConn -fuzztime=30s ./backend/internal/fastpath/forward/

// fuzzSenders are the senders FuzzFromConn picks from: two peers, a non-peer, a wrong port.
var fuzzSenders = [...]string{"192.0.2.2:8285", "192.0.2.3:8285", "192.0.2.9:8285", "192.0.2.2:1"}

func FuzzFromConn(f *testing.F) {
	f.Add(packettest.UDP("10.244.2.3", "10.244.1.2", 63, "seed").Build(), uint8(0), false)
	f.Add(packettest.UDP("10.244.2.3", "10.244.1.2", 1, "ttl").Build(), uint8(0), false)
	f.Add(packettest.UDP("10.244.3.3", "10.244.1.2", 63, "spoof").Build(), uint8(0), false)
	fw := testForwarder(f)
	tab := testPeers(f)
	f.Fuzz(func(t *testing.T, b []byte, sender uint8, fix bool) {
		if len(b) > fastpath.MaxPacket {
			return
		}
		if fix {
			packettest.FixHeaderChecksum(b)
		}
		from := ap(fuzzSenders[int(sender)%len(fuzzSenders)])
		p := packetOf(b, from)
		icmp := make([]byte, packet.ICMPMaxLen)
		r, n := fw.fromConn(tab, &p, icmp)
		switch r {
		case fastpath.DropNone:
			out := p.Bytes()
			h, pr := packet.ParseIPv4(out)
			if pr != fastpath.DropNone || h.Total != len(out) || !packettest.HeaderValid(out) {
				t.Fatalf("forwarded a packet that does not parse: %v", pr)
			}
			if h.TTL != b[8]-1 || b[8] < 2 {
				t.Fatalf("TTL %d -> %d", b[8], h.TTL)
			}
			peer, ok := tab.Lookup(packettest.AddrOf(h.Src))
			if !ok || peer.Endpoint != from {
				t.Fatalf("forwarded inner source %v not behind sender %s", packettest.AddrOf(h.Src), from)
			}
			if !netip.MustParsePrefix("10.244.1.0/24").Contains(packettest.AddrOf(h.Dst)) {
				t.Fatalf("forwarded inner destination %v outside own subnet", packettest.AddrOf(h.Dst))
			}
		case fastpath.DropTTLExceeded:
			if n > 0 {
				checkICMPErrorFuzz(t, icmp[:n], b)
			}
		default:
			if n != 0 {
				t.Fatalf("ICMP error for drop reason %v", r)
			}
		}
	})
}

func FuzzFromDevice(f *testing.F) {
	f.Add(packettest.UDP("10.244.1.2", "10.244.2.3", 64, "seed").Build(), false)
	f.Add(packettest.UDP("10.244.1.2", "10.244.9.3", 64, "no route").Build(), false)
	f.Add(packettest.UDP("10.244.1.2", "10.244.2.3", 1, "ttl").Build(), false)
	fw := testForwarder(f)
	tab := testPeers(f)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if len(b) > fastpath.MaxPacket {
			return
		}
		if fix {
			packettest.FixHeaderChecksum(b)
		}
		p := packetOf(b, netip.AddrPort{})
		icmp := make([]byte, packet.ICMPMaxLen)
		r, n := fw.fromDevice(tab, &p, icmp)
		switch r {
		case fastpath.DropNone:
			out := p.Bytes()
			h, pr := packet.ParseIPv4(out)
			if pr != fastpath.DropNone || h.Total != len(out) || !packettest.HeaderValid(out) || h.TTL != b[8]-1 {
				t.Fatalf("forwarded a bad packet: %v", pr)
			}
			if peer, ok := tab.Lookup(packettest.AddrOf(h.Dst)); !ok || peer.Endpoint != p.Addr {
				t.Fatalf("sent to %s, not the holder of %v", p.Addr, packettest.AddrOf(h.Dst))
			}
		case fastpath.DropNoRoute, fastpath.DropTTLExceeded:
			if n > 0 {
				checkICMPErrorFuzz(t, icmp[:n], b)
			}
		default:
			if n != 0 {
				t.Fatalf("ICMP error for drop reason %v", r)
			}
		}
	})
}

// checkICMPErrorFuzz verifies a generated error: valid checksums, from 10.244.1.0 to the
// offender's source, quoting its start, never about an ICMP error.
func checkICMPErrorFuzz(t *testing.T, msg, orig []byte) {
	t.Helper()
	h, r := packet.ParseIPv4(msg)
	if r != fastpath.DropNone || h.Total != len(msg) || len(msg) > packet.ICMPMaxLen || packettest.RefChecksum(msg[20:]) != 0 {
		t.Fatalf("bad ICMP error (%v): % x", r, msg)
	}
	if h.Src != packettest.Addr4("10.244.1.0") || h.Dst != binary.BigEndian.Uint32(orig[12:]) {
		t.Fatalf("ICMP error from %v to %v", packettest.AddrOf(h.Src), packettest.AddrOf(h.Dst))
	}
	if !bytes.HasPrefix(orig, msg[28:]) {
		t.Fatal("ICMP error does not quote the offender")
	}
	if oh, _ := packet.ParseIPv4(orig); oh.Proto == packettest.ProtoICMP && packettest.IsICMPError(orig[oh.HLen]) {
		t.Fatal("ICMP error about an ICMP error")
	}
}
