package forward

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// testPeers is the peer table the decision tests use: two peers, the second holding two
// subnets.
func testPeers(t testing.TB) *PeerTable {
	t.Helper()
	tab, err := NewPeerTable([]Peer{
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Endpoint: ap("192.0.2.2:8285")},
		{Subnet: netip.MustParsePrefix("10.244.3.0/24"), Endpoint: ap("192.0.2.3:8285")},
		{Subnet: netip.MustParsePrefix("10.244.4.0/24"), Endpoint: ap("192.0.2.3:8285")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// nullDevice and nullConn satisfy the interfaces for Forwarders whose loops never run.
type nullIO struct{}

func (nullIO) Read([]fastpath.Packet) (int, error)  { return 0, nil }
func (nullIO) Write([]fastpath.Packet) (int, error) { return 0, nil }
func (nullIO) BatchSize() int                       { return 64 }
func (nullIO) Close() error                         { return nil }

// testForwarder returns a Forwarder for node 10.244.1.0/24 that is never run.
func testForwarder(t testing.TB) *Forwarder {
	t.Helper()
	f, err := New(Config{Subnet: netip.MustParsePrefix("10.244.1.0/24"), MTU: 1472}, nullIO{}, nullIO{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// packetOf returns a slot holding b, as a loop would present it.
func packetOf(b []byte, from netip.AddrPort) fastpath.Packet {
	buf := make([]byte, fastpath.Headroom+fastpath.MaxPacket)
	n := copy(buf[fastpath.Headroom:], b)
	return fastpath.Packet{Buf: buf, Off: fastpath.Headroom, Len: n, Addr: from}
}
