package fastpath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// TUNPath is the TUN clone device.
const TUNPath = "/dev/net/tun"

// ErrNoTUN: the kernel offers no TUN driver here (no /dev/net/tun).
var ErrNoTUN = errors.New("no TUN driver: load the tun module (modprobe tun) or, in a container, expose the device (--device /dev/net/tun)")

// CheckTUN reports, with ErrNoTUN, when /dev/net/tun does not exist. It opens nothing.
func CheckTUN() error { return checkTUNAt(TUNPath) }

func checkTUNAt(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist: %w", path, ErrNoTUN)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if st.Mode()&os.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a character device: %w", path, ErrNoTUN)
	}
	return nil
}

// TUNOptions configure OpenTUNWith.
type TUNOptions struct {
	// Persist marks the device persistent (TUNSETPERSIST), so that it, its addresses and
	// its routes outlive this process; a later open of the same name adopts it.
	Persist bool
	// Batch is the most packets Read returns per call.
	Batch int
	// Offload asks for IFF_VNET_HDR with TCP segmentation and checksum offload
	// (TUN_F_CSUM|TUN_F_TSO4): the kernel hands over TCP superpackets of up to 64 KiB,
	// which Read cuts into MTU-sized segments, and Write coalesces consecutive segments of
	// a TCP flow into superpackets (see tso.go and gro.go). When the kernel refuses, the
	// TUN is opened without, logged once; Offloads says which.
	Offload bool
	// Log receives the offload decision.
	Log klog.Logger
}

// TUN is a Device over a Linux TUN queue opened with IFF_TUN|IFF_NO_PI (and
// IFF_VNET_HDR with offloads): every read and write is one bare IPv4 (or IPv6) packet,
// or, with offloads, a virtio-net header and a packet or superpacket. Reads go through
// the Go netpoller, so a blocked Read costs no thread and Close wakes it.
type TUN struct {
	name   string
	file   *os.File
	rc     syscall.RawConn
	batch  int
	vnet   bool   // IFF_VNET_HDR with TSO and checksum offload
	desc   string // the offload decision, for Offloads
	closed atomic.Bool

	rmu    sync.Mutex // serialises Read; guards the read state below
	rpkts  []Packet
	rn     int
	rerr   error
	rbuf   []byte        // vnet: where a superpacket is read (its start lands in a slot)
	riov   [2]unix.Iovec // vnet: a slot, then rbuf
	split  tsoSplitter   // vnet: the superpacket being cut
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // serialises Write; guards the write state below
	wpkts   []Packet
	wi, wn  int
	werr    error
	gro     groPlanner                 // vnet: the writes planned for wpkts
	wiov    [1 + maxGROSegs]unix.Iovec // vnet: one write's pieces
	writeFn func(fd uintptr) bool
}

var _ Device = (*TUN)(nil)

// OpenTUN attaches a queue to the TUN device name without offloads, creating the device
// if it does not exist (see OpenTUNWith).
func OpenTUN(name string, persist bool, batch int) (*TUN, error) {
	return OpenTUNWith(name, TUNOptions{Persist: persist, Batch: batch})
}

// OpenTUNWith attaches a queue to the TUN device name, creating the device if it does
// not exist. Read returns up to o.Batch packets per call (one read(2) each, without
// blocking after the first). The device is created in the network namespace of the
// calling thread.
func OpenTUNWith(name string, o TUNOptions) (*TUN, error) {
	if err := CheckTUN(); err != nil {
		return nil, err
	}
	batch := max(1, o.Batch)
	desc := "off"
	if o.Offload {
		fd, err := attachTUN(name, unix.IFF_TUN|unix.IFF_NO_PI|unix.IFF_VNET_HDR, o.Persist)
		if err != nil {
			return nil, err
		}
		err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4)
		if err == nil {
			o.Log.Info("TUN offloads on: TCP segmentation, coalescing and checksum in userspace",
				"device", name, "offloads", "tso4,csum,gro")
			return newTUN(fd, name, batch, true, "tso4,csum,gro")
		}
		unix.Close(fd)
		desc = fmt.Sprintf("off (TUNSETOFFLOAD refused: %v)", err)
		o.Log.Info("TUN offloads refused by the kernel; one packet per read and write", "device", name, "err", err)
	}
	fd, err := attachTUN(name, unix.IFF_TUN|unix.IFF_NO_PI, o.Persist)
	if err != nil {
		return nil, err
	}
	// A persistent device keeps the offloads an earlier reader with IFF_VNET_HDR set;
	// without the header they would hand this reader superpackets it cannot parse.
	_ = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0)
	return newTUN(fd, name, batch, false, desc)
}

// attachTUN opens the clone device and attaches it to name with flags.
func attachTUN(name string, flags uint16, persist bool) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return -1, fmt.Errorf("TUN name %q: %w", name, err)
	}
	fd, err := unix.Open(TUNPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", TUNPath, err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EBUSY):
			return -1, fmt.Errorf("attach to TUN %s: it is in use by another process (is flanneld or another weftd running?): %w", name, err)
		case errors.Is(err, unix.EINVAL):
			return -1, fmt.Errorf("attach to TUN %s: a device of that name exists with another type or flags; delete it (ip link del %s): %w", name, name, err)
		}
		return -1, fmt.Errorf("attach to TUN %s: %w", name, err)
	}
	if persist {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("make TUN %s persistent: %w", name, err)
		}
	}
	return fd, nil
}

func newTUN(fd int, name string, batch int, vnet bool, desc string) (*TUN, error) {
	// The fd is non-blocking, so os.NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), TUNPath)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("TUN %s: %w", name, err)
	}
	t := &TUN{name: name, file: f, rc: rc, batch: batch, vnet: vnet, desc: desc}
	t.readFn = t.readLocked
	t.writeFn = t.writeLocked
	if vnet {
		t.rbuf = make([]byte, virtioHdrLen+MaxPacket+1)
		t.readFn = t.readVnetLocked
		t.writeFn = t.writeVnetLocked
	}
	return t, nil
}

// EnsurePersistentTUN creates the persistent TUN device name if it is missing (adopting
// it when it exists) and detaches again, leaving the device without a reader.
func EnsurePersistentTUN(name string) error {
	t, err := OpenTUN(name, true, 1)
	if err != nil {
		return err
	}
	return t.Close()
}

// Name returns the device name.
func (t *TUN) Name() string { return t.name }

// BatchSize implements Device.
func (t *TUN) BatchSize() int { return t.batch }

// Offloads describes the offloads in use: "tso4,csum,gro", or "off" and why.
func (t *TUN) Offloads() string { return t.desc }

// Read implements Device. With offloads, a superpacket is cut into segments, one per
// Packet; one that does not fit in pkts continues in the next Read. A superpacket or
// packet that cannot be handled comes out as a Packet of length 0, which the Forwarder
// counts as malformed.
func (t *TUN) Read(pkts []Packet) (int, error) {
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
		return 0, fmt.Errorf("read TUN %s: %w", t.name, err)
	}
	if n == 0 && rerr != nil {
		return 0, t.ioError("read", rerr)
	}
	return n, nil
}

// ioError wraps the error of a read or write, adding ErrDeviceGone for EBADFD: the
// kernel detached the queue because the device was deleted.
func (t *TUN) ioError(op string, err error) error {
	if errors.Is(err, unix.EBADFD) {
		return fmt.Errorf("%s TUN %s: %w: %w", op, t.name, ErrDeviceGone, err)
	}
	return fmt.Errorf("%s TUN %s: %w", op, t.name, err)
}

// readLocked is the RawConn callback of Read: it reads packets until the batch is full or
// the queue is empty. It reports done once it has a packet or a hard error.
func (t *TUN) readLocked(fd uintptr) bool {
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
func (t *TUN) drainLocked() {
	for t.split.pending() && t.rn < len(t.rpkts) {
		p := &t.rpkts[t.rn]
		p.Len = t.split.next(p.Buf[p.Off:])
		t.rn++
	}
}

// readVnetLocked is the RawConn callback of Read with offloads. Each read(2) lands in the
// next free slot (its headroom takes the virtio-net header) and runs over into rbuf, so a
// packet that fits a slot is not copied; a superpacket is gathered in rbuf and cut.
func (t *TUN) readVnetLocked(fd uintptr) bool {
	for t.rn < len(t.rpkts) {
		p := &t.rpkts[t.rn]
		if seg := maxSegments(len(p.Buf) - p.Off); t.rn > 0 && len(t.rpkts) >= seg && len(t.rpkts)-t.rn < seg {
			// A superpacket read now might not fit in the slots left; cut across two
			// batches it would leave as two GSO sends. Leave it for the next Read.
			return true
		}
		var slot []byte
		if p.Off >= virtioHdrLen {
			slot = p.Buf[p.Off-virtioHdrLen:]
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
	return (MaxPacket - 40 + slot - 41) / (slot - 40)
}

// gotSlot handles a read that fit in p's slot (b: virtio-net header and packet).
func (t *TUN) gotSlot(p *Packet, b []byte) {
	h, ok := decodeVirtioHdr(b)
	if !ok {
		p.Len = 0
		t.rn++
		return
	}
	if h.GSOType != gsoNone {
		// A superpacket small enough for a slot: cut it from rbuf, as the segments go to
		// this slot and the next ones.
		n := copy(t.rbuf, b)
		t.gotSuper(p, t.rbuf[:n])
		return
	}
	p.Len = len(b) - virtioHdrLen
	if h.Flags&vnetNeedsCsum != 0 && !completeChecksum(p.Bytes(), int(h.CsumStart), int(h.CsumOffset)) {
		p.Len = 0
	}
	t.rn++
}

// gotSuper handles a read gathered in rbuf (b: virtio-net header and superpacket).
func (t *TUN) gotSuper(p *Packet, b []byte) {
	h, _ := decodeVirtioHdr(b)
	if h.GSOType == gsoNone || t.split.start(b[virtioHdrLen:], h) != DropNone {
		// Longer than a slot without being a superpacket, or not one we can cut.
		p.Len = 0
		t.rn++
		return
	}
	t.drainLocked()
}

// Write implements Device. With offloads, consecutive TCP segments of a flow are written
// as one superpacket (see gro.go); the count returned is still in packets.
func (t *TUN) Write(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.wpkts, t.wi, t.wn, t.werr = pkts, 0, 0, nil
	if t.vnet {
		t.gro.plan(pkts)
	}
	err := t.rc.Write(t.writeFn)
	n, werr := t.wn, t.werr
	t.wpkts, t.werr = nil, nil
	if t.closed.Load() {
		return n, fmt.Errorf("write TUN %s: %w", t.name, net.ErrClosed)
	}
	if err != nil {
		return n, fmt.Errorf("write TUN %s: %w", t.name, err)
	}
	if werr != nil && errors.Is(werr, unix.EBADFD) {
		return n, t.ioError("write", werr)
	}
	return n, werr
}

// writeLocked is the RawConn callback of Write: one write(2) per packet; a refused packet
// is skipped; EAGAIN waits for the queue to drain.
func (t *TUN) writeLocked(fd uintptr) bool {
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
func (t *TUN) writeVnetLocked(fd uintptr) bool {
	for t.wi < len(t.gro.ops) {
		op := t.gro.ops[t.wi]
		for j, b := range t.gro.bufs[op.start : op.start+op.n] {
			t.wiov[j].Base = unsafe.SliceData(b)
			t.wiov[j].SetLen(len(b))
		}
		_, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.wiov[0])), uintptr(op.n))
		switch errno {
		case 0:
			t.wn += op.pkts
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

// Close detaches from the device; a persistent device stays, with its addresses and
// routes (and without offloads, so that a reader without IFF_VNET_HDR, such as
// flanneld, can adopt it). Idempotent.
func (t *TUN) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	if t.vnet {
		_ = t.rc.Control(func(fd uintptr) { _ = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, 0) })
	}
	return t.file.Close()
}
