package dgram

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// maxGSOSegs is the most datagrams one UDP_SEGMENT send carries (the kernel's
// UDP_MAX_SEGMENTS was 64 before Linux 6.9).
const maxGSOSegs = 64

// maxUDPPayload is the largest UDP payload over IPv4, and so the most one UDP_SEGMENT
// send carries in total.
const maxUDPPayload = fastpath.MaxPacket - 20 - 8 // IPv4 header without options, UDP header

// maxGROMessages bounds the messages per recvmmsg with UDP GRO (each has a 64 KiB buffer).
const maxGROMessages = 32

// groBufSize is the size of a receive buffer when UDP_GRO may hand over a run of
// datagrams as one.
const groBufSize = fastpath.Headroom + fastpath.MaxPacket

// Options configure NewWith.
type Options struct {
	// Batch is the number of datagrams (messages, with GSO) per system call; 1 means
	// recvmsg(2) and sendmsg(2), one datagram each.
	Batch int
	// Offload asks for UDP generic segmentation and receive offload on a UDP socket:
	// Write sends runs of equal-sized datagrams to one peer as one message with
	// UDP_SEGMENT, and Read takes runs the kernel coalesced (UDP_GRO) and hands them out
	// one datagram per Packet. Each is used when the kernel accepts it; Offloads says
	// which. Ignored with Batch 1 and on other sockets (a raw GRE socket).
	Offload bool
	// Log receives the offload decision and a later fallback, once each.
	Log klog.Logger
}

// Conn is a fastpath.Conn over an IPv4 or IPv6 datagram socket (a *net.UDPConn or a raw
// IP socket). It only moves datagrams and their peers' addresses: what a datagram holds
// is the caller's (a raw IPv4 socket hands over the outer IPv4 header, a raw IPv6 socket
// does not).
// With a batch size above 1 it moves many datagrams per system call with recvmmsg(2) and
// sendmmsg(2); with 1 it uses recvmsg(2) and sendmsg(2), one datagram per call. It
// writes its own system calls because golang.org/x/net/ipv4's ReadBatch allocates a
// net.Addr per datagram. On a UDP socket it can use UDP GSO and GRO (Options);
// the wire format stays one inner packet per datagram either way.
type Conn struct {
	sock   io.Closer
	rc     syscall.RawConn
	family int // unix.AF_INET or unix.AF_INET6: the sockaddrs of every message
	batch  int
	log    klog.Logger
	closed atomic.Bool
	gro    bool        // UDP_GRO is on: Read uses its own buffers and splits runs
	gso    atomic.Bool // UDP_SEGMENT in use; cleared for good when the kernel refuses it
	gsoWas bool        // UDP_SEGMENT was accepted when the socket was set up
	desc   string      // the offload decision at setup, for Offloads

	rmu    sync.Mutex // serialises Read; guards r, rctl, rbufs, rdg, rd, rcount, roff and rpkts, rn, rerr
	r      mmsgBuf
	rmsgs  int        // messages per recvmmsg with GRO
	rctl   [][]byte   // per message: room for a UDP_GRO control message (gro only)
	rbufs  [][]byte   // per message: its receive buffer (gro only)
	rdg    []datagram // the datagrams of the last recvmmsg (gro only)
	rd     int        // next datagram of rdg to hand out
	rcount int        // datagrams in rdg
	roff   int        // offset in rdg[rd] of the next segment
	rpkts  []fastpath.Packet
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // serialises Write; guards w, wctl, wmsgs and wpkts, wi, wm, wmi, wn, wnogso, werr
	w       mmsgBuf
	wctl    [][]byte          // per message: a UDP_SEGMENT control message
	wmsgs   []wmsg            // per planned message: which packets it carries
	wpkts   []fastpath.Packet // the packets of the current Write
	wi      int               // first packet not yet planned
	wm      int               // planned messages
	wmi     int               // first planned message not yet sent
	wn      int               // packets sent
	wnogso  int               // packets before this index are not grouped (after EINVAL)
	werr    error             // first error
	writeFn func(fd uintptr) bool
}

var _ fastpath.Conn = (*Conn)(nil)

// datagram is one received message, maybe a GRO run of several datagrams.
type datagram struct {
	buf  []byte         // the message (fastpath.Headroom, then the data)
	n    int            // bytes received
	seg  int            // segment size from UDP_GRO; 0 when the message is one datagram
	addr netip.AddrPort // sender
}

// wmsg is one planned message of a Write.
type wmsg struct {
	first, count int // pkts[first:first+count]
}

// mmsgBuf is the scratch a batch system call needs, allocated once.
type mmsgBuf struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family's sockaddr
}

func newMmsgBuf(n, iovs int) mmsgBuf {
	b := mmsgBuf{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, max(n, iovs)),
		names: make([]unix.RawSockaddrInet6, n),
	}
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
	}
	return b
}

// New wraps sock, which must be an IPv4 or IPv6 datagram socket (AF_INET, AF_INET6), without
// offloads. The Conn owns it: Close closes it.
func New(sock interface {
	syscall.Conn
	io.Closer
}, batch int) (*Conn, error) {
	return NewWith(sock, Options{Batch: batch})
}

// NewWith wraps sock, which must be an IPv4 or IPv6 datagram socket (AF_INET, AF_INET6), with
// the given options. The Conn owns it: Close closes it.
func NewWith(sock interface {
	syscall.Conn
	io.Closer
}, o Options) (*Conn, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("socket conn: %w", err)
	}
	var family, proto int
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		family, ferr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if ferr == nil {
			proto, ferr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
		}
	}); err != nil {
		return nil, fmt.Errorf("socket conn: %w", err)
	}
	if ferr != nil {
		return nil, fmt.Errorf("socket conn: read socket family: %w", ferr)
	}
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return nil, fmt.Errorf("socket conn: socket family %d is neither AF_INET nor AF_INET6", family)
	}
	batch := max(1, o.Batch)
	c := &Conn{sock: sock, rc: rc, family: family, batch: batch, log: o.Log}
	gso, gro := false, false
	switch {
	case !o.Offload:
		c.desc = "off"
	case batch == 1:
		c.desc = "off (one datagram per system call)"
	case proto != unix.IPPROTO_UDP:
		c.desc = "off (not a UDP socket)"
	case family != unix.AF_INET:
		c.desc = "off (IPv6 socket)"
	default:
		var gsoErr, groErr error
		_ = rc.Control(func(fd uintptr) {
			// Reading UDP_SEGMENT succeeds where the kernel knows it (Linux 4.18+).
			_, gsoErr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			groErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
		})
		gso, gro = gsoErr == nil, groErr == nil
		var parts []string
		if gso {
			parts = append(parts, "gso")
		} else {
			parts = append(parts, fmt.Sprintf("no gso (%v)", gsoErr))
		}
		if gro {
			parts = append(parts, "gro")
		} else {
			parts = append(parts, fmt.Sprintf("no gro (%v)", groErr))
		}
		c.desc = strings.Join(parts, ",")
		c.log.Info("UDP socket offloads", "gso", gso, "gro", gro, "gsoErr", gsoErr, "groErr", groErr)
	}
	c.gso.Store(gso)
	c.gsoWas = gso
	c.gro = gro
	iovs := batch
	if gso {
		iovs = 4 * batch // a Write window holds more packets than messages
	}
	c.r = newMmsgBuf(batch, batch)
	c.w = newMmsgBuf(batch, iovs)
	c.wmsgs = make([]wmsg, batch)
	if gso {
		c.wctl = make([][]byte, batch)
		for i := range c.wctl {
			c.wctl[i] = make([]byte, unix.CmsgSpace(2))
		}
	}
	if gro {
		// Each message may hold a run of 64 KiB: fewer messages per system call do.
		c.rmsgs = min(batch, maxGROMessages)
		c.rctl = make([][]byte, c.rmsgs)
		c.rbufs = make([][]byte, c.rmsgs)
		c.rdg = make([]datagram, c.rmsgs)
		mem := make([]byte, c.rmsgs*groBufSize)
		for i := range c.rbufs {
			c.rctl[i] = make([]byte, unix.CmsgSpace(4))
			c.rbufs[i] = mem[i*groBufSize : (i+1)*groBufSize : (i+1)*groBufSize]
		}
	}
	c.readFn = c.readLocked
	c.writeFn = c.writeLocked
	return c, nil
}

// BatchSize implements fastpath.Conn.
func (c *Conn) BatchSize() int { return c.batch }

// Offloads describes the UDP offloads in use: "gso,gro", "off", or what was refused.
func (c *Conn) Offloads() string {
	if c.gsoWas && !c.gso.Load() {
		return strings.Replace(c.desc, "gso", "no gso (refused at run time)", 1)
	}
	return c.desc
}

// OwnsReadBuffers reports whether Read hands out packets in buffers of its own (UDP GRO),
// so the Forwarder need not give its slots room for data.
func (c *Conn) OwnsReadBuffers() bool { return c.gro }

// Close closes the socket. Idempotent.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.sock.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// A sockaddr's port is in network byte order.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func ntohs(v uint16) uint16 { return htons(v) }

// sockaddrLen is the length of the socket's sockaddrs.
func (c *Conn) sockaddrLen() uint32 {
	if c.family == unix.AF_INET6 {
		return unix.SizeofSockaddrInet6
	}
	return unix.SizeofSockaddrInet4
}

// putSockaddr writes ap as the socket family's sockaddr into sa (an IPv4 address is
// written v4-mapped on an IPv6 socket).
func (c *Conn) putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) {
	if c.family == unix.AF_INET6 {
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(ap.Port()), Addr: ap.Addr().As16()}
		return
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	sa4.Family = unix.AF_INET
	sa4.Port = htons(ap.Port())
	sa4.Addr = ap.Addr().Unmap().As4()
	sa4.Zero = [8]byte{}
}

// sockaddrToAddrPort reads the sender's address from a received sockaddr of either
// family (an IPv4-mapped IPv6 address is unmapped); the zero AddrPort for any other.
func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}
