package nstest

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/pkg/nsutil"
)

func TestDoEntersNamespaceAndReturns(t *testing.T) {
	ns := Temp(t, "do")
	if _, err := Run(ns, "ip", "link", "add", "dummy7", "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	var found bool
	if err := nsutil.Do(ns, func() error {
		_, err := netlink.LinkByName("dummy7")
		found = err == nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatal("dummy7 not visible inside the namespace")
	}
	if _, err := netlink.LinkByName("dummy7"); err == nil {
		t.Fatal("dummy7 visible outside the namespace: thread not restored")
	}
	// A socket made inside stays there: listening on 127.0.0.1 inside is not reachable here.
	var l net.Listener
	if err := nsutil.Do(ns, func() (err error) { l, err = net.Listen("tcp", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Fatal("socket created in the namespace is reachable from the root namespace")
	}
}

func TestOwnerPID(t *testing.T) {
	for name, want := range map[string]int{"wft123-4-node": 123, "wft0-1-x": 0, "other": 0, "wftx-1": 0} {
		got, ok := ownerPID(name)
		if (want != 0) != ok || got != want {
			t.Errorf("ownerPID(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	if !strings.HasPrefix(UniqueName("a"), Prefix) {
		t.Fatal("UniqueName lacks the prefix")
	}
}
