package wireguard

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNoKernelWireGuard is matched (errors.Is) by every error saying that the kernel has
// no WireGuard module.
var ErrNoKernelWireGuard = errors.New("kernel has no WireGuard support (module wireguard)")

// KernelWireGuardError is returned when creating a WireGuard link fails because the
// kernel does not know the link kind (the wireguard module is neither built in nor
// loadable): netlink answers EOPNOTSUPP, which ip(8) prints as "Unknown device type".
// errors.Is(err, ErrNoKernelWireGuard) holds for it.
type KernelWireGuardError struct {
	Device string // the link weft tried to create
	Err    error  // the netlink error
}

func (e *KernelWireGuardError) Error() string {
	return fmt.Sprintf("kernel has no WireGuard support (module wireguard): creating the wireguard link %s failed: %v "+
		"(load the wireguard module, or set the Backend Implementation to \"userspace\" or \"auto\")", e.Device, e.Err)
}

// Is makes errors.Is(err, ErrNoKernelWireGuard) true.
func (e *KernelWireGuardError) Is(target error) bool { return target == ErrNoKernelWireGuard }

// Unwrap returns the netlink error.
func (e *KernelWireGuardError) Unwrap() error { return e.Err }

// isMissingDriver reports whether a link-create error means the kernel does not know the
// link kind.
func isMissingDriver(err error) bool { return errors.Is(err, unix.EOPNOTSUPP) }

// decideImplementation picks where WireGuard runs from the configured Implementation and
// the outcome of probing the kernel (nil: it can make WireGuard links; ignored for
// ImplUserspace, where nothing is probed). It is pure.
//
//	configured  probe                   result
//	userspace   anything                userspace
//	auto        nil                     kernel
//	auto        ErrNoKernelWireGuard    userspace (the caller logs why)
//	auto        other error             the error: a kernel with WireGuard that failed otherwise
//	kernel      nil                     kernel
//	kernel      any error               the error
func decideImplementation(impl Implementation, probe error) (Implementation, error) {
	switch impl {
	case ImplUserspace:
		return ImplUserspace, nil
	case ImplAuto:
		if probe == nil {
			return ImplKernel, nil
		}
		if errors.Is(probe, ErrNoKernelWireGuard) {
			return ImplUserspace, nil
		}
		return "", probe
	case ImplKernel:
		if probe != nil {
			return "", probe
		}
		return ImplKernel, nil
	}
	return "", fmt.Errorf("wireguard backend: unknown Implementation %q", impl)
}
