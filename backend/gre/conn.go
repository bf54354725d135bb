package gre

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/dgram"
)

// errNoHeadroom: a packet handed to Write has less than headerLen bytes before it. The
// Forwarder always leaves fastpath.Headroom (32) bytes, so this is a caller bug.
var errNoHeadroom = errors.New("gre: packet has no headroom for the GRE header")

// conn is the underlay side of userspace GRE: a fastpath.Conn over a raw IPv4 socket for
// IP protocol 47, bound to the external interface's address, or in an IPv6-only network
// a raw IPv6 socket bound to its IPv6 address. It moves many datagrams per system call
// through dgram.Conn (recvmmsg/sendmmsg).
//
//   - Read: the kernel hands a raw IPv4 IPPROTO_GRE socket the whole datagram, outer IPv4
//     header included, and a raw IPv6 socket only what follows the IPv6 header (and its
//     extension headers). Read advances each packet's Off past the outer IPv4 header
//     (IHL; none on IPv6) and the 4-byte GRE header, so the Forwarder sees the inner IPv4
//     or IPv6 packet; Addr is the outer source with port 0. A datagram that is not plain
//     GRE carrying IPv4 or IPv6 (flags, version, protocol type, or an inner packet of the
//     other IP version) gets Len 0, which the Forwarder counts as malformed (or as
//     not-peer when the sender is no peer), so nothing is allocated or logged per packet.
//   - Write: writes the GRE header (protocol type 0x0800 or 0x86DD by the packet's IP
//     version) into the 4 bytes before each packet (its headroom),
//     sends header and packet to Addr (the kernel adds the outer IPv4 header: source the
//     bound address, protocol 47, TTL 64, DF; or the outer IPv6 header: next header 47,
//     hop limit 64), then restores Off and Len.
//
// A raw socket receives every GRE datagram addressed to the bound address, from anyone;
// the Forwarder's anti-spoofing checks decide what is a peer's. It needs CAP_NET_RAW.
type conn struct {
	sock  *dgram.Conn
	outer bool // datagrams start with the outer IPv4 header (an IPv4 socket)
}

var _ fastpath.Conn = (*conn)(nil)

// listenGRE opens the raw GRE socket on local, in the network namespace of the calling
// thread: an IPv4 socket for an IPv4 local address, an IPv6 one for an IPv6 address.
func listenGRE(local netip.Addr, batch int, log klog.Logger) (*conn, error) {
	network := "ip4"
	if local.Is6() && !local.Is4In6() {
		network = "ip6"
	} else if !local.Is4() {
		return nil, fmt.Errorf("gre backend: tunnel source %v is not an IPv4 or IPv6 address", local)
	}
	pc, err := net.ListenIP(fmt.Sprintf("%s:%d", network, ipProtoGRE), &net.IPAddr{IP: local.AsSlice()})
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("gre backend: open a raw %s socket for protocol 47 on %s (needs CAP_NET_RAW): %w", network, local, err)
		}
		return nil, fmt.Errorf("gre backend: open a raw %s socket for protocol 47 on %s: %w", network, local, err)
	}
	setSocketBuffers(pc, log)
	sc, err := dgram.New(pc, batch)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("gre backend: %w", err)
	}
	return &conn{sock: sc, outer: network == "ip4"}, nil
}

// BatchSize implements fastpath.Conn.
func (c *conn) BatchSize() int { return c.sock.BatchSize() }

// Offloads says what forward.Forwarder.Offloads reports for the socket: a raw IP socket
// has neither GSO nor GRO, so every GRE packet is one send and one receive in the kernel.
func (c *conn) Offloads() string { return "none (raw IP socket)" }

// Close implements fastpath.Conn.
func (c *conn) Close() error { return c.sock.Close() }

// Read implements fastpath.Conn: it strips the outer IPv4 (if any) and GRE headers in
// place.
func (c *conn) Read(pkts []fastpath.Packet) (int, error) {
	n, err := c.sock.Read(pkts)
	for i := range pkts[:n] {
		stripHeaders(&pkts[i], c.outer)
	}
	return n, err
}

// stripHeaders advances p past the outer IPv4 header (when outer: an IPv4 socket's
// datagram) and the GRE header, or sets its Len to 0 when the datagram is not plain GRE
// carrying IPv4 or IPv6.
func stripHeaders(p *fastpath.Packet, outer bool) {
	decode := decodeGRE
	if outer {
		decode = decodeDatagram
	}
	off, werr := decode(p.Bytes())
	if werr != wireOK {
		p.Len = 0
		return
	}
	p.Off += off
	p.Len -= off
}

// Write implements fastpath.Conn: it prepends the GRE header in each packet's headroom.
// A packet without headerLen bytes of headroom is skipped (and reported with
// errNoHeadroom); the others are still sent.
func (c *conn) Write(pkts []fastpath.Packet) (int, error) {
	sent := 0
	var first error
	for start := 0; start < len(pkts); {
		end := start
		for end < len(pkts) && pkts[end].Off >= headerLen {
			end++
		}
		if end > start {
			n, err := c.writeRun(pkts[start:end])
			sent += n
			if err != nil && first == nil {
				first = err
			}
			if errors.Is(err, net.ErrClosed) {
				return sent, err
			}
		}
		if end < len(pkts) {
			if first == nil {
				first = errNoHeadroom
			}
			end++ // skip the packet without headroom
		}
		start = end
	}
	return sent, first
}

// writeRun sends packets that all have headroom for the GRE header.
func (c *conn) writeRun(pkts []fastpath.Packet) (int, error) {
	for i := range pkts {
		p := &pkts[i]
		proto := protoOf(p.Bytes())
		p.Off -= headerLen
		p.Len += headerLen
		putHeader(p.Buf[p.Off:], proto)
	}
	n, err := c.sock.Write(pkts)
	for i := range pkts {
		p := &pkts[i]
		p.Off += headerLen
		p.Len -= headerLen
	}
	return n, err
}

// setSocketBuffers enlarges the socket's buffers (dgram.EnlargeBuffers); a failure
// is logged only.
func setSocketBuffers(sock *net.IPConn, log klog.Logger) {
	if err := dgram.EnlargeBuffers(sock); err != nil {
		log.Info("Could not enlarge the raw GRE socket buffers", "err", err)
	}
}
