// Package kernelmode decides, for a backend that can run its data plane either in a
// kernel driver or in userspace (gre with ip_gre, wireguard with the wireguard module),
// which of the two runs, and describes the error of a kernel without the driver.
//
// The choice is a config value of the backend's own string type (gre's Mode, wireguard's
// Implementation) with the values Auto, Kernel and Userspace. Probing the kernel, that
// is creating the link, is the backend's: this package only turns the probe's outcome
// into the decision (Decide, pure) and netlink's answer into an *Error. It touches
// neither the kernel nor the config.
package kernelmode

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The values of a backend's choice between kernel driver and userspace (flanneld-style
// config values: users write them).
const (
	// Auto uses the kernel driver where the kernel has it and userspace otherwise.
	Auto = "auto"
	// Kernel uses the kernel driver and fails where the kernel has none.
	Kernel = "kernel"
	// Userspace never uses the kernel driver.
	Userspace = "userspace"
)

// Driver describes a backend's kernel driver, for the message of an Error. The
// backend keeps one per driver; it is not changed after that.
type Driver struct {
	// Missing is the backend's sentinel error for "the kernel has no such driver", as
	// `kernel has no GRE support (ip_gre)`: errors.Is(err, Missing) holds for every
	// *Error of this Driver, and the message of each starts with it.
	Missing error
	// Module is the kernel module that provides the driver, as "ip_gre".
	Module string
	// Link names what the backend creates with it, as "gre device".
	Link string
	// Key is the backend's config key that picks the implementation, as "Mode".
	Key string
}

// Error is returned when creating a link fails because the kernel has no driver for its
// kind (the module is neither built in nor loadable): netlink answers EOPNOTSUPP, which
// ip(8) prints as "Unknown device type". errors.Is(err, Driver.Missing) holds for it, and
// errors.Is(err, unix.EOPNOTSUPP) through Unwrap.
type Error struct {
	Driver *Driver // the driver that is missing
	Device string  // the link the backend tried to create
	Err    error   // the netlink error
}

// Error names the missing module and says which config value to set instead.
func (e *Error) Error() string {
	d := e.Driver
	return fmt.Sprintf("%v: creating the %s %s failed: %v (load the %s module, or set the Backend %s to %q or %q)",
		d.Missing, d.Link, e.Device, e.Err, d.Module, d.Key, Userspace, Auto)
}

// Is makes errors.Is(err, e.Driver.Missing) true.
func (e *Error) Is(target error) bool { return target == e.Driver.Missing }

// Unwrap returns the netlink error.
func (e *Error) Unwrap() error { return e.Err }

// IsMissingDriver reports whether a link-create error means the kernel does not know the
// link kind: EOPNOTSUPP from rtnetlink ("Unknown device type"), as when the module is
// missing and modules cannot be loaded. The backend then returns an *Error.
func IsMissingDriver(err error) bool { return errors.Is(err, unix.EOPNOTSUPP) }

// Decide picks where d's data plane runs from the configured choice and the outcome of
// probing the kernel, that is of creating the link (probe: nil when the kernel can make
// it; ignored for Userspace, where nothing is probed). It is pure.
//
//	configured  probe                  result
//	userspace   anything               userspace
//	auto        nil                    kernel
//	auto        d.Missing (an *Error)  userspace (the caller logs why)
//	auto        other error            the error: a kernel with the driver that failed otherwise
//	kernel      nil                    kernel
//	kernel      any error              the error
func Decide[C ~string](d *Driver, configured C, probe error) (C, error) {
	switch configured {
	case Userspace:
		return Userspace, nil
	case Auto:
		if probe == nil {
			return Kernel, nil
		}
		if errors.Is(probe, d.Missing) {
			return Userspace, nil
		}
		return "", probe
	case Kernel:
		if probe != nil {
			return "", probe
		}
		return Kernel, nil
	}
	return "", fmt.Errorf("unknown %s %q (known: %q, %q, %q)", d.Key, configured, Auto, Kernel, Userspace)
}
