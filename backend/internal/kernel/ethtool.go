package kernel

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool commands (linux/ethtool.h); the kernel maps them onto the checksum feature
// bits (NETIF_F_CSUM_MASK), like `ethtool -K <dev> tx off`.
const (
	ethtoolGTXCSUM = 0x00000016
	ethtoolSTXCSUM = 0x00000017
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqPtr is struct ifreq with ifr_data set (a pointer in the union).
type ifreqPtr struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func (h *Handle) ethtool(name string, v *ethtoolValue) error {
	if err := h.check(); err != nil {
		return err
	}
	if len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", name)
	}
	var ifr ifreqPtr
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(h.ioctlFD), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return errno
	}
	return nil
}

// TxChecksum reports whether transmit checksum offload is on for the device name.
func (h *Handle) TxChecksum(name string) (bool, error) {
	if err := h.check(); err != nil {
		return false, err
	}
	v := ethtoolValue{cmd: ethtoolGTXCSUM}
	if err := h.ethtool(name, &v); err != nil {
		return false, fmt.Errorf("ethtool get tx checksum of %s: %w", name, err)
	}
	return v.data != 0, nil
}

// EnsureTxChecksum switches transmit checksum offload of the device name on or off (the
// ethtool ioctl, no ethtool binary). It reports whether it changed anything.
func (h *Handle) EnsureTxChecksum(name string, on bool) (changed bool, err error) {
	if err = h.check(); err != nil {
		return false, err
	}
	cur, err := h.TxChecksum(name)
	if err != nil || cur == on {
		return false, err
	}
	v := ethtoolValue{cmd: ethtoolSTXCSUM}
	if on {
		v.data = 1
	}
	if err := h.ethtool(name, &v); err != nil {
		return false, fmt.Errorf("ethtool set tx checksum of %s to %v: %w", name, on, err)
	}
	if cur, err = h.TxChecksum(name); err != nil {
		return true, err
	}
	if cur != on {
		return true, fmt.Errorf("tx checksum of %s: %w", name, ErrNotApplied)
	}
	return true, nil
}
