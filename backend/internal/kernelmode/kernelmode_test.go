package kernelmode

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// choice stands for a backend's config type (gre.Mode, wireguard.Implementation).
type choice string

var (
	errNoTest  = errors.New("kernel has no test support (module test_drv)")
	testDriver = &Driver{Missing: errNoTest, Module: "test_drv", Link: "test link", Key: "Flavour"}
	errNoOther = errors.New("kernel has no other support")
	other      = &Driver{Missing: errNoOther, Module: "other", Link: "other link", Key: "Other"}
)

func TestDecide(t *testing.T) {
	missing := &Error{Driver: testDriver, Device: "t0", Err: unix.EOPNOTSUPP}
	failed := fmt.Errorf("create a test link: %w", unix.EPERM)
	for _, tc := range []struct {
		configured choice
		probe      error
		want       choice
		err        error
	}{
		{Userspace, nil, Userspace, nil},
		{Userspace, missing, Userspace, nil},
		{Userspace, failed, Userspace, nil},
		{Auto, nil, Kernel, nil},
		{Auto, missing, Userspace, nil},
		{Auto, fmt.Errorf("wrapped: %w", missing), Userspace, nil},
		{Auto, failed, "", failed},
		// A bare EOPNOTSUPP or another driver's error is not this driver missing.
		{Auto, unix.EOPNOTSUPP, "", unix.EOPNOTSUPP},
		{Auto, &Error{Driver: other, Device: "o0", Err: unix.EOPNOTSUPP}, "", errNoOther},
		{Kernel, nil, Kernel, nil},
		{Kernel, missing, "", errNoTest},
		{Kernel, failed, "", failed},
	} {
		got, err := Decide(testDriver, tc.configured, tc.probe)
		if got != tc.want || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("Decide(%s, %v) = %q, %v; want %q, %v", tc.configured, tc.probe, got, err, tc.want, tc.err)
		}
	}
	got, err := Decide(testDriver, choice("turbo"), nil)
	if want := `unknown Flavour "turbo" (known: "auto", "kernel", "userspace")`; err == nil || err.Error() != want {
		t.Errorf("Decide(turbo) = %q, %v; want the error %s", got, err, want)
	}
}

func TestError(t *testing.T) {
	var err error = fmt.Errorf("test backend: %w", &Error{Driver: testDriver, Device: "t0", Err: unix.EOPNOTSUPP})
	if !errors.Is(err, errNoTest) || !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("%v: errors.Is the sentinel / EOPNOTSUPP fails", err)
	}
	if errors.Is(err, errNoOther) {
		t.Errorf("%v matches another driver's sentinel", err)
	}
	var ke *Error
	if !errors.As(err, &ke) || ke.Device != "t0" || ke.Driver != testDriver {
		t.Fatalf("errors.As(%v) = %+v", err, ke)
	}
	want := `test backend: kernel has no test support (module test_drv): creating the test link t0 failed: operation not supported ` +
		`(load the test_drv module, or set the Backend Flavour to "userspace" or "auto")`
	if err.Error() != want {
		t.Errorf("message\n %s\nwant\n %s", err, want)
	}
	if errors.Is(unix.EOPNOTSUPP, errNoTest) {
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
		{&Error{Driver: testDriver, Device: "t0", Err: unix.EOPNOTSUPP}, true},
		{nil, false},
		{unix.EPERM, false},
		{unix.EEXIST, false},
		{errors.New("operation not supported"), false}, // never by string
	} {
		if got := IsMissingDriver(tc.err); got != tc.want {
			t.Errorf("IsMissingDriver(%v) = %v", tc.err, got)
		}
	}
}
