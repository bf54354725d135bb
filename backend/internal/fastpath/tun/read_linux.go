package tun

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packet"
)

// Read implements fastpath.Device. With offloads, a superpacket is cut into segments,
// one per Packet; one that does not fit in pkts continues in the next Read. A superpacket
// or packet that cannot be handled comes out as a Packet of length 0, which the
// Forwarder counts as malformed.
func (t *Device) Read(pkts []fastpath.Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	t.rpkts, t.rn, t.rerr = pkts[:min(len(pkts), t.batch)], 0, nil
	if t.vnet {
		t.drainLocked()
		if t.rn > 0 {
			n := t.rn
			t.rpkts = nil
			return n, nil
		}
	}
	err := t.rc.Read(t.readFn)
	n, rerr := t.rn, t.rerr
	t.rpkts, t.rerr = nil, nil
	if t.closed.Load() {
		return 0, fmt.Errorf("read TUN %s: %w", t.name, net.ErrClosed)
	}
	if err != nil {
		return 0, t.ioError("read", err)
	}
	if n == 0 && rerr != nil {
		return 0, t.ioError("read", rerr)
	}
	return n, nil
}

// ioError wraps the error of a read or write, adding ErrDeviceGone when the kernel
// detached the queue because the device was deleted: the read or write failed with
// EBADFD, or the queue says so now. The second covers a reader parked in the poller when
// the device went: the kernel then reports EPOLLERR alone, and Go answers "not pollable"
// without trying the read.
func (t *Device) ioError(op string, err error) error {
	if errors.Is(err, unix.EBADFD) || t.detached() {
		return fmt.Errorf("%s TUN %s: %w: %w", op, t.name, fastpath.ErrDeviceGone, err)
	}
	return fmt.Errorf("%s TUN %s: %w", op, t.name, err)
}

// detached reports whether the queue no longer has a device: TUNGETIFF fails with EBADFD
// once the kernel has detached it.
func (t *Device) detached() bool {
	gone := false
	_ = t.rc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq("")
		if err == nil {
			gone = errors.Is(unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr), unix.EBADFD)
		}
	})
	return gone
}

// readLocked is the RawConn callback of Read: it reads packets until the batch is full or
// the queue is empty. It reports done once it has a packet or a hard error.
func (t *Device) readLocked(fd uintptr) bool {
	for t.rn < len(t.rpkts) {
		p := &t.rpkts[t.rn]
		b := p.Buf[p.Off:]
		r, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return t.rn > 0
		default:
			t.rerr = errno
			return true
		}
		p.Len = int(r)
		t.rn++
	}
	return true
}

// drainLocked cuts pending segments into the free slots.
func (t *Device) drainLocked() {
	for t.split.Pending() && t.rn < len(t.rpkts) {
		p := &t.rpkts[t.rn]
		p.Len = t.split.Next(p.Buf[p.Off:])
		t.rn++
	}
}

// readVnetLocked is the RawConn callback of Read with offloads. Each read(2) lands in the
// next free slot (its headroom takes the virtio-net header) and runs over into rbuf, so a
// packet that fits a slot is not copied; a superpacket is gathered in rbuf and cut.
func (t *Device) readVnetLocked(fd uintptr) bool {
	for t.rn < len(t.rpkts) {
		p := &t.rpkts[t.rn]
		if seg := maxSegments(len(p.Buf) - p.Off); t.rn > 0 && len(t.rpkts) >= seg && len(t.rpkts)-t.rn < seg {
			// A superpacket read now might not fit in the slots left; cut across two
			// batches it would leave as two GSO sends. Leave it for the next Read.
			return true
		}
		var slot []byte
		if p.Off >= packet.VirtioHdrLen {
			slot = p.Buf[p.Off-packet.VirtioHdrLen:]
		}
		t.riov[0].Base = unsafe.SliceData(slot)
		t.riov[0].SetLen(len(slot))
		rest := t.rbuf[min(len(slot), len(t.rbuf)-1):]
		t.riov[1].Base = unsafe.SliceData(rest)
		t.riov[1].SetLen(len(rest))
		r, _, errno := unix.RawSyscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&t.riov[0])), 2)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return t.rn > 0
		default:
			t.rerr = errno
			return true
		}
		n := int(r)
		if n <= len(slot) {
			t.gotSlot(p, slot[:n])
		} else {
			copy(t.rbuf, slot)
			t.gotSuper(p, t.rbuf[:n])
		}
	}
	return true
}

// maxSegments is how many segments of at most slot bytes a TCP superpacket of 64 KiB
// is cut into, with headers of 40 bytes or more.
func maxSegments(slot int) int {
	if slot <= 40 {
		return 1
	}
	return (fastpath.MaxPacket - 40 + slot - 41) / (slot - 40)
}

// gotSlot handles a read that fit in p's slot (b: virtio-net header and packet).
func (t *Device) gotSlot(p *fastpath.Packet, b []byte) {
	h, ok := packet.DecodeVirtioHdr(b)
	if !ok {
		p.Len = 0
		t.rn++
		return
	}
	if h.GSOType != packet.GSONone {
		// A superpacket small enough for a slot: cut it from rbuf, as the segments go to
		// this slot and the next ones.
		n := copy(t.rbuf, b)
		t.gotSuper(p, t.rbuf[:n])
		return
	}
	p.Len = len(b) - packet.VirtioHdrLen
	if h.Flags&packet.VnetNeedsCsum != 0 && !packet.CompleteChecksum(p.Bytes(), int(h.CsumStart), int(h.CsumOffset)) {
		p.Len = 0
	}
	t.rn++
}

// gotSuper handles a read gathered in rbuf (b: virtio-net header and superpacket).
func (t *Device) gotSuper(p *fastpath.Packet, b []byte) {
	h, _ := packet.DecodeVirtioHdr(b)
	if h.GSOType == packet.GSONone || t.split.Start(b[packet.VirtioHdrLen:], h) != fastpath.DropNone {
		// Longer than a slot without being a superpacket, or not one we can cut.
		p.Len = 0
		t.rn++
		return
	}
	t.drainLocked()
}
