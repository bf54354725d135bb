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

// Write implements fastpath.Conn. With UDP GSO, consecutive packets to the same peer of
// equal length (the last of a run may be shorter) go as one message with UDP_SEGMENT,
// which the kernel sends as one datagram per packet.
func (c *Conn) Write(pkts []fastpath.Packet) (int, error) {
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
func (c *Conn) planLocked() {
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
		c.putSockaddr(&c.w.names[m], p.Addr)
		h := &c.w.hdrs[m]
		h.Hdr.Namelen = c.sockaddrLen()
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

func (c *Conn) setIov(k int, p *fastpath.Packet) {
	c.w.iovs[k].Base = unsafe.SliceData(p.Buf[p.Off:])
	c.w.iovs[k].SetLen(p.Len)
}

// writeLocked is the RawConn callback of Write. It plans and sends windows of messages;
// a message the kernel refuses is skipped and its error kept; EAGAIN waits for room in
// the send buffer. A GSO message refused with EIO (the route's device cannot checksum
// for the kernel) turns GSO off for good; one refused with EINVAL is sent again as
// single datagrams.
func (c *Conn) writeLocked(fd uintptr) bool {
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
