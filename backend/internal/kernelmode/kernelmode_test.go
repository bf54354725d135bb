package kernelmode

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

type choice string // as gre.Mode, wireguard.Implementation

var (
	errNoTest  = errors.New("kernel has no test support (module test_drv)")
	testDriver = &Driver{Missing: errNoTest, Module: "test_drv", Link: "test link", Key: "Flavour"}
	errNoOther = errors.New("kernel has no other support")
	missing    = &Error{Driver: testDriver, Device: "t0", Err: unix.EOPNOTSUPP}
)

func TestDecide(t *testing.T) {
	failed := fmt.Errorf("create a test link: %w", unix.EPERM)
	otherMissing := &Error{Driver: &Driver{Missing: errNoOther}, Device: "o0", Err: unix.EOPNOTSUPP}
	for _, tc := range []struct {
		configured   choice
		probe        error
		want         choice
		err, matches error
	}{
		{Userspace, nil, Userspace, nil, nil},
		{Userspace, missing, Userspace, nil, nil},
		{Userspace, failed, Userspace, nil, nil},
		{Auto, nil, Kernel, nil, nil},
		{Auto, missing, Userspace, nil, nil},
		{Auto, fmt.Errorf("wrapped: %w", missing), Userspace, nil, nil},
		{Auto, failed, "", failed, unix.EPERM},
		// A bare EOPNOTSUPP, or another driver's error, is not this driver missing.
		{Auto, unix.EOPNOTSUPP, "", unix.EOPNOTSUPP, unix.EOPNOTSUPP},
		{Auto, otherMissing, "", otherMissing, errNoOther},
		{Kernel, nil, Kernel, nil, nil},
		{Kernel, missing, "", missing, errNoTest},
		{Kernel, failed, "", failed, unix.EPERM},
	} {
		got, err := Decide(testDriver, tc.configured, tc.probe)
		if got != tc.want || err != tc.err || (tc.matches != nil && !errors.Is(err, tc.matches)) {
			t.Errorf("Decide(%s, %v) = %q, %v; want %q, %v", tc.configured, tc.probe, got, err, tc.want, tc.err)
		}
	}
	got, err := Decide(testDriver, choice("turbo"), nil)
	if want := `unknown Flavour "turbo" (known: "auto", "kernel", "userspace")`; err == nil || err.Error() != want {
		t.Errorf("Decide(turbo) = %q, %v; want the error %s", got, err, want)
	}
}

func TestError(t *testing.T) {
	err := fmt.Errorf("test backend: %w", missing)
	var ke *Error
	if !errors.Is(err, errNoTest) || !errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, errNoOther) || errors.Is(unix.EOPNOTSUPP, errNoTest) ||
		!errors.As(err, &ke) || ke != missing {
		t.Errorf("%v: errors.Is/As wrong (As: %+v)", err, ke)
	}
	want := `test backend: kernel has no test support (module test_drv): creating the test link t0 failed: operation not supported ` +
		`(load the test_drv module, or set the Backend Flavour to "userspace" or "auto")`
	if err.Error() != want {
		t.Errorf("message\n %s\nwant\n %s", err, want)
	}
	for err, want := range map[error]bool{
		unix.EOPNOTSUPP: true, fmt.Errorf("link add: %w", unix.EOPNOTSUPP): true, missing: true,
		nil: false, unix.EPERM: false, unix.EEXIST: false,
		errors.New("operation not supported"): false, // never by string
	} {
		if IsMissingDriver(err) != want {
			t.Errorf("IsMissingDriver(%v) = %v", err, !want)
		}
	}
}
