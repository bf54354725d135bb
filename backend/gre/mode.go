package gre

import (
	"errors"

	"github.com/weftnet/weft/backend/internal/kernelmode"
	"github.com/weftnet/weft/subnet"
)

// ErrNoKernelGRE is matched (errors.Is) by every error saying that the kernel has no GRE
// tunnel driver, the ip_gre module: a *kernelmode.Error of greDriver, returned when
// creating the kernel GRE device fails because ip_gre is neither built in nor loadable.
var ErrNoKernelGRE = errors.New("kernel has no GRE support (ip_gre)")

// greDriver is the kernel driver of Mode "kernel", for kernelmode.Decide and the
// message of its kernelmode.Error.
var greDriver = &kernelmode.Driver{Missing: ErrNoKernelGRE, Module: "ip_gre", Link: "gre device", Key: "Mode"}

// checkNetwork is the config check's part of checkFamilies (backend.Type.CheckNetwork):
// the network's families against the Backend object's Mode.
func checkNetwork(nw *subnet.Config) error {
	cfg, err := ParseConfig(nw.Backend)
	if err != nil {
		return err
	}
	return checkFamilies(nw, cfg.Mode)
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
