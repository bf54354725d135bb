package udp

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// DeviceName is the TUN device, named as flanneld names it.
const DeviceName = "flannel0"

// errPrefix starts the udp backend's error messages.
const errPrefix = "udp backend"

// socketBuffer is the receive and send buffer asked for on the UDP socket, so a burst
// from many peers is not dropped while the forwarder is busy.
const socketBuffer = 4 << 20

// setSocketBuffers asks for large socket buffers, past net.core.[rw]mem_max when the
// process may (CAP_NET_ADMIN), else as large as the limits allow. Failure is logged only.
func setSocketBuffers(sock *net.UDPConn, log klog.Logger) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return
	}
	var errs []error
	_ = rc.Control(func(fd uintptr) {
		for _, o := range [...]struct{ force, plain int }{
			{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF},
			{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF},
		} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, socketBuffer) == nil {
				continue
			}
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, socketBuffer); err != nil {
				errs = append(errs, err)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		log.Info("Could not enlarge the UDP socket buffers", "err", err)
	}
}
