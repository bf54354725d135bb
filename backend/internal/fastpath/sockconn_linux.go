package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SocketConn is a Conn over an IPv4 datagram socket (a *net.UDPConn; later a raw IP
// socket). With a batch size above 1 it moves many datagrams per system call with
// recvmmsg(2) and sendmmsg(2); with 1 it uses recvmsg(2) and sendmsg(2), one datagram per
// call. It writes its own system calls because golang.org/x/net/ipv4's ReadBatch
// allocates a net.Addr per datagram.
type SocketConn struct {
	sock   io.Closer
	rc     syscall.RawConn
	batch  int
	closed atomic.Bool

	rmu    sync.Mutex // serialises Read; guards r and rpkts, rn, rerr
	r      mmsgBuf
	rpkts  []Packet
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // serialises Write; guards w and wpkts, wi, wn, werr
	w       mmsgBuf
	wpkts   []Packet
	wi, wn  int
	werr    error
	writeFn func(fd uintptr) bool
}

var _ Conn = (*SocketConn)(nil)

// mmsgBuf is the scratch a batch system call needs, allocated once.
type mmsgBuf struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
}

func newMmsgBuf(n int) mmsgBuf {
	b := mmsgBuf{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
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

// NewSocketConn wraps sock, which must be an IPv4 datagram socket (AF_INET). The
// SocketConn owns it: Close closes it.
func NewSocketConn(sock interface {
	syscall.Conn
	io.Closer
}, batch int) (*SocketConn, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("socket conn: %w", err)
	}
	var family int
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		family, ferr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("socket conn: %w", err)
	}
	if ferr != nil {
		return nil, fmt.Errorf("socket conn: read socket family: %w", ferr)
	}
	if family != unix.AF_INET {
		return nil, fmt.Errorf("socket conn: socket family %d is not AF_INET", family)
	}
	batch = max(1, batch)
	c := &SocketConn{sock: sock, rc: rc, batch: batch, r: newMmsgBuf(batch), w: newMmsgBuf(batch)}
	c.readFn = c.readLocked
	c.writeFn = c.writeLocked
	return c, nil
}

// BatchSize implements Conn.
func (c *SocketConn) BatchSize() int { return c.batch }

// Read implements Conn.
func (c *SocketConn) Read(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
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
	for i := range pkts[:n] {
		p := &pkts[i]
		p.Len = int(c.r.hdrs[i].Len)
		sa := &c.r.names[i]
		if sa.Family == unix.AF_INET {
			p.Addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
		} else {
			p.Addr = netip.AddrPort{}
		}
	}
	return n, nil
}

// readLocked is the RawConn callback of Read.
func (c *SocketConn) readLocked(fd uintptr) bool {
	n := len(c.rpkts)
	for i := range c.rpkts {
		p := &c.rpkts[i]
		buf := p.Buf[p.Off:]
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
			r, _, errno = unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&c.r.hdrs[0].Hdr)), unix.MSG_DONTWAIT)
			if errno == 0 {
				c.r.hdrs[0].Len = uint32(r)
				r = 1
			}
		} else {
			r, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.r.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
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

// Write implements Conn.
func (c *SocketConn) Write(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wpkts, c.wi, c.wn, c.werr = pkts, 0, 0, nil
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

// writeLocked is the RawConn callback of Write. It sends from c.wi on, in chunks of at
// most the batch size; a datagram the kernel refuses is skipped and its error kept; EAGAIN
// waits for room in the send buffer.
func (c *SocketConn) writeLocked(fd uintptr) bool {
	for c.wi < len(c.wpkts) {
		chunk := c.wpkts[c.wi:min(len(c.wpkts), c.wi+c.batch)]
		for i := range chunk {
			p := &chunk[i]
			c.w.iovs[i].Base = unsafe.SliceData(p.Buf[p.Off:])
			c.w.iovs[i].SetLen(p.Len)
			sa := &c.w.names[i]
			sa.Family = unix.AF_INET
			sa.Port = htons(p.Addr.Port())
			sa.Addr = p.Addr.Addr().Unmap().As4()
			h := &c.w.hdrs[i]
			h.Hdr.Namelen = unix.SizeofSockaddrInet4
			h.Hdr.Flags = 0
			h.Len = 0
		}
		var r uintptr
		var errno syscall.Errno
		if len(chunk) == 1 {
			r, _, errno = unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&c.w.hdrs[0].Hdr)), unix.MSG_DONTWAIT)
			if errno == 0 {
				r = 1
			}
		} else {
			r, _, errno = unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.w.hdrs[0])), uintptr(len(chunk)), unix.MSG_DONTWAIT, 0, 0)
		}
		switch errno {
		case 0:
			c.wn += int(r)
			c.wi += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			// The datagram at c.wi failed: skip it, keep the first error, send the rest.
			if c.werr == nil {
				c.werr = errno
			}
			c.wi++
		}
	}
	return true
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
