package wireguard

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// TestEnsureDeviceReplacesOtherKind: a link of the device's name that is not the
// implementation's device (here a bridge, as a kernel WireGuard link is on a switch to
// userspace) is deleted and the TUN made in its place, with the MTU, up; a second call
// adopts it.
func TestEnsureDeviceReplacesOtherKind(t *testing.T) {
	skipWithoutNamespaces(t)
	ns := nstest.Temp(t, "wgdev")
	log := ktesting.NewLogger(t, ktesting.NewConfig())
	name := "wg-kind-test"
	err := nsutil.Do(ns, func() error {
		h, err := kernel.Open()
		if err != nil {
			return err
		}
		defer h.Close()
		if err := h.Netlink().LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return err
		}
		idx, created, err := ensureDevice(h, name, ImplUserspace, 1420, log)
		if err != nil {
			return err
		}
		l, err := h.Netlink().LinkByIndex(idx)
		if err != nil {
			return err
		}
		if !created || !isTUN(l) || l.Attrs().MTU != 1420 || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("after ensureDevice: created %v, %s link, MTU %d, flags %v; want a new TUN, MTU 1420, up",
				created, l.Type(), l.Attrs().MTU, l.Attrs().Flags)
		}
		idx2, created, err := ensureDevice(h, name, ImplUserspace, 1420, log)
		if err != nil {
			return err
		}
		if created || idx2 != idx {
			t.Errorf("second ensureDevice: created %v, index %d (was %d); want the TUN adopted", created, idx2, idx)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
