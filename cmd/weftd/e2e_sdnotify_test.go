package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
)

// TestSystemdReadyAfterSubnetFile: with $NOTIFY_SOCKET set (as systemd sets it for a
// Type=notify unit), weftd sends READY=1 on it once per start, from its own PID, and only
// after it has written the subnet file: when the test's socket (standing in for systemd's)
// receives READY=1, the file already holds FLANNEL_SUBNET. At the first start there is no
// file before; at the restart the previous run's file is there, and READY=1 must find it
// replaced by the new run's (another inode: subnetenv.Write renames a new file into place).
func TestSystemdReadyAfterSubnetFile(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 1})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	l := listenNotify(t)
	file := c.SubnetFile(0)
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("subnet file %s before weftd started: %v, want none", file, err)
	}

	w := c.StartNodeWith(0, cluster.WeftdOptions{Env: []string{"NOTIFY_SOCKET=" + l.path}})
	first := l.waitReady(t, w, file, 0)
	t.Logf("first start: READY=1 %v after the start; the file then held %s", first.since, first.env.Subnet)

	// Hold the file open so that its inode cannot be reused by the next one.
	old, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldIno := inode(t, old)
	if err := w.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// Whatever the stopped weftd sent is queued on the socket by now.
	if more := l.drain(t); strings.Contains(strings.Join(more, "\n"), "READY=1") {
		t.Errorf("first run sent READY=1 again: %q", more)
	}

	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	second := l.waitReady(t, w, file, oldIno)
	t.Logf("restart: READY=1 %v after the start; the file then held %s (before: %s)", second.since, second.env.Subnet, first.env.Subnet)
	if err := w.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if more := l.drain(t); strings.Contains(strings.Join(more, "\n"), "READY=1") {
		t.Errorf("second run sent READY=1 again: %q", more)
	}
}

// notifyListener stands in for systemd's notification socket: a unixgram socket in a
// per-test directory, with SO_PASSCRED so that each datagram carries its sender's PID.
type notifyListener struct {
	conn *net.UnixConn
	path string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
		t.Fatalf("socket path %s is too long for a unix socket", path)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	return &notifyListener{conn: conn, path: path}
}

// read returns the next datagram and its sender's PID, waiting up to timeout.
func (l *notifyListener) read(timeout time.Duration) (state string, pid int, err error) {
	if err := l.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", 0, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := l.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return "", 0, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return string(buf[:n]), 0, fmt.Errorf("datagram %q without credentials: %v", buf[:n], err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		return string(buf[:n]), 0, fmt.Errorf("datagram %q: %w", buf[:n], err)
	}
	return string(buf[:n]), int(cred.Pid), nil
}

// readyResult is what the test saw when READY=1 arrived.
type readyResult struct {
	env   subnetenv.Env
	since time.Duration // from the start of the wait, for the log only
}

// waitReady waits (up to 30 s, at most 100 datagrams) for READY=1 from w's process and, at
// that moment, checks the subnet file: it exists, parses, holds FLANNEL_SUBNET, and is not
// the file of inode notIno (0: any). It fails the test, with weftd's output, otherwise.
func (l *notifyListener) waitReady(t *testing.T, w *cluster.Weftd, file string, notIno uint64) readyResult {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	var seen []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s; datagrams so far %q; weftd's output:\n%s", fmt.Sprintf(format, args...), seen, w.RunLog())
	}
	for range 100 {
		state, pid, err := l.read(time.Second)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if !w.Running() {
				fail("%s exited (%v) without sending READY=1", w, w.Wait(0))
			}
			if time.Now().After(deadline) {
				fail("no READY=1 within %v", deadline.Sub(start))
			}
			continue
		}
		if err != nil {
			fail("reading the notification socket: %v", err)
		}
		seen = append(seen, state)
		if pid != w.PID() {
			fail("datagram %q from PID %d, not weftd's (%d)", state, pid, w.PID())
		}
		if !hasLine(state, "READY=1") {
			continue
		}
		// READY=1 is here: the subnet file must be written already.
		f, err := os.Open(file)
		if err != nil {
			fail("READY=1 received but the subnet file is not there: %v", err)
		}
		ino := inode(t, f)
		f.Close()
		if notIno != 0 && ino == notIno {
			fail("READY=1 received but %s is still the previous run's file (inode %d)", file, ino)
		}
		env, err := subnetenv.Read(file)
		if err != nil {
			fail("READY=1 received but the subnet file does not parse: %v", err)
		}
		if !env.Subnet.IsValid() {
			fail("READY=1 received but the subnet file has no FLANNEL_SUBNET: %+v", env)
		}
		return readyResult{env: env, since: time.Since(start)}
	}
	fail("100 datagrams without READY=1")
	return readyResult{}
}

// drain returns the datagrams already queued on the socket.
func (l *notifyListener) drain(t *testing.T) []string {
	t.Helper()
	var out []string
	for range 100 {
		state, _, err := l.read(200 * time.Millisecond)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("reading the notification socket: %v", err)
		}
		out = append(out, state)
	}
	return out
}

// hasLine reports whether the newline-separated sd_notify state holds the assignment line.
func hasLine(state, line string) bool {
	for _, l := range strings.Split(state, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}
