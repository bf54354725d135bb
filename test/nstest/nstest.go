// Package nstest makes throwaway network namespaces for tests, the demo and the benchmark,
// and runs commands inside them. Product code never imports it.
//
// Namespace names made here carry the creating PID, so parallel `go test` processes never
// collide, and Sweep can remove what a killed run left behind.
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// TB is the part of testing.TB that the test machinery (this package, test/cluster,
// test/etcdtest) uses; *testing.T and *testing.B satisfy it. It is an interface of its own so
// that the demo and the benchmark, which use the machinery, do not link package testing.
type TB interface {
	Helper()
	Name() string
	Skip(args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
	TempDir() string
	Cleanup(func())
}

// Prefix starts every namespace name this package creates: "wft<pid>-<n>-<label>".
const Prefix = "wft"

var counter atomic.Int64 // per-process sequence for unique names; not configuration

// UniqueName returns a fresh namespace name for label, unique across processes.
func UniqueName(label string) string {
	n := counter.Add(1)
	return fmt.Sprintf("%s%d-%d-%s", Prefix, os.Getpid(), n, label)
}

// Create makes a named namespace with loopback up. The caller deletes it.
func Create(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = Delete(name)
		return fmt.Errorf("lo up in %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Delete removes a named namespace; a missing one is not an error.
func Delete(name string) error {
	out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Available reports why namespaces cannot be made here (not root, no ip tool), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("network namespaces need root (running as uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("the ip tool (iproute2) is not installed: %w", err)
	}
	return nil
}

// Temp creates a namespace for t, deleted when t ends. The test is skipped, with the
// reason, where namespaces cannot be made.
func Temp(t TB, label string) string {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	Sweep()
	name := UniqueName(label)
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Delete(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// Sweep deletes namespaces left by weft test processes that no longer exist (a run that
// was killed before its cleanup). Namespaces of live processes are left alone.
func Sweep() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, ok := ownerPID(e.Name())
		if !ok || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = Delete(e.Name())
		}
	}
}

func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// Run runs a command inside the namespace (ip netns exec) and returns its combined output.
func Run(name string, argv ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", name}, argv...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %v: %s", name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
