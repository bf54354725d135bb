package dgram

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// BufferSize is the receive and send buffer the userspace backends ask for on their
// underlay socket, so that a burst from many peers is not dropped while the forwarder is busy.
const BufferSize = 4 << 20

// EnlargeBuffers asks for BufferSize-sized receive and send buffers, past
// net.core.[rw]mem_max when the process may (CAP_NET_ADMIN), else as large as the limits
// allow. Callers log a failure; forwarding works with smaller buffers too.
func EnlargeBuffers(sock syscall.Conn) error {
	rc, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	var errs []error
	if err := rc.Control(func(fd uintptr) {
		for _, o := range [...]struct{ force, plain int }{
			{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF},
			{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF},
		} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, BufferSize) == nil {
				continue
			}
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, BufferSize); err != nil {
				errs = append(errs, err)
			}
		}
	}); err != nil {
		return err
	}
	return errors.Join(errs...)
}
