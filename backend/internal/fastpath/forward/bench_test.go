package forward

import (
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packet"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

func BenchmarkFromDevice(b *testing.B) {
	f := testForwarder(b)
	tab := testPeers(b)
	icmp := make([]byte, packet.ICMPMaxLen)
	run := perPacket(packettest.UDP("10.244.1.2", "10.244.3.3", 200, string(make([]byte, 1400))), ap("0.0.0.0:0"), func(p *fastpath.Packet) { f.fromDevice(tab, p, icmp) })
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

func BenchmarkFromConn(b *testing.B) {
	f := testForwarder(b)
	tab := testPeers(b)
	icmp := make([]byte, packet.ICMPMaxLen)
	run := perPacket(packettest.UDP("10.244.3.3", "10.244.1.2", 200, string(make([]byte, 1400))), ap("192.0.2.3:8285"), func(p *fastpath.Packet) { f.fromConn(tab, p, icmp) })
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}
