package wireguard

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernelmode"
)

// TestKernelWireGuardError pins wireguard's Driver (kernelmode tests the rest): the
// message users see on a kernel without the module, word for word, and that
// Implementation "auto" falls back on it.
func TestKernelWireGuardError(t *testing.T) {
	err := &kernelmode.Error{Driver: wgDriver, Device: DeviceName, Err: unix.EOPNOTSUPP}
	want := `kernel has no WireGuard support (module wireguard): creating the wireguard link flannel-wg failed: ` +
		`operation not supported (load the wireguard module, or set the Backend Implementation to "userspace" or "auto")`
	if err.Error() != want || !errors.Is(err, ErrNoKernelWireGuard) {
		t.Errorf("%q (errors.Is ErrNoKernelWireGuard: %v), want %q", err, errors.Is(err, ErrNoKernelWireGuard), want)
	}
	if impl, derr := kernelmode.Decide(wgDriver, ImplAuto, err); impl != ImplUserspace || derr != nil {
		t.Errorf("Implementation auto on a kernel without the module: %q, %v; want userspace", impl, derr)
	}
}

func TestTypeChecksPeerData(t *testing.T) {
	bt := Type()
	if bt.Name != "wireguard" || bt.Validate == nil || bt.New == nil || bt.CheckPeerData == nil || bt.Admission().CheckData == nil || bt.AnyPeerType {
		t.Fatalf("Type() = %+v", bt)
	}
}
