package gre

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernelmode"
)

// TestKernelGREError pins gre's Driver (kernelmode tests the rest): the message users see
// on a kernel without ip_gre, word for word, and that Mode "auto" falls back on it.
func TestKernelGREError(t *testing.T) {
	err := &kernelmode.Error{Driver: greDriver, Device: DeviceName, Err: unix.EOPNOTSUPP}
	want := `kernel has no GRE support (ip_gre): creating the gre device weft.gre failed: operation not supported ` +
		`(load the ip_gre module, or set the Backend Mode to "userspace" or "auto")`
	if err.Error() != want || !errors.Is(err, ErrNoKernelGRE) {
		t.Errorf("%q (errors.Is ErrNoKernelGRE: %v), want %q", err, errors.Is(err, ErrNoKernelGRE), want)
	}
	if mode, derr := kernelmode.Decide(greDriver, ModeAuto, err); mode != ModeUserspace || derr != nil {
		t.Errorf("Mode auto on a kernel without ip_gre: %q, %v; want userspace", mode, derr)
	}
}
