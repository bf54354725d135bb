package wireguard

import (
	"errors"

	"github.com/weftnet/weft/backend/internal/kernelmode"
)

// ErrNoKernelWireGuard is matched (errors.Is) by every error saying that the kernel has
// no WireGuard module: a *kernelmode.Error of wgDriver, returned when creating a
// WireGuard link fails because the wireguard module is neither built in nor loadable.
var ErrNoKernelWireGuard = errors.New("kernel has no WireGuard support (module wireguard)")

// wgDriver is the kernel driver of Implementation "kernel", for kernelmode.Decide and
// the message of its kernelmode.Error.
var wgDriver = &kernelmode.Driver{Missing: ErrNoKernelWireGuard, Module: "wireguard", Link: "wireguard link", Key: "Implementation"}
