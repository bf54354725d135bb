package gre

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernelmode"
)

// TestKernelGREError checks gre's use of kernelmode (whose own tests cover the decision
// table): the message users see on a kernel without ip_gre, word for word, its sentinel,
// and that Mode "auto" falls back to userspace on it while Mode "kernel" fails.
func TestKernelGREError(t *testing.T) {
	var err error = fmt.Errorf("gre backend (Mode %q): %w", ModeKernel,
		&kernelmode.Error{Driver: greDriver, Device: DeviceName, Err: unix.EOPNOTSUPP})
	want := `gre backend (Mode "kernel"): kernel has no GRE support (ip_gre): creating the gre device weft.gre failed: ` +
		`operation not supported (load the ip_gre module, or set the Backend Mode to "userspace" or "auto")`
	if err.Error() != want {
		t.Errorf("message\n %s\nwant\n %s", err, want)
	}
	if !errors.Is(err, ErrNoKernelGRE) || !errors.Is(err, unix.EOPNOTSUPP) || errors.Is(unix.EOPNOTSUPP, ErrNoKernelGRE) {
		t.Errorf("%v: errors.Is ErrNoKernelGRE / EOPNOTSUPP is wrong", err)
	}
	for _, tc := range []struct {
		mode  Mode
		probe error
		want  Mode
	}{
		{ModeAuto, err, ModeUserspace},
		{ModeAuto, nil, ModeKernel},
		{ModeKernel, err, ""},
		{ModeUserspace, err, ModeUserspace},
	} {
		got, derr := kernelmode.Decide(greDriver, tc.mode, tc.probe)
		if got != tc.want || (derr != nil) != (tc.want == "") {
			t.Errorf("Decide(%s, %v) = %q, %v; want %q", tc.mode, tc.probe, got, derr, tc.want)
		}
	}
}
