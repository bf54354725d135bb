package gre

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/subnet"
)

// ErrNoKernelGRE is matched (errors.Is) by every error saying that the kernel has no GRE
// tunnel driver, the ip_gre module.
var ErrNoKernelGRE = errors.New("kernel has no GRE support (ip_gre)")

// KernelGREError is returned when creating the kernel GRE device fails because the kernel
// has no GRE tunnel driver (ip_gre is neither built in nor loadable): netlink answers
// EOPNOTSUPP, which ip(8) prints as "Unknown device type". errors.Is(err, ErrNoKernelGRE)
// holds for it.
type KernelGREError struct {
	Device string // the device weft tried to create
	Err    error  // the netlink error
}

func (e *KernelGREError) Error() string {
	return fmt.Sprintf("kernel has no GRE support (ip_gre): creating the gre device %s failed: %v "+
		"(load the ip_gre module, or set the Backend Mode to \"userspace\" or \"auto\")", e.Device, e.Err)
}

// Is makes errors.Is(err, ErrNoKernelGRE) true.
func (e *KernelGREError) Is(target error) bool { return target == ErrNoKernelGRE }

// Unwrap returns the netlink error.
func (e *KernelGREError) Unwrap() error { return e.Err }

// isMissingDriver reports whether a link-create error means the kernel does not know the
// link kind: EOPNOTSUPP from rtnetlink ("Unknown device type"), as when ip_gre is missing
// and modules cannot be loaded.
func isMissingDriver(err error) bool { return errors.Is(err, unix.EOPNOTSUPP) }

// decideMode picks the data plane from the configured mode and the outcome of creating
// the kernel GRE device (probe: nil when it exists or was created; ignored for
// ModeUserspace, where nothing is probed). It is pure.
//
//	mode       probe                 result
//	userspace  anything              userspace
//	auto       nil                   kernel
//	auto       ErrNoKernelGRE        userspace (the caller logs why)
//	auto       other error           the error: a kernel with GRE that failed otherwise
//	kernel     nil                   kernel
//	kernel     any error             the error
func decideMode(mode Mode, probe error) (Mode, error) {
	switch mode {
	case ModeUserspace:
		return ModeUserspace, nil
	case ModeAuto:
		if probe == nil {
			return ModeKernel, nil
		}
		if errors.Is(probe, ErrNoKernelGRE) {
			return ModeUserspace, nil
		}
		return "", probe
	case ModeKernel:
		if probe != nil {
			return "", probe
		}
		return ModeKernel, nil
	}
	return "", fmt.Errorf("gre backend: unknown mode %q", mode)
}

// checkFamilies refuses the address-family setups gre does not carry, naming the key:
// Mode "kernel" in a network with EnableIPv6, since the kernel-mode data plane carries
// IPv4 only (Mode "auto" runs such a network, dual-stack or IPv6-only, in userspace).
func checkFamilies(nw *subnet.Config, mode Mode) error {
	if !nw.EnableIPv4 && !nw.EnableIPv6 {
		return invalid("the network enables neither IPv4 nor IPv6 (EnableIPv4=false, EnableIPv6=false)")
	}
	if nw.EnableIPv6 && mode == ModeKernel {
		what := "EnableIPv6=true"
		if !nw.EnableIPv4 {
			what = "EnableIPv4=false and EnableIPv6=true (IPv6-only)"
		}
		return invalid("key Mode: value %q carries IPv4 only, but the network has %s; use Mode %q or %q, which carry IPv6 in userspace",
			mode, what, ModeAuto, ModeUserspace)
	}
	return nil
}
