package fastpath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
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

// TUN is a Device over a Linux TUN queue opened with IFF_TUN|IFF_NO_PI: every read and
// write is one bare IPv4 (or IPv6) packet. Reads go through the Go netpoller, so a blocked
// Read costs no thread and Close wakes it.
type TUN struct {
	name   string
	file   *os.File
	rc     syscall.RawConn
	batch  int
	closed atomic.Bool

	rmu    sync.Mutex // serialises Read; guards the read state below
	rpkts  []Packet
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // serialises Write; guards the write state below
	wpkts   []Packet
	wi, wn  int
	werr    error
	writeFn func(fd uintptr) bool
}

var _ Device = (*TUN)(nil)

// OpenTUN attaches a queue to the TUN device name, creating the device if it does not
// exist. With persist, the device is marked persistent (TUNSETPERSIST), so that it, its
// addresses and its routes outlive this process; a later OpenTUN of the same name adopts
// it. Read returns up to batch packets per call (one read(2) each, without blocking after
// the first). The device is created in the network namespace of the calling thread.
func OpenTUN(name string, persist bool, batch int) (*TUN, error) {
	if err := CheckTUN(); err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("TUN name %q: %w", name, err)
	}
	fd, err := unix.Open(TUNPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", TUNPath, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("attach to TUN %s: it is in use by another process (is flanneld or another weftd running?): %w", name, err)
		case errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("attach to TUN %s: a device of that name exists with another type or flags; delete it (ip link del %s): %w", name, name, err)
		}
		return nil, fmt.Errorf("attach to TUN %s: %w", name, err)
	}
	if persist {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("make TUN %s persistent: %w", name, err)
		}
	}
	// The fd is non-blocking, so os.NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), TUNPath)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("TUN %s: %w", name, err)
	}
	t := &TUN{name: ifr.Name(), file: f, rc: rc, batch: max(1, batch)}
	t.readFn = t.readLocked
	t.writeFn = t.writeLocked
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

// Read implements Device.
func (t *TUN) Read(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	t.rpkts, t.rn, t.rerr = pkts[:min(len(pkts), t.batch)], 0, nil
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
		return 0, fmt.Errorf("read TUN %s: %w", t.name, rerr)
	}
	return n, nil
}

// readLocked is the RawConn callback of Read: it reads packets until the batch is full or
// the queue is empty. It reports done once it has a packet or a hard error.
func (t *TUN) readLocked(fd uintptr) bool {
	for t.rn < len(t.rpkts) {
		p := &t.rpkts[t.rn]
		n, err := unix.Read(int(fd), p.Buf[p.Off:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return t.rn > 0
		case err != nil:
			t.rerr = err
			return true
		}
		p.Len = n
		t.rn++
	}
	return true
}

// Write implements Device.
func (t *TUN) Write(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.wpkts, t.wi, t.wn, t.werr = pkts, 0, 0, nil
	err := t.rc.Write(t.writeFn)
	n, werr := t.wn, t.werr
	t.wpkts, t.werr = nil, nil
	if t.closed.Load() {
		return n, fmt.Errorf("write TUN %s: %w", t.name, net.ErrClosed)
	}
	if err != nil {
		return n, fmt.Errorf("write TUN %s: %w", t.name, err)
	}
	return n, werr
}

// writeLocked is the RawConn callback of Write: one write(2) per packet; a refused packet
// is skipped; EAGAIN waits for the queue to drain.
func (t *TUN) writeLocked(fd uintptr) bool {
	for t.wi < len(t.wpkts) {
		_, err := unix.Write(int(fd), t.wpkts[t.wi].Bytes())
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			if t.werr == nil {
				t.werr = err
			}
		default:
			t.wn++
		}
		t.wi++
	}
	return true
}

// Close detaches from the device; a persistent device stays, with its addresses and
// routes. Idempotent.
func (t *TUN) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	return t.file.Close()
}
