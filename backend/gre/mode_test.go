package gre

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDecideMode(t *testing.T) {
	noGRE := &KernelGREError{Device: DeviceName, Err: unix.EOPNOTSUPP}
	other := fmt.Errorf("create gre device: %w", unix.EPERM)
	for _, tc := range []struct {
		mode  Mode
		probe error
		want  Mode
		err   error
	}{
		{ModeUserspace, nil, ModeUserspace, nil},
		{ModeUserspace, noGRE, ModeUserspace, nil},
		{ModeUserspace, other, ModeUserspace, nil},
		{ModeAuto, nil, ModeKernel, nil},
		{ModeAuto, noGRE, ModeUserspace, nil},
		{ModeAuto, fmt.Errorf("wrapped: %w", noGRE), ModeUserspace, nil},
		{ModeAuto, other, "", other},
		{ModeKernel, nil, ModeKernel, nil},
		{ModeKernel, noGRE, "", noGRE},
		{ModeKernel, other, "", other},
	} {
		got, err := decideMode(tc.mode, tc.probe)
		if got != tc.want || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("decideMode(%s, %v) = %q, %v; want %q, %v", tc.mode, tc.probe, got, err, tc.want, tc.err)
		}
	}
	if _, err := decideMode("turbo", nil); err == nil {
		t.Error("an unknown mode was accepted")
	}
}

func TestKernelGREError(t *testing.T) {
	var err error = fmt.Errorf("gre backend: %w", &KernelGREError{Device: DeviceName, Err: unix.EOPNOTSUPP})
	if !errors.Is(err, ErrNoKernelGRE) || !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("%v: errors.Is ErrNoKernelGRE / EOPNOTSUPP fails", err)
	}
	var ke *KernelGREError
	if !errors.As(err, &ke) || ke.Device != DeviceName {
		t.Fatalf("errors.As: %v", ke)
	}
	for _, s := range []string{"ip_gre", "kernel has no GRE support", DeviceName, "userspace"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not mention %q", err, s)
		}
	}
	if errors.Is(unix.EOPNOTSUPP, ErrNoKernelGRE) {
		t.Error("a bare EOPNOTSUPP must not count as the typed error")
	}
}

func TestIsMissingDriver(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{unix.EOPNOTSUPP, true},
		{fmt.Errorf("link add: %w", unix.EOPNOTSUPP), true},
		{unix.EPERM, false},
		{unix.EEXIST, false},
		{errors.New("operation not supported"), false}, // never by string
	} {
		if got := isMissingDriver(tc.err); got != tc.want {
			t.Errorf("isMissingDriver(%v) = %v", tc.err, got)
		}
	}
}
