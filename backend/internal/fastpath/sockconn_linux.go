package fastpath

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
)

// maxGSOSegs is the most datagrams one UDP_SEGMENT send carries (the kernel's
// UDP_MAX_SEGMENTS was 64 before Linux 6.9).
const maxGSOSegs = 64

// maxUDPPayload is the largest UDP payload over IPv4, and so the most one UDP_SEGMENT
// send carries in total.
const maxUDPPayload = MaxPacket - ipv4HeaderLen - 8

// maxGROMessages bounds the messages per recvmmsg with UDP GRO (each has a 64 KiB buffer).
const maxGROMessages = 32

// groBufSize is the size of a receive buffer when UDP_GRO may hand over a run of
// datagrams as one.
const groBufSize = Headroom + MaxPacket

// SocketOptions configure NewSocketConnWith.
type SocketOptions struct {
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

// SocketConn is a Conn over an IPv4 datagram socket (a *net.UDPConn or a raw IP socket).
// With a batch size above 1 it moves many datagrams per system call with recvmmsg(2) and
// sendmmsg(2); with 1 it uses recvmsg(2) and sendmsg(2), one datagram per call. It
// writes its own system calls because golang.org/x/net/ipv4's ReadBatch allocates a
// net.Addr per datagram. On a UDP socket it can use UDP GSO and GRO (SocketOptions);
// the wire format stays one inner packet per datagram either way.
type SocketConn struct {
	sock   io.Closer
	rc     syscall.RawConn
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
	rpkts  []Packet
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // serialises Write; guards w, wctl, wmsgs and wpkts, wi, wm, wmi, wn, wnogso, werr
	w       mmsgBuf
	wctl    [][]byte // per message: a UDP_SEGMENT control message
	wmsgs   []wmsg   // per planned message: which packets it carries
	wpkts   []Packet // the packets of the current Write
	wi      int      // first packet not yet planned
	wm      int      // planned messages
	wmi     int      // first planned message not yet sent
	wn      int      // packets sent
	wnogso  int      // packets before this index are not grouped (after EINVAL)
	werr    error    // first error
	writeFn func(fd uintptr) bool
}

var _ Conn = (*SocketConn)(nil)

// datagram is one received message, maybe a GRO run of several datagrams.
type datagram struct {
	buf  []byte         // the message (Headroom, then the data)
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
	names []unix.RawSockaddrInet4
}

func newMmsgBuf(n, iovs int) mmsgBuf {
	b := mmsgBuf{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, max(n, iovs)),
		names: make([]unix.RawSockaddrInet4, n),
	}
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
	}
	return b
}

// NewSocketConn wraps sock, which must be an IPv4 datagram socket (AF_INET), without
// offloads. The SocketConn owns it: Close closes it.
func NewSocketConn(sock interface {
	syscall.Conn
	io.Closer
}, batch int) (*SocketConn, error) {
	return NewSocketConnWith(sock, SocketOptions{Batch: batch})
}

// NewSocketConnWith wraps sock, which must be an IPv4 datagram socket (AF_INET), with
// the given options. The SocketConn owns it: Close closes it.
func NewSocketConnWith(sock interface {
	syscall.Conn
	io.Closer
}, o SocketOptions) (*SocketConn, error) {
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
	if family != unix.AF_INET {
		return nil, fmt.Errorf("socket conn: socket family %d is not AF_INET", family)
	}
	batch := max(1, o.Batch)
	c := &SocketConn{sock: sock, rc: rc, batch: batch, log: o.Log}
	gso, gro := false, false
	switch {
	case !o.Offload:
		c.desc = "off"
	case batch == 1:
		c.desc = "off (one datagram per system call)"
	case proto != unix.IPPROTO_UDP:
		c.desc = "off (not a UDP socket)"
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

// BatchSize implements Conn.
func (c *SocketConn) BatchSize() int { return c.batch }

// Offloads describes the UDP offloads in use: "gso,gro", "off", or what was refused.
func (c *SocketConn) Offloads() string {
	if c.gsoWas && !c.gso.Load() {
		return strings.Replace(c.desc, "gso", "no gso (refused at run time)", 1)
	}
	return c.desc
}

// ownsReadBuffers reports whether Read hands out packets in buffers of its own (UDP GRO),
// so the Forwarder need not give its slots room for data.
func (c *SocketConn) ownsReadBuffers() bool { return c.gro }

// Read implements Conn. With UDP GRO, the packets it returns lie in the SocketConn's own
// buffers (Buf is replaced), valid until the next Read; a run the kernel coalesced is
// handed out one datagram per Packet, continued by the next Read when pkts is full.
func (c *SocketConn) Read(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.gro {
		if n := c.drainLocked(pkts); n > 0 {
			return n, nil
		}
	}
	c.rpkts, c.rn, c.rerr = pkts[:min(len(pkts), c.batch)], 0, nil
	err := c.rc.Read(c.readFn)
	n, rerr := c.rn, c.rerr
	c.rpkts, c.rerr = nil, nil
	if c.closed.Load() {
		return 0, fmt.Errorf("socket read: %w", net.ErrClosed)
	}
	if err != nil {
		return 0, fmt.Errorf("socket read: %w", err)
	}
	if rerr != nil {
		return 0, rerr
	}
	if c.gro {
		c.rcount, c.rd, c.roff = n, 0, Headroom
		for i := range c.rdg[:n] {
			h := &c.r.hdrs[i]
			c.rdg[i] = datagram{
				buf:  c.rbufs[i],
				n:    int(h.Len),
				seg:  groSegment(c.rctl[i][:h.Hdr.Controllen]),
				addr: sockaddrToAddrPort(&c.r.names[i]),
			}
		}
		return c.drainLocked(pkts), nil
	}
	for i := range pkts[:n] {
		p := &pkts[i]
		p.Len = int(c.r.hdrs[i].Len)
		p.Addr = sockaddrToAddrPort(&c.r.names[i])
	}
	return n, nil
}

// drainLocked hands out pending datagrams of the last GRO read, one per Packet.
func (c *SocketConn) drainLocked(pkts []Packet) int {
	n := 0
	for n < len(pkts) && c.rd < c.rcount {
		d := &c.rdg[c.rd]
		end := Headroom + d.n
		if n > 0 && c.roff == Headroom && d.seg > 0 && (d.n+d.seg-1)/d.seg > len(pkts)-n {
			// Keep a run whole for the next Read, so it stays one write to the device.
			break
		}
		l := end - c.roff
		if d.seg > 0 {
			l = min(l, d.seg)
		}
		pkts[n] = Packet{Buf: d.buf, Off: c.roff, Len: l, Addr: d.addr}
		n++
		c.roff += l
		if c.roff >= end || l == 0 {
			c.rd++
			c.roff = Headroom
		}
	}
	return n
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet4) netip.AddrPort {
	if sa.Family != unix.AF_INET {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
}

// groSegment returns the segment size of a UDP_GRO control message in ctl, or 0.
func groSegment(ctl []byte) int {
	for len(ctl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(ctl) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(ctl[unix.CmsgLen(0):]))
		}
		ctl = ctl[min(len(ctl), unix.CmsgSpace(l-unix.SizeofCmsghdr)):]
	}
	return 0
}

// readLocked is the RawConn callback of Read.
func (c *SocketConn) readLocked(fd uintptr) bool {
	n := len(c.rpkts)
	if c.gro {
		n = c.rmsgs
	}
	for i := 0; i < n; i++ {
		var buf []byte
		if c.gro {
			buf = c.rbufs[i][Headroom:]
			h := &c.r.hdrs[i].Hdr
			h.Control = &c.rctl[i][0]
			h.SetControllen(len(c.rctl[i]))
		} else {
			p := &c.rpkts[i]
			buf = p.Buf[p.Off:]
		}
		c.r.iovs[i].Base = unsafe.SliceData(buf)
		c.r.iovs[i].SetLen(len(buf))
		h := &c.r.hdrs[i]
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
		h.Hdr.Flags = 0
		h.Len = 0
	}
	for {
		var r uintptr
		var errno syscall.Errno
		if c.batch == 1 {
			r, _, errno = unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&c.r.hdrs[0].Hdr)), unix.MSG_DONTWAIT)
			if errno == 0 {
				c.r.hdrs[0].Len = uint32(r)
				r = 1
			}
		} else {
			r, _, errno = unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.r.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		}
		switch errno {
		case 0:
			c.rn = int(r)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			c.rerr = fmt.Errorf("socket read: %w", errno)
			return true
		}
	}
}

// Write implements Conn. With UDP GSO, consecutive packets to the same peer of equal
// length (the last of a run may be shorter) go as one message with UDP_SEGMENT, which
// the kernel sends as one datagram per packet.
func (c *SocketConn) Write(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wpkts, c.wi, c.wm, c.wmi, c.wn, c.wnogso, c.werr = pkts, 0, 0, 0, 0, 0, nil
	err := c.rc.Write(c.writeFn)
	n, werr := c.wn, c.werr
	c.wpkts, c.werr = nil, nil
	if c.closed.Load() {
		return n, fmt.Errorf("socket write: %w", net.ErrClosed)
	}
	if err != nil {
		return n, fmt.Errorf("socket write: %w", err)
	}
	return n, werr
}

// planLocked groups packets from c.wi on into at most batch messages.
func (c *SocketConn) planLocked() {
	gso := c.gso.Load()
	c.wm, c.wmi = 0, 0
	k := 0 // iovecs used
	for c.wi < len(c.wpkts) && c.wm < c.batch && k < len(c.w.iovs) {
		first := c.wi
		p := &c.wpkts[first]
		size, total, count := p.Len, p.Len, 1
		c.setIov(k, p)
		k++
		c.wi++
		if gso && first >= c.wnogso {
			for c.wi < len(c.wpkts) && k < len(c.w.iovs) && count < maxGSOSegs {
				q := &c.wpkts[c.wi]
				if q.Addr != p.Addr || q.Len > size || q.Len == 0 || total+q.Len > maxUDPPayload {
					break
				}
				c.setIov(k, q)
				k++
				c.wi++
				count++
				total += q.Len
				if q.Len < size {
					break // a shorter datagram ends the run
				}
			}
		}
		m := c.wm
		c.wmsgs[m] = wmsg{first: first, count: count}
		sa := &c.w.names[m]
		sa.Family = unix.AF_INET
		sa.Port = htons(p.Addr.Port())
		sa.Addr = p.Addr.Addr().Unmap().As4()
		h := &c.w.hdrs[m]
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
		h.Hdr.Iov = &c.w.iovs[k-count]
		h.Hdr.SetIovlen(count)
		h.Hdr.Flags = 0
		h.Len = 0
		if count > 1 {
			ctl := c.wctl[m]
			ch := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
			ch.Level = unix.IPPROTO_UDP
			ch.Type = unix.UDP_SEGMENT
			ch.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(ctl[unix.CmsgLen(0):], uint16(size))
			h.Hdr.Control = &ctl[0]
			h.Hdr.SetControllen(len(ctl))
		} else {
			h.Hdr.Control = nil
			h.Hdr.SetControllen(0)
		}
		c.wm++
	}
}

func (c *SocketConn) setIov(k int, p *Packet) {
	c.w.iovs[k].Base = unsafe.SliceData(p.Buf[p.Off:])
	c.w.iovs[k].SetLen(p.Len)
}

// writeLocked is the RawConn callback of Write. It plans and sends windows of messages;
// a message the kernel refuses is skipped and its error kept; EAGAIN waits for room in
// the send buffer. A GSO message refused with EIO (the route's device cannot checksum
// for the kernel) turns GSO off for good; one refused with EINVAL is sent again as
// single datagrams.
func (c *SocketConn) writeLocked(fd uintptr) bool {
	for {
		if c.wmi == c.wm {
			if c.wi >= len(c.wpkts) {
				return true
			}
			c.planLocked()
		}
		var r uintptr
		var errno syscall.Errno
		if c.wm-c.wmi == 1 {
			r, _, errno = unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&c.w.hdrs[c.wmi].Hdr)), unix.MSG_DONTWAIT)
			if errno == 0 {
				r = 1
			}
		} else {
			r, _, errno = unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.w.hdrs[c.wmi])), uintptr(c.wm-c.wmi), unix.MSG_DONTWAIT, 0, 0)
		}
		switch errno {
		case 0:
			for _, m := range c.wmsgs[c.wmi : c.wmi+int(r)] {
				c.wn += m.count
			}
			c.wmi += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			m := c.wmsgs[c.wmi]
			if retry, disable := gsoRefused(errno); m.count > 1 && retry {
				if disable && c.gso.Swap(false) {
					c.log.Info("UDP GSO refused by the kernel; sending one datagram per message from now on", "err", errno)
				}
				// Plan again from this message's first packet, without grouping it.
				c.wi, c.wm, c.wmi = m.first, 0, 0
				c.wnogso = m.first + m.count
				continue
			}
			// The message at c.wmi failed: skip it, keep the first error, send the rest.
			if c.werr == nil {
				c.werr = errno
			}
			c.wmi++
		}
	}
}

// gsoRefused says what to do when the kernel refuses a message with UDP_SEGMENT: retry
// its datagrams one per message, and whether to stop using GSO for good. EIO means the
// route cannot take GSO at all (before Linux 6.11: a device without checksum offload;
// also IPsec); EINVAL a problem with this message (e.g. a segment larger than the
// path MTU, or SO_NO_CHECK), which single datagrams may not have.
func gsoRefused(errno syscall.Errno) (retry, disable bool) {
	switch errno {
	case unix.EIO:
		return true, true
	case unix.EINVAL:
		return true, false
	}
	return false, false
}

// Close closes the socket. Idempotent.
func (c *SocketConn) Close() error {
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
