package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packet"
)

// Path is the TUN clone device.
const Path = "/dev/net/tun"

// ErrNoDriver: the kernel offers no TUN driver here (no /dev/net/tun).
var ErrNoDriver = errors.New("no TUN driver: load the tun module (modprobe tun) or, in a container, expose the device (--device /dev/net/tun)")

// Check reports, with ErrNoDriver, when /dev/net/tun does not exist. It opens nothing.
func Check() error { return checkAt(Path) }

func checkAt(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist: %w", path, ErrNoDriver)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if st.Mode()&os.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a character device: %w", path, ErrNoDriver)
	}
	return nil
}

// Options configure OpenWith.
type Options struct {
	// Persist marks the device persistent (TUNSETPERSIST), so that it, its addresses and
	// its routes outlive this process; a later open of the same name adopts it. Without
	// it the device is not persistent, as a device that flanneld opens: it goes away, with
	// its addresses and routes, when its last queue closes (Close, or the process's end
	// however it ends). A persistent device of that name that exists is adopted and made
	// non-persistent (logged).
	Persist bool
	// Batch is the most packets Read returns per call.
	Batch int
	// Offload asks for IFF_VNET_HDR with TCP segmentation and checksum offload
	// (TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6): the kernel hands over TCP superpackets of up to 64 KiB,
	// which Read cuts into MTU-sized segments, and Write coalesces consecutive segments of
	// a TCP flow into superpackets (packet.TSOSplitter, packet.GROPlanner). When the
	// kernel refuses, the TUN is opened without, logged once; Offloads says which.
	Offload bool
	// Log receives the offload decision.
	Log klog.Logger
}

// Device is a fastpath.Device over a Linux TUN queue opened with IFF_TUN|IFF_NO_PI (and
// IFF_VNET_HDR with offloads): every read and write is one bare IPv4 (or IPv6) packet,
// or, with offloads, a virtio-net header and a packet or superpacket. Reads go through
// the Go netpoller, so a blocked Read costs no thread and Close wakes it.
type Device struct {
	name   string
	file   *os.File
	rc     syscall.RawConn
	batch  int
	vnet   bool   // IFF_VNET_HDR with TSO and checksum offload
	desc   string // the offload decision, for Offloads
	closed atomic.Bool

	rmu    sync.Mutex // serialises Read; guards the read state below
	rpkts  []fastpath.Packet
	rn     int
	rerr   error
	rbuf   []byte             // vnet: where a superpacket is read (its start lands in a slot)
	riov   [2]unix.Iovec      // vnet: a slot, then rbuf
	split  packet.TSOSplitter // vnet: the superpacket being cut
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // serialises Write; guards the write state below
	wpkts   []fastpath.Packet
	wi, wn  int
	werr    error
	gro     packet.GROPlanner                 // vnet: the writes planned for wpkts
	wiov    [1 + packet.MaxGROSegs]unix.Iovec // vnet: one write's pieces
	writeFn func(fd uintptr) bool
}

var _ fastpath.Device = (*Device)(nil)

// Open attaches a queue to the TUN device name without offloads, creating the device
// if it does not exist (see OpenWith).
func Open(name string, persist bool, batch int) (*Device, error) {
	return OpenWith(name, Options{Persist: persist, Batch: batch})
}

// OpenWith attaches a queue to the TUN device name, creating the device if it does
// not exist. Read returns up to o.Batch packets per call (one read(2) each, without
// blocking after the first). The device is created in the network namespace of the
// calling thread.
func OpenWith(name string, o Options) (*Device, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	batch := max(1, o.Batch)
	desc := "off"
	if o.Offload {
		fd, err := attachTUN(name, unix.IFF_TUN|unix.IFF_NO_PI|unix.IFF_VNET_HDR)
		if err != nil {
			return nil, err
		}
		// IPv6 segmentation too where the kernel takes it (every kernel since 2.6.27
		// does); IPv4 only otherwise.
		offloads, flags := "tso4,tso6,csum,gro", unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6
		err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags)
		if err != nil {
			offloads, flags = "tso4,csum,gro", unix.TUN_F_CSUM|unix.TUN_F_TSO4
			err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags)
		}
		if err == nil {
			if err := setPersist(fd, name, o); err != nil {
				unix.Close(fd)
				return nil, err
			}
			o.Log.Info("TUN offloads on: TCP segmentation, coalescing and checksum in userspace",
				"device", name, "offloads", offloads)
			return newTUN(fd, name, batch, true, offloads)
		}
		unix.Close(fd)
		desc = fmt.Sprintf("off (TUNSETOFFLOAD refused: %v)", err)
		o.Log.Info("TUN offloads refused by the kernel; one packet per read and write", "device", name, "err", err)
	}
	fd, err := attachTUN(name, unix.IFF_TUN|unix.IFF_NO_PI)
	if err != nil {
		return nil, err
	}
	// A persistent device keeps the offloads an earlier reader with IFF_VNET_HDR set;
	// without the header they would hand this reader superpackets it cannot parse.
	_ = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0)
	if err := setPersist(fd, name, o); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return newTUN(fd, name, batch, false, desc)
}

// setPersist makes the device that fd is attached to persistent, or not, as o.Persist
// says; it logs when it turns the persistence of an adopted device off.
func setPersist(fd int, name string, o Options) error {
	if o.Persist {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			return fmt.Errorf("make TUN %s persistent: %w", name, err)
		}
		return nil
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("TUN name %q: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return fmt.Errorf("read TUN %s flags: %w", name, err)
	}
	if ifr.Uint16()&unix.IFF_PERSIST == 0 {
		return nil
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0); err != nil {
		return fmt.Errorf("make TUN %s non-persistent: %w", name, err)
	}
	o.Log.Info("Adopted a persistent TUN device and made it non-persistent: it now goes away when this process stops",
		"device", name)
	return nil
}

// attachTUN opens the clone device and attaches it to name with flags.
func attachTUN(name string, flags uint16) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return -1, fmt.Errorf("TUN name %q: %w", name, err)
	}
	fd, err := unix.Open(Path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", Path, err)
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
	return fd, nil
}

func newTUN(fd int, name string, batch int, vnet bool, desc string) (*Device, error) {
	// The fd is non-blocking, so os.NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), Path)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("TUN %s: %w", name, err)
	}
	t := &Device{name: name, file: f, rc: rc, batch: batch, vnet: vnet, desc: desc}
	t.readFn = t.readLocked
	t.writeFn = t.writeLocked
	if vnet {
		t.rbuf = make([]byte, packet.VirtioHdrLen+fastpath.MaxPacket+1)
		t.readFn = t.readVnetLocked
		t.writeFn = t.writeVnetLocked
	}
	return t, nil
}

// EnsurePersistent creates the persistent TUN device name if it is missing (adopting
// it when it exists) and detaches again, leaving the device without a reader.
func EnsurePersistent(name string) error {
	t, err := Open(name, true, 1)
	if err != nil {
		return err
	}
	return t.Close()
}

// Name returns the device name.
func (t *Device) Name() string { return t.name }

// BatchSize implements fastpath.Device.
func (t *Device) BatchSize() int { return t.batch }

// Offloads describes the offloads in use: "tso4,tso6,csum,gro", or "off" and why.
func (t *Device) Offloads() string { return t.desc }

// Close detaches from the device. A persistent device stays, with its addresses and
// routes (and without offloads, so that a reader without IFF_VNET_HDR can attach to
// it); any other goes away with them. Idempotent.
func (t *Device) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	if t.vnet {
		_ = t.rc.Control(func(fd uintptr) { _ = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, 0) })
	}
	return t.file.Close()
}
