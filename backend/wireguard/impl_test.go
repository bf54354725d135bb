package wireguard

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernelmode"
)

// TestKernelWireGuardError checks wireguard's use of kernelmode (whose own tests cover
// the decision table): the message users see on a kernel without the wireguard module,
// word for word, its sentinel, and that Implementation "auto" falls back to userspace on
// it while "kernel" fails.
func TestKernelWireGuardError(t *testing.T) {
	var err error = fmt.Errorf("%s (Implementation %q): %w", errPrefix, ImplKernel,
		&kernelmode.Error{Driver: wgDriver, Device: DeviceName, Err: unix.EOPNOTSUPP})
	want := `wireguard backend (Implementation "kernel"): kernel has no WireGuard support (module wireguard): ` +
		`creating the wireguard link flannel-wg failed: operation not supported ` +
		`(load the wireguard module, or set the Backend Implementation to "userspace" or "auto")`
	if err.Error() != want {
		t.Errorf("message\n %s\nwant\n %s", err, want)
	}
	if !errors.Is(err, ErrNoKernelWireGuard) || !errors.Is(err, unix.EOPNOTSUPP) || errors.Is(unix.EOPNOTSUPP, ErrNoKernelWireGuard) {
		t.Errorf("%v: errors.Is ErrNoKernelWireGuard / EOPNOTSUPP is wrong", err)
	}
	for _, tc := range []struct {
		impl  Implementation
		probe error
		want  Implementation
	}{
		{ImplAuto, err, ImplUserspace},
		{ImplAuto, nil, ImplKernel},
		{ImplKernel, err, ""},
		{ImplUserspace, err, ImplUserspace},
	} {
		got, derr := kernelmode.Decide(wgDriver, tc.impl, tc.probe)
		if got != tc.want || (derr != nil) != (tc.want == "") {
			t.Errorf("Decide(%s, %v) = %q, %v; want %q", tc.impl, tc.probe, got, derr, tc.want)
		}
	}
}

func TestTypeChecksPeerData(t *testing.T) {
	bt := Type()
	if bt.Name != "wireguard" || bt.Validate == nil || bt.New == nil || bt.CheckPeerData == nil || bt.Admission().CheckData == nil || bt.AnyPeerType {
		t.Fatalf("Type() = %+v", bt)
	}
}
