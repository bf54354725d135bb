// Package kernelmode decides whether a backend that can run its data plane in a kernel
// driver or in userspace (gre: ip_gre, key Mode; wireguard: the wireguard module, key
// Implementation) runs it in the kernel, and makes the error of a kernel without the
// driver. Probing the kernel (creating the link) stays the backend's: this package
// touches neither the kernel nor the config.
package kernelmode

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The values of a backend's key that chooses (users write them; flanneld-style).
const (
	Auto      = "auto"      // the kernel driver where the kernel has it, else userspace
	Kernel    = "kernel"    // the kernel driver, or fail
	Userspace = "userspace" // never the kernel driver
)

// Driver describes a backend's kernel driver for the message of an Error, as
// {ErrNoKernelGRE, "ip_gre", "gre device", "Mode"}. It is not changed once made.
type Driver struct {
	Missing error  // the backend's sentinel: the kernel has no such driver; it starts the message
	Module  string // the kernel module
	Link    string // what the backend creates with it
	Key     string // the backend's config key that chooses
}

// Error says that creating a link failed because the kernel has no driver for its kind
// (the module is neither built in nor loadable): netlink answered EOPNOTSUPP, which ip(8)
// prints as "Unknown device type". errors.Is holds for Driver.Missing and for Err.
type Error struct {
	Driver *Driver
	Device string // the link the backend tried to create
	Err    error  // the netlink error
}

// Error names the missing module and the config values to set instead.
func (e *Error) Error() string {
	d := e.Driver
	return fmt.Sprintf("%v: creating the %s %s failed: %v (load the %s module, or set the Backend %s to %q or %q)",
		d.Missing, d.Link, e.Device, e.Err, d.Module, d.Key, Userspace, Auto)
}

// Is makes errors.Is(err, e.Driver.Missing) true.
func (e *Error) Is(target error) bool { return target == e.Driver.Missing }

// Unwrap returns the netlink error.
func (e *Error) Unwrap() error { return e.Err }

// IsMissingDriver reports whether a link-create error means that the kernel does not know
// the link kind (EOPNOTSUPP from rtnetlink), so the backend returns an *Error.
func IsMissingDriver(err error) bool { return errors.Is(err, unix.EOPNOTSUPP) }

// Decide picks where d's data plane runs from the configured value and the outcome of
// probing the kernel (nil: it can make the link; ignored for Userspace, which does not
// probe). It is pure.
//
//	configured  probe                  result
//	userspace   anything               userspace
//	auto        nil                    kernel
//	auto        d.Missing (an *Error)  userspace (the caller logs why)
//	auto        other error            the error: a kernel with the driver that failed otherwise
//	kernel      nil                    kernel
//	kernel      any error              the error
func Decide[C ~string](d *Driver, configured C, probe error) (C, error) {
	switch {
	case configured == Userspace, configured == Auto && errors.Is(probe, d.Missing):
		return Userspace, nil
	case configured != Auto && configured != Kernel:
		return "", fmt.Errorf("unknown %s %q (known: %q, %q, %q)", d.Key, configured, Auto, Kernel, Userspace)
	case probe != nil:
		return "", probe
	}
	return Kernel, nil
}
