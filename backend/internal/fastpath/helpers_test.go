package fastpath

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// refChecksum is an independent Internet checksum: 16-bit words summed in a wide integer,
// reduced modulo 0xffff the way RFC 1071 describes it arithmetically (the ones' complement
// sum is the sum modulo 2^16-1, with 0xffff standing for a non-zero multiple), then
// complemented.
func refChecksum(b []byte) uint16 {
	var sum uint64
	for i := 0; i < len(b); i += 2 {
		w := uint64(b[i]) << 8
		if i+1 < len(b) {
			w |= uint64(b[i+1])
		}
		sum += w
	}
	if sum == 0 {
		return 0xffff
	}
	folded := sum % 0xffff
	if folded == 0 {
		folded = 0xffff
	}
	return ^uint16(folded)
}

// pkt describes a test IPv4 packet.
type pkt struct {
	src, dst string
	ttl      uint8
	proto    uint8
	frag     uint16 // flags and fragment offset field
	options  int    // bytes of options (multiple of 4)
	payload  []byte
	fix      func([]byte) // applied after the checksum, to break the packet
}

func (p pkt) post(fn func([]byte)) pkt {
	prev := p.fix
	p.fix = func(b []byte) {
		if prev != nil {
			prev(b)
		}
		fn(b)
	}
	return p
}

// build returns the packet with a correct header checksum.
func (p pkt) build() []byte {
	hlen := ipv4HeaderLen + p.options
	b := make([]byte, hlen+len(p.payload))
	b[0] = 0x40 | byte(hlen/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	binary.BigEndian.PutUint16(b[6:], p.frag)
	b[8] = p.ttl
	b[9] = p.proto
	s, d := netip.MustParseAddr(p.src).As4(), netip.MustParseAddr(p.dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 0; i < p.options; i++ {
		b[ipv4HeaderLen+i] = 1 // NOP options
	}
	copy(b[hlen:], p.payload)
	binary.BigEndian.PutUint16(b[10:], refChecksum(b[:hlen]))
	if p.fix != nil {
		p.fix(b)
	}
	return b
}

// udp returns a test packet carrying a UDP header and the given data.
func udp(src, dst string, ttl uint8, data string) pkt {
	payload := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(payload[0:], 40000)
	binary.BigEndian.PutUint16(payload[2:], 5001)
	binary.BigEndian.PutUint16(payload[4:], uint16(len(payload)))
	copy(payload[8:], data)
	return pkt{src: src, dst: dst, ttl: ttl, proto: 17, payload: payload}
}

// headerValid reports whether the IPv4 header at b has a correct checksum, by the
// reference computation.
func headerValid(b []byte) bool {
	hlen := int(b[0]&0x0f) * 4
	return refChecksum(b[:hlen]) == 0
}

func addr4(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.BigEndian.Uint32(a[:])
}

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

func (nullIO) Read([]Packet) (int, error)  { return 0, nil }
func (nullIO) Write([]Packet) (int, error) { return 0, nil }
func (nullIO) BatchSize() int              { return 64 }
func (nullIO) Close() error                { return nil }

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
func packetOf(b []byte, from netip.AddrPort) Packet {
	buf := make([]byte, Headroom+MaxPacket)
	n := copy(buf[Headroom:], b)
	return Packet{Buf: buf, Off: Headroom, Len: n, Addr: from}
}
