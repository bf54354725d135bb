package kerneltest

import (
	"testing"
	"time"

	"github.com/weftnet/weft/test/nstest"
)

// TestMonitorCountsChangesMadeBeforeSettle: every change made before Settle is counted by
// it, even with a quiet time far shorter than a loaded machine's scheduling delays (the
// Monitor reads its socket in Settle, not in a goroutine), and then nothing more.
func TestMonitorCountsChangesMadeBeforeSettle(t *testing.T) {
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	ns := nstest.Temp(t, "mon")
	m := Watch(t, ns)
	MustRun(t, ns, "ip", "link", "add", "br0", "type", "bridge")
	MustRun(t, ns, "ip", "addr", "add", "10.244.7.1/24", "dev", "br0") // and its local route
	n, last := m.Settle(time.Microsecond)
	t.Logf("%d notifications, the last: %s", n, last)
	if n < 3 {
		t.Fatalf("%d notifications counted for a new link, its address and local route, want >= 3 (last: %s)", n, last)
	}
	MustRun(t, ns, "ip", "-6", "addr", "add", "fd00:10::1/64", "dev", "br0", "nodad") // not counted
	if n, last := m.Settle(10 * time.Millisecond); n != 0 {
		t.Fatalf("%d more notifications with no IPv4 change (last: %s)", n, last)
	}
}
