package kernel

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// KernelVersion returns the running kernel's major and minor version, from uname.
func KernelVersion() (major, minor int, err error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, 0, fmt.Errorf("uname: %w", err)
	}
	return ParseKernelRelease(unix.ByteSliceToString(u.Release[:]))
}

// ParseKernelRelease parses the major and minor numbers from a uname release string such as
// "5.15.0-91-generic" or "6.1.0+". It is pure.
func ParseKernelRelease(release string) (major, minor int, err error) {
	s := release
	majS, rest, ok := strings.Cut(s, ".")
	if !ok {
		return 0, 0, fmt.Errorf("kernel release %q: no major.minor version", release)
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	major, err1 := strconv.Atoi(majS)
	minor, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil || major < 0 || minor < 0 {
		return 0, 0, fmt.Errorf("kernel release %q: no major.minor version", release)
	}
	return major, minor, nil
}
