package vxlan

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/test/nstest"
)

// TestDirectRoutingIPv6: with DirectRouting, a dual-stack peer on the underlay's
// segment gets direct routes in both families ("<subnet> via <public address> dev
// eth0") and no tunnel entries; pods talk over them; a deleted direct IPv6 route comes
// back; a peer whose IPv6 address is behind a router goes through flannel-v6.1.
func TestDirectRoutingIPv6(t *testing.T) {
	a, b, pa, pb := twoNodes6(t, true, map[string]any{"DirectRouting": true})
	runInBackground(t, a.nw, time.Hour)
	direct := func() error {
		for _, c := range []struct{ argv, want string }{
			{"ip -6 route show exact " + subnetB6, "via 2001:db8::2 dev eth0 metric 1024"},
			{"ip -4 route show exact " + subnetB, "via 192.0.2.2 dev eth0"},
		} {
			if out, err := nstest.Run(a.NS, strings.Fields(c.argv)...); err != nil || !strings.Contains(out, c.want) {
				return fmt.Errorf("%s: %q (%v), want %q", c.argv, out, err, c.want)
			}
		}
		return nil
	}
	kerneltest.WaitFor(t, time.Second, "direct routes", direct)
	if out := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "flannel-v6.1"); strings.Contains(out, vtepMAC(b.addr6, 1).String()) {
		t.Errorf("tunnel fdb entry for a direct peer:\n%s", out)
	}
	ping(t, pa, podB6)
	ping(t, pa, podB)
	tx := txBytes(t, a.NS, "flannel-v6.1")
	tcpTransfer(t, pa, pb, podB6, 1<<20)
	if sent := txBytes(t, a.NS, "flannel-v6.1") - tx; sent > 64<<10 {
		t.Errorf("the direct transfer went through flannel-v6.1 (%d bytes)", sent)
	}

	kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "del", subnetB6)
	d := kerneltest.WaitFor(t, time.Second, "direct IPv6 route restored", direct)
	t.Logf("direct IPv6 route restored after %v", d)

	far := lease6("", "fd00:0:0:9::/64", netip.Addr{}, netip.MustParseAddr("2001:db8:1::9"))
	kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8::fe", "dev", "eth0")
	if err := a.nw.Apply(context.Background(), added(far)); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show", "exact", "fd00:0:0:9::/64"); !strings.Contains(out, "via fd00:0:0:9:: dev flannel-v6.1 metric 1024 onlink") {
		t.Errorf("route to a peer behind a router = %q", out)
	}
}
