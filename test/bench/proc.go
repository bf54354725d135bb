package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// assumedClockTicks is USER_HZ on every Linux architecture Go supports; it is used only when
// the auxiliary vector has no AT_CLKTCK entry.
const assumedClockTicks = 100

// atClkTck is the auxiliary vector key AT_CLKTCK (elf.h; x/sys/unix does not name it).
const atClkTck = 17

// clockTicks returns the kernel's USER_HZ (the unit of utime and stime in /proc/<pid>/stat,
// what sysconf(_SC_CLK_TCK) returns) from the process's auxiliary vector, and where the
// number came from.
func clockTicks() (int64, string) {
	vec, err := unix.Auxv()
	if err == nil {
		for _, kv := range vec {
			if kv[0] == atClkTck && kv[1] > 0 {
				return int64(kv[1]), "AT_CLKTCK from the auxiliary vector (= sysconf(_SC_CLK_TCK))"
			}
		}
	}
	return assumedClockTicks, "assumed 100 (no AT_CLKTCK in the auxiliary vector)"
}

// parseStatTicks returns utime+stime, in clock ticks, from the text of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces and parentheses, so the
// fields are counted from the last ')'. It is pure.
func parseStatTicks(stat string) (uint64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc stat without a command name: %q", stat)
	}
	f := strings.Fields(stat[end+1:])
	// After the name: state is field 3, utime field 14, stime field 15 (proc(5)).
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("/proc stat has %d fields after the name, want more than %d", len(f), stime)
	}
	u, err := strconv.ParseUint(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat utime %q: %w", f[utime], err)
	}
	s, err := strconv.ParseUint(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat stime %q: %w", f[stime], err)
	}
	return u + s, nil
}

// procCPUTicks is utime+stime of process pid (all its threads), in clock ticks.
func procCPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(string(b))
}

// parseStatusKiB returns the value of a "Name:   123 kB" line of /proc/<pid>/status.
// It is pure.
func parseStatusKiB(status, name string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status %s: unexpected %q", name, v)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc status has no %s line", name)
}

// procRSSKiB is VmRSS of process pid in KiB.
func procRSSKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKiB(string(b), "VmRSS")
}
