package dgram

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// Read implements fastpath.Conn. With UDP GRO, the packets it returns lie in the Conn's
// own buffers (Buf is replaced), valid until the next Read; a run the kernel coalesced is
// handed out one datagram per Packet, continued by the next Read when pkts is full.
func (c *Conn) Read(pkts []fastpath.Packet) (int, error) {
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
		c.rcount, c.rd, c.roff = n, 0, fastpath.Headroom
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
func (c *Conn) drainLocked(pkts []fastpath.Packet) int {
	n := 0
	for n < len(pkts) && c.rd < c.rcount {
		d := &c.rdg[c.rd]
		end := fastpath.Headroom + d.n
		if n > 0 && c.roff == fastpath.Headroom && d.seg > 0 && (d.n+d.seg-1)/d.seg > len(pkts)-n {
			// Keep a run whole for the next Read, so it stays one write to the device.
			break
		}
		l := end - c.roff
		if d.seg > 0 {
			l = min(l, d.seg)
		}
		pkts[n] = fastpath.Packet{Buf: d.buf, Off: c.roff, Len: l, Addr: d.addr}
		n++
		c.roff += l
		if c.roff >= end || l == 0 {
			c.rd++
			c.roff = fastpath.Headroom
		}
	}
	return n
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
func (c *Conn) readLocked(fd uintptr) bool {
	n := len(c.rpkts)
	if c.gro {
		n = c.rmsgs
	}
	for i := 0; i < n; i++ {
		var buf []byte
		if c.gro {
			buf = c.rbufs[i][fastpath.Headroom:]
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
		h.Hdr.Namelen = c.sockaddrLen()
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
