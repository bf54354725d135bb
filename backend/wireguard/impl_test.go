package wireguard

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDecideImplementation(t *testing.T) {
	noWG := &KernelWireGuardError{Device: DeviceName, Err: unix.EOPNOTSUPP}
	other := fmt.Errorf("create a wireguard link: %w", unix.EPERM)
	for _, tc := range []struct {
		impl  Implementation
		probe error
		want  Implementation
		err   error
	}{
		{ImplUserspace, nil, ImplUserspace, nil},
		{ImplUserspace, noWG, ImplUserspace, nil},
		{ImplAuto, nil, ImplKernel, nil},
		{ImplAuto, noWG, ImplUserspace, nil},
		{ImplAuto, fmt.Errorf("wrapped: %w", noWG), ImplUserspace, nil},
		{ImplAuto, other, "", other},
		{ImplKernel, nil, ImplKernel, nil},
		{ImplKernel, noWG, "", noWG},
		{ImplKernel, other, "", other},
	} {
		got, err := decideImplementation(tc.impl, tc.probe)
		if got != tc.want || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("decideImplementation(%s, %v) = %q, %v; want %q, %v", tc.impl, tc.probe, got, err, tc.want, tc.err)
		}
	}
	if _, err := decideImplementation("turbo", nil); err == nil {
		t.Error("an unknown implementation was accepted")
	}
	msg := noWG.Error()
	for _, w := range []string{"kernel has no WireGuard support", "flannel-wg", "userspace", "auto", "Implementation"} {
		if !strings.Contains(msg, w) {
			t.Errorf("%q lacks %q", msg, w)
		}
	}
	if !errors.Is(noWG, ErrNoKernelWireGuard) || !errors.Is(noWG, unix.EOPNOTSUPP) || !isMissingDriver(noWG) {
		t.Error("KernelWireGuardError does not match its sentinel and cause")
	}
}

func TestTypeChecksPeerData(t *testing.T) {
	bt := Type()
	if bt.Name != "wireguard" || bt.Validate == nil || bt.New == nil || bt.CheckPeerData == nil || bt.Admission().CheckData == nil || bt.AnyPeerType {
		t.Fatalf("Type() = %+v", bt)
	}
}
