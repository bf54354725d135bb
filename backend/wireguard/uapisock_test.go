package wireguard

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/klog/v2/ktesting"
)

func TestSocketDirFromEnv(t *testing.T) {
	t.Setenv(SocketDirEnv, "") // restores the variable after the test
	for _, tc := range []struct {
		set  bool
		val  string
		want string
	}{
		{false, "", DefaultSocketDir},
		{true, "/tmp/x", "/tmp/x"},
		{true, "-", ""},
		{true, "", ""},
	} {
		if tc.set {
			t.Setenv(SocketDirEnv, tc.val)
		} else {
			os.Unsetenv(SocketDirEnv)
		}
		if got := socketDirFromEnv(); got != tc.want {
			t.Errorf("%s set %v to %q: %q, want %q", SocketDirEnv, tc.set, tc.val, got, tc.want)
		}
	}
}

// TestServeUAPISocketFile: a stale socket (a killed weftd's) is replaced, one that another
// process serves is left alone, and closing removes the socket.
func TestServeUAPISocketFile(t *testing.T) {
	log := ktesting.NewLogger(t, ktesting.NewConfig())
	dir := filepath.Join(t.TempDir(), "wireguard") // made by serveUAPI
	path := filepath.Join(dir, "wg-test.sock")

	ln, err := serveUAPI(dir, "wg-test", nil, func() {}, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serveUAPI(dir, "wg-test", nil, func() {}, log); err == nil || !strings.Contains(err.Error(), "served by another process") {
		t.Fatalf("a second listener on a served socket: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after close: %v", err)
	}

	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close() // as a SIGKILL leaves it: the file, no one listening
	ln, err = serveUAPI(dir, "wg-test", nil, func() {}, log)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode(), err)
	}
}
