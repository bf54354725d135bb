package tun

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// Write implements fastpath.Device. With offloads, consecutive TCP segments of a flow are
// written as one superpacket (packet.GROPlanner); the count returned is still in
// packets.
func (t *Device) Write(pkts []fastpath.Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.wpkts, t.wi, t.wn, t.werr = pkts, 0, 0, nil
	if t.vnet {
		t.gro.Plan(pkts)
	}
	err := t.rc.Write(t.writeFn)
	n, werr := t.wn, t.werr
	t.wpkts, t.werr = nil, nil
	if t.closed.Load() {
		return n, fmt.Errorf("write TUN %s: %w", t.name, net.ErrClosed)
	}
	if err != nil {
		return n, t.ioError("write", err)
	}
	if werr != nil && errors.Is(werr, unix.EBADFD) {
		return n, t.ioError("write", werr)
	}
	return n, werr
}

// writeLocked is the RawConn callback of Write: one write(2) per packet; a refused packet
// is skipped; EAGAIN waits for the queue to drain.
func (t *Device) writeLocked(fd uintptr) bool {
	for t.wi < len(t.wpkts) {
		b := t.wpkts[t.wi].Bytes()
		_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch errno {
		case 0:
			t.wn++
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			if t.werr == nil {
				t.werr = errno
			}
		}
		t.wi++
	}
	return true
}

// writeVnetLocked is the RawConn callback of Write with offloads: one writev(2) per
// planned write (t.wi counts writes here, not packets).
func (t *Device) writeVnetLocked(fd uintptr) bool {
	ops := t.gro.Ops()
	for t.wi < len(ops) {
		op := ops[t.wi]
		pieces := t.gro.Pieces(op)
		for j, b := range pieces {
			t.wiov[j].Base = unsafe.SliceData(b)
			t.wiov[j].SetLen(len(b))
		}
		_, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.wiov[0])), uintptr(len(pieces)))
		switch errno {
		case 0:
			t.wn += op.Packets
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			if t.werr == nil {
				t.werr = errno
			}
		}
		t.wi++
	}
	return true
}
